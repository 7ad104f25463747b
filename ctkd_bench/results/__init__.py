"""The results store: cell records, the run directory, and the tidy results table."""
from .record import (COST_KEYS, REFERENCE_METHODS, SCHEMA_VERSION, STATUSES, CellRecord,
                     RecordError, cell_id_for, now_iso)
from .provenance import collect_versions, machine_info
from .store import Problem, RunStore, summarize
from .tidy import tidy_frame

__all__ = ["COST_KEYS", "REFERENCE_METHODS", "SCHEMA_VERSION", "STATUSES", "CellRecord",
           "Problem", "RecordError", "RunStore", "cell_id_for", "collect_versions", "machine_info",
           "now_iso", "summarize", "tidy_frame"]
