"""Kill -9 a run at 20 fixed points spread over every phase, rerunning after each.

Each kill point (CTKD_FAULT_KILL_AT=<phase>:<n>, see ctkd_bench/run/faults.py) is
counted within the process it kills, so every rerun goes on from what the runs
before it finished. After each kill: every file a reader could open parses, and
no finished cell record was rewritten. At the end: the run completes, the tidy
table has each cell exactly once, and its metrics equal, exactly, those of a run
never interrupted that uses the same cache (the tokenizers, teacher and signals
the killed runs left behind).
"""
from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest

from rel_proc import KILLED, assert_readable, cell_files, run_cli
from rel_suite import write_suite

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not hasattr(os, "fork"), reason="the killed runs are forked children")]

METHODS = "sft,uld"
# In run order for a fresh cache: teacher trained and saved, run.json, teacher signals, the two
# reference rows, sft, uld, the tidy table, the report. Comments: what the kill interrupts.
KILL_POINTS = [
    "teacher-train:1",   # trained teacher saved to its temp folder, not renamed (separate process)
    "prepare:1",         # the track's environment just built
    "write:1",           # run.json: temp file written, not renamed
    "teacher-cache:1",   # teacher signals: temp file written, not renamed
    "eval:1",            # the teacher reference row, before evaluation
    "cell-write:1",      # the teacher row, evaluated, not written
    "write:2",           # the teacher row's record: temp file, not renamed
    "cell-write:2",      # the teacher row written; the untrained row evaluated, not written
    "train-step:2",      # both reference rows written; sft mid-training
    "train-step:4",      # sft after its last step, before evaluation
    "eval:1",            # sft before evaluation
    "write:2",           # sft's record: temp file, not renamed
    "cell-write:2",      # sft written; uld trained and evaluated, not written
    "train-step:1",      # uld mid-training
    "eval:1",            # uld before evaluation
    "write:2",           # uld's record: temp file, not renamed
    "write:3",           # every cell written; results.parquet temp file, not renamed
    "summarize:1",       # results.parquet written, results.csv not
    "report:1",          # the report, before its first file
    "report:2",          # the report, part written
]


def kill_in_subprocess(suite, out, point: str, env: dict) -> int:
    """The first kill goes through a real `python -m ctkd_bench` process, as a user's would."""
    cmd = [sys.executable, "-m", "ctkd_bench", "run", str(suite), "--methods", METHODS, "--out", str(out)]
    done = subprocess.run(cmd, env={**env, "CTKD_FAULT_KILL_AT": point}, capture_output=True, text=True,
                          timeout=600)
    return done.returncode


def warm_up(suite, out, cache) -> None:
    """One run here in the test process, so that the forked children start with everything
    imported (seconds each otherwise); it has its own cache, so the kill chain's starts empty."""
    from click.testing import CliRunner
    from ctkd_bench.cli import _add_builtin_commands, cli
    _add_builtin_commands()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CTKD_CACHE", str(cache))
        result = CliRunner().invoke(cli, ["run", str(suite), "--methods", METHODS, "--out", str(out)])
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def killed_runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kill")
    suite = write_suite(folder / "rel.yaml")
    warm_up(suite, folder / "warm-up", folder / "warm-up-cache")
    env = {"CTKD_CACHE": str(folder / "cache"), "CTKD_PROGRESS": "0"}
    out = folder / "run"
    history = []
    seen: dict[str, tuple[int, bytes]] = {}
    for i, point in enumerate(KILL_POINTS):
        log = folder / f"kill{i:02d}.log"
        if i == 0:
            code = kill_in_subprocess(suite, out, point, {**os.environ, **env})
        else:
            code = run_cli(["run", suite, "--methods", METHODS, "--out", out], log,
                           {**env, "CTKD_FAULT_KILL_AT": point})
        assert code == KILLED, (point, code, log.read_text() if log.exists() else "")
        assert_readable(out)
        now = cell_files(out)
        for name, before in seen.items():
            assert now.get(name) == before, f"{name} was rewritten or lost after the kill at {point}"
        seen = now
        history.append((point, len(now)))
    final = run_cli(["run", suite, "--methods", METHODS, "--out", out], folder / "final.log", env)
    assert final == 0, (folder / "final.log").read_text()
    assert_readable(out)
    after = cell_files(out)
    assert all(after[name] == seen[name] for name in seen)
    reference = folder / "reference"
    code = run_cli(["run", suite, "--methods", METHODS, "--out", reference, "--no-report"],
                   folder / "reference.log", env)
    assert code == 0, (folder / "reference.log").read_text()
    return out, reference, history, (folder / "final.log").read_text()


def test_every_kill_point_was_reached_and_progress_was_kept(killed_runs):
    _, _, history, _ = killed_runs
    finished = [n for _, n in history]
    assert finished == sorted(finished)               # records are never lost
    assert finished[0] == 0 and finished[-1] == 4     # 2 reference rows + sft + uld


def test_the_resumed_run_completes_without_recomputing(killed_runs):
    out, _, _, output = killed_runs
    assert "0 ok, 0 failed, 0 n/a, 4 already done" in output
    assert (out / "report" / "index.html").exists() and (out / "report" / "leaderboard.md").exists()


def test_no_row_lost_or_duplicated(killed_runs):
    out, reference, _, _ = killed_runs
    frame = pd.read_parquet(out / "results.parquet")
    ref = pd.read_parquet(reference / "results.parquet")
    assert not frame.duplicated(["cell_id", "metric"]).any()
    assert len(frame) == len(ref)
    assert set(frame["cell_id"]) == {p.stem for p in (out / "cells").glob("*.json")}
    assert set(frame["status"]) == {"ok"}
    csv = pd.read_csv(out / "results.csv")
    assert len(csv) == len(frame)


def test_results_equal_an_uninterrupted_run(killed_runs):
    out, reference, _, _ = killed_runs
    key = ["method", "seed", "metric"]
    got = pd.read_parquet(out / "results.parquet").set_index(key)["value"].sort_index()
    want = pd.read_parquet(reference / "results.parquet").set_index(key)["value"].sort_index()
    pd.testing.assert_series_equal(got, want, check_exact=True)
