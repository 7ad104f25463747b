"""RunStore: atomic records, resume semantics, tolerant reading, the tidy results table."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

import ctkd_bench
from ctkd_bench.errors import UsageError
from ctkd_bench.results import RunStore, summarize
from ctkd_bench.results.record import CellRecord


def rec(cell_id="c1", status="ok", metrics=None, **over) -> CellRecord:
    fields = dict(cell_id=cell_id, run_id="r", suite="tiny", suite_hash="h", track="instruct",
                  pair="t->s", role="method", method="uld", seed=0, status=status,
                  reason=None if status == "ok" else "why", primary_metric="rouge_l",
                  higher_is_better=True, method_category="probability-distribution alignment",
                  metrics={"rouge_l": 0.4, "exact_match": 0.1} if metrics is None else metrics,
                  costs={"steps": 5, "wall_train_s": 1.5, "my_cost": 7})
    fields.update(over)
    return CellRecord(**fields)


def test_write_then_read_back(tmp_path):
    store = RunStore(tmp_path / "run")
    store.write_run_info({"suite": "tiny", "suite_hash": "h", "plugins": [{"name": "uld"}]})
    store.write(rec())
    info = store.read_run_info()
    assert info["suite"] == "tiny" and info["plugins"] == [{"name": "uld"}] and info["created_at"]
    assert store.records() == [rec()]
    assert json.loads((tmp_path / "run" / "cells" / "c1.json").read_text())["cell_id"] == "c1"


@pytest.mark.parametrize("status, retry, finished", [
    ("ok", False, True), ("ok", True, True), ("n/a", True, True),
    ("failed", False, True), ("failed", True, False),
])
def test_has_finished_skips_done_cells_and_retries_failed_only_when_asked(
        tmp_path, status, retry, finished):
    store = RunStore(tmp_path)
    store.write(rec(status=status, metrics={} if status != "ok" else None))
    assert store.has_finished("c1", retry_failed=retry) is finished
    assert store.has_finished("never-ran") is False


def test_a_corrupt_record_is_reported_not_fatal_and_its_cell_runs_again(tmp_path):
    store = RunStore(tmp_path)
    store.write(rec("good"))
    (tmp_path / "cells" / "bad.json").write_text('{"cell_id": "bad", "sch')
    (tmp_path / "cells" / "other.json").write_text(json.dumps(rec("elsewhere").to_dict()))
    (tmp_path / "cells" / ".good.json.x1y2.tmp").write_text("half a rec")  # interrupted write
    records = store.records()
    assert [r.cell_id for r in records] == ["good"]
    assert sorted(p.path.name for p in store.problems) == ["bad.json", "other.json"]
    assert "not valid JSON" in str(store.problems[0]) or "not valid JSON" in str(store.problems[1])
    assert store.has_finished("bad") is False


def test_a_failed_write_leaves_the_previous_record_intact(tmp_path, monkeypatch):
    store = RunStore(tmp_path)
    store.write(rec(metrics={"rouge_l": 0.4}))

    def crash(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(UsageError, match="disk full"):   # StoreWriteError: one line, exit 2
        store.write(rec(metrics={"rouge_l": 0.9}))
    monkeypatch.undo()
    assert store.records()[0].metrics == {"rouge_l": 0.4}
    assert sorted(p.name for p in (tmp_path / "cells").iterdir()) == ["c1.json"]  # no temp left


# The writer skips ctkd_bench/__init__ (which imports torch: seconds) by pre-registering
# the package: the store itself needs no torch.
WRITER = """
import sys, types
pkg = types.ModuleType("ctkd_bench")
pkg.__path__ = [sys.argv[2]]
sys.modules["ctkd_bench"] = pkg
from ctkd_bench.results import RunStore, CellRecord
store = RunStore(sys.argv[1])
print("ready", flush=True)
i = 0
while True:
    big = {f"m{j}": float(j) for j in range(2000)}   # large enough to be caught mid-write
    store.write(CellRecord(cell_id=f"c{i}", run_id="r", suite="s", suite_hash="h", track="lm",
                           pair="p", role="method", method="m", seed=i, status="ok",
                           primary_metric="m0", higher_is_better=False, metrics=big))
    i += 1
"""


def test_a_run_killed_at_any_moment_leaves_only_whole_records(tmp_path):
    package_dir = os.path.dirname(ctkd_bench.__file__)
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), package_dir],
                            stdout=subprocess.PIPE,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.stdout.readline().strip() == b"ready"
    deadline = time.monotonic() + 60
    while len(list((tmp_path / "cells").glob("c*.json"))) < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    store = RunStore(tmp_path)
    records = store.records()
    assert store.problems == []
    assert len(records) >= 5
    assert all(len(r.metrics) == 2000 for r in records)


def test_an_unwritable_run_dir_is_a_usage_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    store = RunStore(blocker / "run")
    with pytest.raises(UsageError, match="not writable"):
        store.write(rec())
    with pytest.raises(UsageError, match="not writable"):
        store.write_run_info({"suite": "s", "suite_hash": "h"})


def test_reading_a_folder_that_is_no_run_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="not a ctkd-bench run directory"):
        RunStore(tmp_path).read_run_info()


def test_summarize_writes_a_tidy_table_one_row_per_cell_and_metric(tmp_path):
    store = RunStore(tmp_path)
    store.write(rec("a", seed=0))
    store.write(rec("b", seed=1, metrics={"rouge_l": 0.5}))
    store.write(rec("c", seed=2, status="failed", metrics={}, reason="CellFailure: nan loss"))
    frame = summarize(tmp_path)
    for table in (pd.read_parquet(tmp_path / "results.parquet"),
                  pd.read_csv(tmp_path / "results.csv")):
        assert len(table) == 2 + 1 + 1          # a: two metrics, b: one, c: one empty row
        assert set(table["cell_id"]) == {"a", "b", "c"}
        failed = table[table["cell_id"] == "c"].iloc[0]
        assert failed["status"] == "failed" and failed["reason"] == "CellFailure: nan loss"
        assert failed["metric"] == "rouge_l" and math.isnan(failed["value"])
        a = table[table["cell_id"] == "a"].set_index("metric")
        assert a.loc["rouge_l", "value"] == 0.4 and bool(a.loc["rouge_l", "primary"])
        assert a.loc["exact_match", "value"] == 0.1 and not bool(a.loc["exact_match", "primary"])
        assert a.loc["rouge_l", "steps"] == 5 and a.loc["rouge_l", "my_cost"] == 7
        assert math.isnan(a.loc["rouge_l", "peak_mem_mb"])   # a standard cost not metered
    assert list(frame.columns[:16]) == [
        "suite", "suite_hash", "track", "pair", "role", "method", "category", "variant", "seed",
        "status", "reason", "metric", "value", "primary", "higher_is_better", "cell_id"]


def test_summarize_of_an_empty_run_still_has_the_columns(tmp_path):
    frame = RunStore(tmp_path).summarize()
    assert len(frame) == 0 and "value" in frame.columns
    assert len(pd.read_parquet(tmp_path / "results.parquet")) == 0
