"""A run directory that cannot be written, or a disk that fills mid-run: one clear line, exit 2,
every record finished before is intact, and a rerun (fault gone) resumes."""
from __future__ import annotations

import errno
import os

import pytest
from click.testing import CliRunner

import ctkd_bench.util
from ctkd_bench.cli import _add_builtin_commands, cli
from ctkd_bench.results.store import RunStore, StoreWriteError
from rel_proc import assert_readable, cell_files
from rel_suite import write_suite

_add_builtin_commands()


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_one_error_line(result, *needles: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]   # progress bars go there too
    errors = [line for line in lines if "Error" in line]
    assert errors == lines[-1:], result.stderr
    assert lines[-1].startswith("Error: ") and all(n in lines[-1] for n in needles), lines[-1]


def test_out_below_a_file_is_not_writable(tmp_path):
    suite = write_suite(tmp_path / "rel.yaml")
    blocker = tmp_path / "somefile"
    blocker.write_text("not a folder")
    result = invoke("run", suite, "--methods", "sft", "--out", blocker / "run")
    assert_one_error_line(result, f"run directory {blocker / 'run'} is not writable", "choose another --out")
    assert blocker.read_text() == "not a folder"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes through permissions")
def test_read_only_parent_is_not_writable(tmp_path):
    suite = write_suite(tmp_path / "rel.yaml")
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        result = invoke("run", suite, "--methods", "sft", "--out", parent / "run")
        assert_one_error_line(result, "is not writable", "Permission denied")
    finally:
        parent.chmod(0o700)
    assert list(parent.iterdir()) == []


def test_a_folder_made_read_only_midway_is_one_clear_error(tmp_path, monkeypatch):
    from ctkd_bench.results.record import CellRecord
    store = RunStore(tmp_path / "run")

    def record(cell_id):
        return CellRecord(cell_id=cell_id, run_id="r", suite="s", suite_hash="h", track="lm", pair="p",
                          role="method", method="m", seed=0, status="ok", primary_metric="bpb",
                          higher_is_better=False, metrics={"bpb": 1.0})
    store.write(record("c1"))
    before = cell_files(tmp_path / "run")
    _refuse_after(monkeypatch, 0, errno.EACCES)
    with pytest.raises(StoreWriteError, match=r"cannot write .*c2\.json: Permission denied; the cells "
                                              r"finished so far are kept"):
        store.write(record("c2"))
    with pytest.raises(StoreWriteError, match="results.parquet: Permission denied"):
        store.summarize()
    assert cell_files(tmp_path / "run") == before
    assert sorted(p.name for p in (tmp_path / "run").rglob("*") if p.is_file()) == ["c1.json"]


def test_an_environment_oserror_anywhere_in_a_run_is_one_line(tmp_path, monkeypatch):
    from ctkd_bench.run.runner import Runner

    def full(self):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "cache" / "x.safetensors"))
    monkeypatch.setattr(Runner, "run", full)
    result = invoke("run", write_suite(tmp_path / "rel.yaml"), "--methods", "sft", "--out", tmp_path / "run")
    assert_one_error_line(result, "x.safetensors: No space left on device", "rerun to resume")


def _refuse_after(monkeypatch, allowed: int, err: int):
    """os.fsync fails with `err` after `allowed` calls: the atomic writer's temp file is then
    complete but unsynced, as on a full disk, and must be removed, never renamed into place."""
    real = os.fsync
    calls = {"n": 0}

    def fsync(fd):
        calls["n"] += 1
        if calls["n"] > allowed:
            raise OSError(err, os.strerror(err))
        return real(fd)

    monkeypatch.setattr(ctkd_bench.util.os, "fsync", fsync)
    return calls


@pytest.mark.slow
def test_disk_full_mid_run_stops_cleanly_and_a_rerun_resumes(tmp_path, monkeypatch, rel_cache):
    suite = write_suite(tmp_path / "rel.yaml")
    out = tmp_path / "run"
    # run.json, the teacher row and the untrained row are written; sft's record hits the full disk
    _refuse_after(monkeypatch, 3, errno.ENOSPC)
    result = invoke("run", suite, "--methods", "sft,uld", "--out", out)
    assert_one_error_line(result, f"cannot write {out / 'cells'}", "No space left on device",
                          "rerun with the same --out to resume")
    assert_readable(out)
    kept = cell_files(out)
    assert len(kept) == 2
    assert sorted(p.name for p in (out / "cells").iterdir()) == sorted(kept)   # no temp file left behind
    monkeypatch.undo()
    monkeypatch.setenv("CTKD_CACHE", str(rel_cache))
    result = invoke("run", suite, "--methods", "sft,uld", "--out", out, "--no-report")
    assert result.exit_code == 0, result.output
    assert "2 ok, 0 failed, 0 n/a, 2 already done" in result.output
    after = cell_files(out)
    assert len(after) == 4 and all(after[name] == kept[name] for name in kept)
