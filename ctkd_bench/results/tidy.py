"""Cell records -> one tidy table: a row per (cell, metric), readable with plain pandas.

A cell without metrics (failed, n/a) still gets one row, for its primary metric
with an empty value, so that "why is this missing" survives into the table.
"""
from __future__ import annotations

import math
from typing import Iterable

import pandas as pd

from .record import COST_KEYS, CellRecord

ID_COLUMNS = ("suite", "suite_hash", "track", "pair", "role", "method", "category", "variant",
              "seed", "status", "reason", "metric", "value", "primary", "higher_is_better",
              "cell_id")


def cost_column(name: str) -> str:
    """A cost's column name; prefixed only where it would clash with an id column."""
    return f"cost_{name}" if name in ID_COLUMNS else name


def tidy_rows(record: CellRecord) -> list[dict]:
    base = {
        "suite": record.suite, "suite_hash": record.suite_hash, "track": record.track,
        "pair": record.pair, "role": record.role, "method": record.method,
        "category": record.method_category, "variant": record.method_variant,
        "seed": record.seed, "status": record.status, "reason": record.reason,
        "higher_is_better": bool(record.higher_is_better), "cell_id": record.cell_id,
    }
    costs = {cost_column(k): _number(v) for k, v in record.costs.items()}
    metrics = dict(record.metrics) if record.status == "ok" else {}
    if not metrics:
        metrics = {record.primary_metric: math.nan}
    rows = []
    for name in sorted(metrics, key=lambda m: (m != record.primary_metric, m)):
        rows.append({**base, "metric": name, "value": _number(metrics[name]),
                     "primary": name == record.primary_metric, **costs})
    return rows


def tidy_frame(records: Iterable[CellRecord]) -> pd.DataFrame:
    rows = [row for record in records for row in tidy_rows(record)]
    extra_costs = sorted({k for row in rows for k in row} - set(ID_COLUMNS)
                         - {cost_column(k) for k in COST_KEYS})
    columns = list(ID_COLUMNS) + [cost_column(k) for k in COST_KEYS] + extra_costs
    frame = pd.DataFrame(rows, columns=columns)
    frame["seed"] = frame["seed"].astype("int64")
    frame["value"] = frame["value"].astype("float64")
    for col in columns[len(ID_COLUMNS):]:
        frame[col] = frame[col].astype("float64")
    frame["primary"] = frame["primary"].astype(bool)
    frame["higher_is_better"] = frame["higher_is_better"].astype(bool)
    order = ["suite", "track", "pair", "role", "method", "seed", "primary", "metric"]
    frame = frame.sort_values(order, ascending=[True] * 6 + [False, True], kind="stable")
    return frame.reset_index(drop=True)


def _number(value) -> float:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)
