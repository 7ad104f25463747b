"""Every executor writes the same run directory as the in-process run, and resume spans executors."""
import pytest

from ctkd_bench.errors import UsageError
from ctkd_bench.plugins import get_plugin_manager
from ctkd_bench.run.executors import LocalExecutor, RayExecutor, SubmititExecutor

from scaleout_helpers import assert_same_cells, records, run, seed_run_dir

pytestmark = pytest.mark.slow


def test_builtin_executors_are_registered_through_the_hook():
    executors = get_plugin_manager().executors()
    assert {"local", "submitit", "ray"} <= set(executors)
    assert executors["ray"][1].distribution == "ctkd-bench"
    with pytest.raises(UsageError, match="unknown executor 'rey'.*ray"):
        get_plugin_manager().executor("rey")


def test_unknown_executor_option_names_itself():
    with pytest.raises(UsageError, match="--executor-opt gpu_per_cell: unknown option.*gpus_per_cell"):
        RayExecutor(gpu_per_cell=1)


def test_local_with_one_worker_runs_in_process():
    assert LocalExecutor().in_process and not LocalExecutor(workers=2).in_process


def test_local_processes_write_the_same_cells(baseline, tmp_path):
    out = tmp_path / "run"
    seed_run_dir(out, baseline, keep=lambda r: r["role"] == "reference")  # workers: sft and emo
    runner = run(out, executor=LocalExecutor(workers=2))
    assert runner.counts == {"ok": 2, "failed": 0, "n/a": 0, "skipped": 2}
    assert {"train", "eval", "total"} <= set(runner.timings)
    assert_same_cells(records(out), baseline)


def test_submitit_local_job_array_writes_the_same_cells(baseline, tmp_path):
    pytest.importorskip("submitit")
    out = tmp_path / "run"
    seed_run_dir(out, baseline, keep=lambda r: r["method"] != "emo")  # the array: the emo cell
    executor = SubmititExecutor(cluster="local", timeout_min=10, slurm_partition="ignored-here", poll_s=0.5)
    runner = run(out, executor=executor)
    assert runner.counts == {"ok": 1, "failed": 0, "n/a": 0, "skipped": 3}
    assert_same_cells(records(out), baseline)
    assert any((out / "submitit").rglob("*_result.pkl"))  # it really went through submitit


def test_resume_runs_the_rest_on_ray_without_recomputing(baseline, tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "run"
    first = run(out, names=("sft",))                       # half here: references + sft
    assert first.counts["ok"] == 3
    before = {p.stem: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}
    second = run(out, executor=RayExecutor(workers=1))     # the rest (emo) as a Ray task
    assert second.counts == {"ok": 1, "failed": 0, "n/a": 0, "skipped": 3}
    after = {p.stem: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}
    assert {cid: after[cid] for cid in before} == before
    assert_same_cells(records(out), baseline)

