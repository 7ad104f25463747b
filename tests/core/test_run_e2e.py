"""End to end: `ctkd-bench run tiny --profile test` trains, evaluates, records, resumes and reports."""
import json
import os
import traceback
from dataclasses import dataclass

import pandas as pd
import pytest
from click.testing import CliRunner

from ctkd_bench import Method, Needs, Paper, hookimpl
from ctkd_bench.cli import _add_builtin_commands, cli
from ctkd_bench.plugins import PluginManager
from ctkd_bench.run.runner import Runner
from ctkd_bench.specs import resolve_suite

_add_builtin_commands()
pytestmark = pytest.mark.slow


class Exploding(Method):
    """Fails on purpose: NaN loss. Its cells must fail alone."""
    name = "exploding"
    category = "baseline"
    summary = "Returns a NaN loss."
    paper = Paper("none")
    tracks = ("lm", "embed")
    needs = Needs(topk=2)

    @dataclass(frozen=True)
    class Config:
        pass

    def loss(self, batch, student, teacher):
        return {"loss": student.ce * float("nan")}


class Plugin:
    @staticmethod
    @hookimpl
    def ctkd_register_methods(register):
        register(Exploding)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    os.environ["CTKD_CACHE"] = str(cache)
    out = tmp_path_factory.mktemp("run") / "tiny-test"
    result = CliRunner().invoke(cli, ["run", "tiny", "--profile", "test", "--methods", "sft,uld",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output + "".join(traceback.format_exception(*result.exc_info))
    return out, result.output


def test_run_writes_records_results_and_report(run_dir):
    out, output = run_dir
    records = [json.loads(p.read_text()) for p in (out / "cells").glob("*.json")]
    by = {(r["track"], r["method"]): r for r in records}
    for track in ("lm", "math", "instruct", "embed"):
        for method in ("teacher", "untrained", "sft"):
            assert by[(track, method)]["status"] == "ok", by[(track, method)].get("reason")
    assert by[("lm", "uld")]["status"] == "ok"
    assert by[("embed", "uld")]["status"] == "n/a"
    sft = by[("lm", "sft")]
    assert sft["costs"]["steps"] == 6 and sft["costs"]["examples"] == 24
    assert by[("math", "sft")]["costs"]["steps"] == 9       # the track's own step count (profile test)
    assert by[("math", "uld")]["costs"]["examples"] == 9 * 4
    assert sft["costs"]["teacher_tokens"] == 0 and by[("lm", "uld")]["costs"]["teacher_tokens"] > 0
    assert 0 < sft["metrics"]["true_entropy_bpb"] < sft["metrics"]["bits_per_byte"]
    frame = pd.read_parquet(out / "results.parquet")
    assert set(frame["method"]) >= {"sft", "uld", "teacher", "untrained"}
    assert (out / "report" / "index.html").exists() and (out / "report" / "leaderboard.md").exists()
    assert "time per phase:" in output and "train" in output


def test_rerun_resumes_without_recomputing(run_dir):
    out, _ = run_dir
    before = {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}
    result = CliRunner().invoke(cli, ["run", "tiny", "--profile", "test", "--methods", "sft,uld",
                                      "--out", str(out), "--no-report"])
    assert result.exit_code == 0, result.output
    assert f"0 ok, 0 failed, 0 n/a, {len(before)} already done" in result.output
    after = {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}
    assert after == before


def test_failing_method_fails_only_its_own_cells(run_dir, tmp_path):
    pm = PluginManager(load_entry_points=False)
    pm.add(Plugin)
    suite = resolve_suite("tiny", "test")
    suite = type(suite)(**{**suite.__dict__, "tracks": tuple(t for t in suite.tracks if t.name == "embed")})
    from ctkd_bench.plugins import get_plugin_manager
    regs = [pm.methods()["exploding"], get_plugin_manager().methods()["sft"]]
    runner = Runner(suite, tmp_path / "run", regs, [0], echo=lambda *_: None)
    runner.run()
    records = {r.method: r for r in runner.store.records()}
    assert records["exploding"].status == "failed" and "non-finite loss" in records["exploding"].reason
    assert records["sft"].status == "ok"
