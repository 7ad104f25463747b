"""Read one or more run directories into one set of records (the report's only input).

Several run directories merge: a suite run in shards, or a re-run next to the
first. When the same cell (same content hash) appears twice, the more complete
record wins (ok > n/a > failed), then the one that finished last; each such
choice and every unreadable record file becomes a note shown in the report.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..results.record import CellRecord
from ..results.store import CELLS_DIR, RUN_INFO, RunStore

_STATUS_PREFERENCE = {"ok": 2, "n/a": 1, "failed": 0}


@dataclass
class RunData:
    path: Path
    info: dict[str, Any]


@dataclass
class Loaded:
    runs: list[RunData] = field(default_factory=list)
    records: list[CellRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sources: dict[str, Path] = field(default_factory=dict)   # cell_id -> run dir it came from


def load_runs(run_dirs: list[Path]) -> Loaded:
    if not run_dirs:
        raise UsageError("give at least one run directory")
    loaded = Loaded()
    chosen: dict[str, CellRecord] = {}
    for run_dir in run_dirs:
        run_dir = Path(run_dir)
        if not (run_dir / RUN_INFO).exists() and not (run_dir / CELLS_DIR).is_dir():
            raise UsageError(f"{run_dir}: not a ctkd-bench run directory "
                             f"(no {RUN_INFO} and no {CELLS_DIR}/)")
        store = RunStore(run_dir)
        if (run_dir / RUN_INFO).exists():
            info = store.read_run_info()
        else:
            info = {}
            loaded.notes.append(f"{run_dir}: no {RUN_INFO}; suite details are missing")
        loaded.runs.append(RunData(run_dir, info))
        records = store.records()
        loaded.notes.extend(f"{run_dir}: unreadable record {p}" for p in store.problems)
        for record in records:
            _merge(chosen, loaded, record, run_dir)
    loaded.records = sorted(chosen.values(), key=lambda r: r.cell_id)
    return loaded


def _merge(chosen: dict[str, CellRecord], loaded: Loaded, record: CellRecord, run_dir: Path):
    old = chosen.get(record.cell_id)
    if old is None:
        chosen[record.cell_id] = record
        loaded.sources[record.cell_id] = run_dir
        return
    key_new = (_STATUS_PREFERENCE[record.status], record.finished_at)
    key_old = (_STATUS_PREFERENCE[old.status], old.finished_at)
    keep_new = key_new > key_old
    kept_dir = run_dir if keep_new else loaded.sources[record.cell_id]
    loaded.notes.append(f"cell {record.cell_id} ({record.method}, {record.track}, seed "
                        f"{record.seed}) appears in several run directories; kept the "
                        f"{(record if keep_new else old).status} record from {kept_dir}")
    if keep_new:
        chosen[record.cell_id] = record
        loaded.sources[record.cell_id] = run_dir
