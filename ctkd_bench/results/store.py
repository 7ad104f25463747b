"""The run directory: where a run's records live and how they are read back.

Layout::

    RUN_DIR/run.json              suite, suite hash and spec, plugins, machine, versions,
                                  tokenizer diagnostics per pair, created_at
    RUN_DIR/cells/<cell_id>.json  one CellRecord each
    RUN_DIR/results.parquet       tidy table (one row per cell x metric), rebuilt by summarize()
    RUN_DIR/results.csv           the same table as CSV

Every file is written whole or not at all (temp file + fsync + rename), so a
run killed at any moment leaves the records it finished and nothing half-written;
a resumed run skips the cells whose record says ok or n/a. A write that fails
(disk full, folder made read-only) raises `StoreWriteError`: one line, exit 2,
and every record written before it stays as it was.

How a runner uses it::

    store = RunStore(out)                       # UsageError early if out is not writable
    store.write_run_info({"suite": ..., "suite_hash": ..., "suite_spec": ..., "plugins": [...],
                          "machine": machine_info(), "versions": collect_versions(),
                          "pair_diagnostics": {pair_name: {...}}})
    for spec in cells:
        cell_id = cell_id_for(spec)
        if store.has_finished(cell_id, retry_failed=retry_failed):
            continue
        store.write(CellRecord(cell_id=cell_id, status="ok" | "failed" | "n/a", ...))
    store.summarize()                           # results.parquet + results.csv
"""
from __future__ import annotations

import io
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import UsageError
from ..run.faults import checkpoint
from ..util import atomic_write_bytes, atomic_write_json, atomic_write_text
from .record import SCHEMA_VERSION, CellRecord, RecordError, now_iso
from .tidy import tidy_frame

log = logging.getLogger(__name__)

RUN_INFO = "run.json"
CELLS_DIR = "cells"
RESULTS_PARQUET = "results.parquet"
RESULTS_CSV = "results.csv"
DONE_STATUSES = ("ok", "n/a")   # never re-run; "failed" only with retry_failed


class StoreWriteError(UsageError):
    """A run-directory file could not be written; what was written before is intact."""


def _write(path: Path, write, payload) -> None:
    try:
        write(path, payload)
    except OSError as exc:
        raise StoreWriteError(f"cannot write {path}: {exc.strerror or exc}; the cells finished so far are "
                              "kept: free space or fix permissions, then rerun with the same --out to "
                              "resume") from None


@dataclass(frozen=True)
class Problem:
    """A record file that could not be read: reported, never fatal."""
    path: Path
    error: str

    def __str__(self) -> str:
        return f"{self.path.name}: {self.error}"


class RunStore:
    def __init__(self, run_dir: Path | str):
        self.run_dir = Path(run_dir)
        self.cells_dir = self.run_dir / CELLS_DIR
        self.problems: list[Problem] = []   # filled by records()
        self._checked_writable = False

    # -- run info -----------------------------------------------------------------
    def write_run_info(self, info: dict[str, Any]) -> None:
        """Write run.json. Required keys: suite, suite_hash; created_at is added if absent."""
        for key in ("suite", "suite_hash"):
            if key not in info:
                raise ValueError(f"run info lacks {key!r}")
        data = {"schema": SCHEMA_VERSION, "created_at": now_iso(), "plugins": [],
                "machine": {}, "versions": {}, "pair_diagnostics": {}, **info}
        self.ensure_writable()
        _write(self.run_dir / RUN_INFO, atomic_write_json, data)

    def read_run_info(self) -> dict[str, Any]:
        path = self.run_dir / RUN_INFO
        if not path.exists():
            raise UsageError(f"{self.run_dir}: not a ctkd-bench run directory (no {RUN_INFO})")
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UsageError(f"{path}: cannot read run info: {exc}") from None

    # -- cells ----------------------------------------------------------------------
    def path_for(self, cell_id: str) -> Path:
        return self.cells_dir / f"{cell_id}.json"

    def read(self, cell_id: str) -> CellRecord | None:
        """The record of one cell; None when absent or unreadable."""
        path = self.path_for(cell_id)
        if not path.exists():
            return None
        try:
            return _load(path)
        except (OSError, ValueError) as exc:
            log.warning("unreadable record %s (%s); the cell will run again", path, exc)
            return None

    def has_finished(self, cell_id: str, retry_failed: bool = False) -> bool:
        """True when the cell need not run again: ok or n/a; failed unless retry_failed."""
        record = self.read(cell_id)
        if record is None:
            return False
        return record.status in DONE_STATUSES or (record.status == "failed" and not retry_failed)

    def write(self, record: CellRecord) -> Path:
        record.validate()
        self.ensure_writable()
        path = self.path_for(record.cell_id)
        checkpoint("cell-write")
        _write(path, atomic_write_json, record.to_dict())
        return path

    def records(self) -> list[CellRecord]:
        """All readable records, sorted by cell id. Unreadable ones go to `self.problems`."""
        self.problems = []
        out = []
        if not self.cells_dir.is_dir():
            return out
        for path in sorted(self.cells_dir.glob("*.json")):
            if path.name.startswith("."):   # an interrupted write's temp file
                continue
            try:
                record = _load(path)
            except (OSError, ValueError) as exc:
                self.problems.append(Problem(path, str(exc)))
                log.warning("skipping unreadable record %s: %s", path, exc)
                continue
            if record.cell_id != path.stem:
                self.problems.append(Problem(path, f"file holds cell {record.cell_id!r}"))
                continue
            out.append(record)
        return out

    # -- tidy table -------------------------------------------------------------------
    def summarize(self) -> pd.DataFrame:
        """Rebuild results.parquet and results.csv from the records; return the frame."""
        frame = tidy_frame(self.records())
        self.ensure_writable()
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        _write(self.run_dir / RESULTS_PARQUET, atomic_write_bytes, buffer.getvalue())
        checkpoint("summarize")
        _write(self.run_dir / RESULTS_CSV, atomic_write_text, frame.to_csv(index=False))
        return frame

    # -- checks -------------------------------------------------------------------------
    def ensure_writable(self) -> None:
        """Fail early, with a clear message, when records could not be saved."""
        if self._checked_writable:
            return
        try:
            self.cells_dir.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=self.cells_dir, prefix=".probe.", suffix=".tmp")
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise UsageError(f"run directory {self.run_dir} is not writable ({reason}); "
                             f"choose another --out") from None
        self._checked_writable = True


def _load(path: Path) -> CellRecord:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise RecordError(f"not valid JSON ({exc})") from None
    return CellRecord.from_dict(data)


def summarize(run_dir: Path | str) -> pd.DataFrame:
    return RunStore(run_dir).summarize()
