"""Helpers of the scale-out tests: a one-track tiny suite, runs, and record comparison."""
import json
from pathlib import Path

import pytest

from ctkd_bench.plugins import get_plugin_manager
from ctkd_bench.run.runner import Runner
from ctkd_bench.specs import resolve_suite


def embed_suite():
    """tiny's test profile cut to its cheapest track (the embed evaluation takes ~0.1 s)."""
    suite = resolve_suite("tiny", "test")
    return type(suite)(**{**suite.__dict__, "tracks": tuple(t for t in suite.tracks if t.name == "embed")})


def methods(*names):
    return [get_plugin_manager().method(n) for n in names]


def records(run_dir: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (Path(run_dir) / "cells").glob("*.json")}


def run(out: Path, names=("sft", "emo"), executor=None, suite=None) -> Runner:
    runner = Runner(suite or embed_suite(), out, methods(*names), [0], echo=lambda *_: None, executor=executor)
    runner.run()
    return runner


def seed_run_dir(out: Path, baseline: dict, keep) -> None:
    """Copy the baseline's records that `keep` accepts into `out` (a half-finished run)."""
    (out / "cells").mkdir(parents=True)
    for cell_id, record in baseline.items():
        if keep(record):
            (out / "cells" / f"{cell_id}.json").write_text(json.dumps(record))


def assert_same_cells(got: dict, want: dict) -> None:
    """Same cell ids, statuses and metrics (to float tolerance) as the in-process run."""
    assert set(got) == set(want)
    for cell_id, record in got.items():
        expected = want[cell_id]
        assert record["status"] == expected["status"] == "ok", record.get("reason")
        assert record["metrics"] == pytest.approx(expected["metrics"], rel=1e-5, abs=1e-6), record["method"]
