"""The cell record: everything one (suite, track, pair, method, seed) cell produced.

One record is one JSON file in ``RUN_DIR/cells/<cell_id>.json``. The report is
rebuilt from these files alone, so a record carries its own context (method
category, summary and paper, versions, machine) instead of pointing at live
objects that may not exist years later.

Schema history (bump `SCHEMA_VERSION` on any incompatible change and teach
`CellRecord.from_dict` to read the older form):
  1 — first version.
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping

from ..util import stable_hash

SCHEMA_VERSION = 1
STATUSES = ("ok", "failed", "n/a")
ROLES = ("method", "reference")
REFERENCE_METHODS = ("teacher", "untrained")   # SFT is an ordinary method (category "baseline")
# Cost keys every runner should fill; a record may carry more.
COST_KEYS = ("steps", "examples", "bytes", "teacher_tokens", "extra_params",
             "wall_prepare_s", "wall_train_s", "wall_eval_s", "peak_mem_mb")
_CELL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")  # also a safe file name


class RecordError(ValueError):
    """A record is malformed (bad field, wrong schema version)."""


def cell_id_for(spec: Mapping[str, Any]) -> str:
    """Content hash of a cell spec: the same spec gives the same id in every process."""
    return stable_hash(dict(spec), length=16)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class CellRecord:
    cell_id: str
    run_id: str
    suite: str
    suite_hash: str
    track: str
    pair: str                      # name of the teacher->student pair
    role: str                      # "method" | "reference"
    method: str                    # reference rows: "teacher" | "untrained"
    seed: int
    status: str                    # "ok" | "failed" | "n/a"
    primary_metric: str
    higher_is_better: bool
    reason: str | None = None      # failed: the error; n/a: why the cell does not apply
    method_category: str = ""
    method_summary: str = ""
    method_paper: dict[str, str] = field(default_factory=dict)   # {title, url, venue}
    method_variant: str = ""
    method_config: dict[str, Any] = field(default_factory=dict)
    distribution: str = ""
    distribution_version: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    costs: dict[str, float] = field(default_factory=dict)
    lm_eval: dict[str, Any] = field(default_factory=dict)        # results + task hashes
    versions: dict[str, str] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    spec: dict[str, Any] = field(default_factory=dict)
    started_at: str = ""
    finished_at: str = ""
    schema: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)  # unknown keys from a newer writer

    def __post_init__(self) -> None:
        self.validate()

    # -- checks -----------------------------------------------------------------
    def validate(self) -> None:
        """Raise RecordError naming the first field that is wrong."""
        if not isinstance(self.cell_id, str) or not _CELL_ID.match(self.cell_id):
            raise RecordError(f"cell_id {self.cell_id!r}: expected letters, digits, '_', '.', '-'")
        if self.status not in STATUSES:
            raise RecordError(f"{self.cell_id}: status {self.status!r} is not one of {STATUSES}")
        if self.role not in ROLES:
            raise RecordError(f"{self.cell_id}: role {self.role!r} is not one of {ROLES}")
        if self.role == "reference" and self.method not in REFERENCE_METHODS:
            raise RecordError(f"{self.cell_id}: a reference row is one of {REFERENCE_METHODS}, "
                              f"got {self.method!r}")
        if self.status != "ok" and not self.reason:
            raise RecordError(f"{self.cell_id}: status {self.status!r} needs a reason")
        if self.status == "ok" and self.primary_metric not in self.metrics:
            raise RecordError(f"{self.cell_id}: status ok but primary metric "
                              f"{self.primary_metric!r} is missing from metrics")
        for name in ("metrics", "costs", "lm_eval", "versions", "machine", "spec",
                     "method_config", "method_paper"):
            if not isinstance(getattr(self, name), dict):
                raise RecordError(f"{self.cell_id}: {name} must be a mapping")
        for name, value in self.metrics.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise RecordError(f"{self.cell_id}: metric {name!r} is not a number: {value!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise RecordError(f"{self.cell_id}: seed must be an integer, got {self.seed!r}")

    @property
    def primary_value(self) -> float | None:
        value = self.metrics.get(self.primary_metric) if self.status == "ok" else None
        return None if value is None or not math.isfinite(value) else float(value)

    # -- (de)serialisation --------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        extra = data.pop("extra")
        return {**extra, **data}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CellRecord":
        if not isinstance(data, Mapping):
            raise RecordError(f"a record is a JSON object, got {type(data).__name__}")
        schema = data.get("schema")
        if not isinstance(schema, int) or isinstance(schema, bool):
            raise RecordError(f"record has no integer 'schema' field (got {schema!r})")
        if schema > SCHEMA_VERSION:
            raise RecordError(f"record schema {schema} is newer than this ctkd-bench reads "
                              f"({SCHEMA_VERSION}); upgrade ctkd-bench")
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in data.items() if k in names}
        extra = {k: v for k, v in data.items() if k not in names}
        missing = sorted(f.name for f in dataclasses.fields(cls)
                         if f.name in names and f.name not in known
                         and f.default is dataclasses.MISSING
                         and f.default_factory is dataclasses.MISSING)
        if missing:
            raise RecordError(f"record {data.get('cell_id', '?')!r} lacks field(s) {missing}")
        try:
            return cls(**known, extra=extra)
        except TypeError as exc:  # pragma: no cover - guarded by the checks above
            raise RecordError(str(exc)) from None
