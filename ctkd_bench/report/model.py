"""Records -> what the leaderboard shows: one view per suite, plain data for the templates.

A column is a (track, pair) combination. A row is a method (or a reference:
teacher, untrained student). Each cell holds the mean and 95% t-interval over
seeds of the column's primary metric, or the reason it is empty. Ranks are
among methods (SFT included), per column; the overall rank is their mean over
the columns a method has a score in.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from ..defaults import ALL_TRACKS, CATEGORIES
from ..results.record import COST_KEYS, CellRecord
from . import fmt
from .stats import Estimate, gap_closed, mean, mean_ci, mean_rank, ranks

FLOOR_METRIC = "true_entropy_bpb"
MAX_COSTS = ("extra_params", "peak_mem_mb")   # aggregated by max, the others by mean per cell


@dataclass
class Column:
    key: str
    track: str
    pair: str
    metric: str
    higher_is_better: bool
    secondary: list[str] = field(default_factory=list)
    floor: float | None = None

    @property
    def arrow(self) -> str:
        return "↑" if self.higher_is_better else "↓"


@dataclass
class Cell:
    kind: str                     # ok | partial | n/a | failed | not run
    text: str                     # what is shown: the score, or why there is none
    estimate: Estimate | None = None
    seeds: list[float] = field(default_factory=list)
    note: str = ""                # e.g. "2 of 3 seeds; failed: ..."
    rank: float | None = None
    gap: float | None = None
    others: dict[str, Estimate] = field(default_factory=dict)
    costs: dict[str, float] = field(default_factory=dict)

    @property
    def sort(self) -> float | None:
        return self.estimate.mean if self.estimate else None

    @property
    def label(self) -> str:
        """For an empty cell: its status word ("n/a", "failed", "not run")."""
        return self.text.split(": ", 1)[0]

    @property
    def why(self) -> str:
        """For an empty cell: the reason after the status word."""
        return self.text.split(": ", 1)[1] if ": " in self.text else ""


@dataclass
class Row:
    name: str
    role: str
    category: str = ""
    summary: str = ""
    paper_title: str = ""
    paper_url: str = ""           # empty unless plain http(s)
    paper_venue: str = ""
    variant: str = ""
    distribution: str = ""
    version: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    cells: dict[str, Cell] = field(default_factory=dict)
    mean_rank: float | None = None
    rank_tracks: int = 0
    rank_text: str = ""
    gap: float | None = None
    gap_text: str = ""
    costs: dict[str, tuple[float | None, str]] = field(default_factory=dict)

    @property
    def is_sft(self) -> bool:
        return self.name == "sft"


@dataclass
class SuiteView:
    suite: str
    suite_hash: str
    columns: list[Column]
    rows: list[Row]               # methods, best overall rank first
    references: list[Row]         # teacher, untrained, data floor
    cost_keys: list[str]

    def ranked(self, key: str) -> list[Row]:
        """Methods with a score in column `key`, best first."""
        scored = [r for r in self.rows if r.cells[key].estimate is not None]
        return sorted(scored, key=lambda r: (r.cells[key].rank, r.name))

    def unscored(self, key: str) -> list[Row]:
        return sorted((r for r in self.rows if r.cells[key].estimate is None), key=lambda r: r.name)

    def pairs(self) -> dict[str, list[str]]:
        """pair -> the tracks it is used on, in column order."""
        out: dict[str, list[str]] = {}
        for col in self.columns:
            out.setdefault(col.pair, []).append(col.track)
        return out


def build_suites(records: list[CellRecord]) -> list[SuiteView]:
    by_suite: dict[tuple[str, str], list[CellRecord]] = defaultdict(list)
    for r in records:
        by_suite[(r.suite, r.suite_hash)].append(r)
    return [build_suite(suite, h, recs) for (suite, h), recs in sorted(by_suite.items())]


def build_suite(suite: str, suite_hash: str, records: list[CellRecord]) -> SuiteView:
    columns = _columns(records)
    methods = _rows([r for r in records if r.role == "method"], columns)
    refs = _rows([r for r in records if r.role == "reference"], columns)
    _rank(methods, columns)
    for ref in refs:
        ref.rank_text = ref.gap_text = "n/a: reference row"
    _gaps(methods, columns, {r.name: r for r in methods}, {r.name: r for r in refs})
    floor = _floor_row(columns)
    if floor:
        refs.append(floor)
    refs.sort(key=lambda r: ("teacher", "untrained", "data floor").index(r.name)
              if r.name in ("teacher", "untrained", "data floor") else 9)
    cost_keys = [k for k in COST_KEYS] + sorted({k for r in records for k in r.costs} - set(COST_KEYS))
    for row in methods + refs:
        _row_costs(row, cost_keys)
    # Coverage first: a method must not climb the board by running on fewer tracks than the others.
    methods.sort(key=lambda r: (r.mean_rank is None, -r.rank_tracks, r.mean_rank or 0.0, r.name))
    return SuiteView(suite, suite_hash, columns, methods, refs, cost_keys)


def _track_order(track: str) -> tuple[int, str]:
    return (ALL_TRACKS.index(track) if track in ALL_TRACKS else len(ALL_TRACKS), track)


def _columns(records: list[CellRecord]) -> list[Column]:
    found: dict[str, Column] = {}
    for r in records:
        key = f"{r.track}|{r.pair}"
        col = found.setdefault(key, Column(key, r.track, r.pair, r.primary_metric, r.higher_is_better))
        for name in r.metrics if r.status == "ok" else ():
            if name not in (col.metric, FLOOR_METRIC) and name not in col.secondary:
                col.secondary.append(name)
        if r.status == "ok" and FLOOR_METRIC in r.metrics and col.floor is None:
            col.floor = float(r.metrics[FLOOR_METRIC])
    return sorted(found.values(), key=lambda c: (_track_order(c.track), c.pair))


def _rows(records: list[CellRecord], columns: list[Column]) -> list[Row]:
    grouped: dict[str, list[CellRecord]] = defaultdict(list)
    for r in records:
        grouped[r.method].append(r)
    rows = []
    for name, recs in grouped.items():
        row = _row_meta(name, recs)
        for col in columns:
            row.cells[col.key] = _cell([r for r in recs if f"{r.track}|{r.pair}" == col.key], col)
        rows.append(row)
    return rows


def _row_meta(name: str, recs: list[CellRecord]) -> Row:
    meta = next((r for r in recs if r.status == "ok"), recs[0])
    paper = meta.method_paper or {}
    return Row(name=name, role=meta.role, category=meta.method_category, summary=meta.method_summary,
               paper_title=str(paper.get("title", "")), paper_url=fmt.safe_url(paper.get("url", "")),
               paper_venue=str(paper.get("venue", "")), variant=meta.method_variant,
               distribution=meta.distribution, version=meta.distribution_version,
               config=meta.method_config)


def _cell(recs: list[CellRecord], col: Column) -> Cell:
    if not recs:
        return Cell("not run", "not run")
    ok = sorted((r for r in recs if r.primary_value is not None), key=lambda r: r.seed)
    failed = [r for r in recs if r.status == "failed"]
    na = [r for r in recs if r.status == "n/a"]
    broken = [r for r in recs if r.status == "ok" and r.primary_value is None]
    if not ok:
        if failed or broken:
            why = fmt.first_line(failed[0].reason) if failed else "non-finite metric"
            note = f"{len(failed) + len(broken)} of {len(recs)} seeds failed" if len(recs) > 1 else ""
            return Cell("failed", f"failed: {why}", note=note)
        return Cell("n/a", f"n/a: {fmt.first_line(na[0].reason)}")
    values = [r.primary_value for r in ok]
    est = mean_ci(values)
    others = {}
    for name in col.secondary:
        vals = [float(r.metrics[name]) for r in ok if name in r.metrics]
        vals = [v for v in vals if math.isfinite(v)]
        if vals:
            others[name] = mean_ci(vals)
    costs = {}
    for key in {k for r in ok for k in r.costs}:
        vals = [float(r.costs[key]) for r in ok if isinstance(r.costs.get(key), (int, float))]
        if vals:
            costs[key] = max(vals) if key in MAX_COSTS else mean(vals)
    missing = len(recs) - len(ok)
    note = ""
    if missing:
        bad = failed[0] if failed else (na[0] if na else None)
        why = f"; {bad.status}: {fmt.first_line(bad.reason)}" if bad else ""
        note = f"{len(ok)} of {len(recs)} seeds{why}"
    return Cell("partial" if missing else "ok", fmt.estimate(est), est, values, note,
                others=others, costs=costs)


def _rank(methods: list[Row], columns: list[Column]) -> None:
    """Per column: scored methods by score; methods whose every seed failed share last place.

    n/a and not-run cells are left out (the method does not apply, or nobody ran it);
    a failure is the method's own outcome under the shared budget, so it counts.
    """
    per_col = []
    for col in columns:
        scores = {row.name: row.cells[col.key].estimate.mean for row in methods
                  if row.cells[col.key].estimate is not None}
        col_ranks = ranks(scores, col.higher_is_better)
        failed = [row.name for row in methods if row.cells[col.key].kind == "failed"]
        col_ranks.update({name: len(scores) + (len(failed) + 1) / 2 for name in failed})
        for row in methods:
            row.cells[col.key].rank = col_ranks.get(row.name)
        per_col.append(col_ranks)
    overall = mean_rank(per_col)
    for row in methods:
        if row.name in overall:
            row.mean_rank, row.rank_tracks = overall[row.name]
            row.rank_text = f"{row.mean_rank:.2f}"
            if row.rank_tracks < len(columns):
                row.rank_text += f"{fmt.NBSP}({row.rank_tracks}/{len(columns)}{fmt.NBSP}tracks)"
        else:
            row.rank_text = "n/a: no track has a score"


def _gaps(rows: list[Row], columns: list[Column], methods: dict[str, Row], refs: dict[str, Row]):
    sft, teacher = methods.get("sft"), refs.get("teacher")
    for row in rows:
        gaps, why = [], "n/a: no SFT row" if sft is None else "n/a: no teacher row"
        for col in columns:
            cell = row.cells[col.key]
            if sft is None or teacher is None or cell.estimate is None:
                continue
            s, t = sft.cells[col.key].estimate, teacher.cells[col.key].estimate
            if s is None or t is None:
                why = "n/a: SFT or teacher has no score on these tracks"
                continue
            cell.gap = gap_closed(cell.estimate.mean, s.mean, t.mean, col.higher_is_better)
            if cell.gap is None:
                why = "n/a: the teacher does not beat SFT"
            else:
                gaps.append(cell.gap)
        if sft is not None and teacher is not None and not any(
                c.estimate for c in row.cells.values()):
            why = "n/a: no track has a score"
        row.gap = mean(gaps) if gaps else None
        row.gap_text = fmt.percent(row.gap) if gaps else why
        if gaps and len(gaps) < len(columns):
            row.gap_text += f"{fmt.NBSP}({len(gaps)}/{len(columns)}{fmt.NBSP}tracks)"


def _floor_row(columns: list[Column]) -> Row | None:
    if all(c.floor is None for c in columns):
        return None
    row = Row(name="data floor", role="reference",
              summary="True entropy of the synthetic text: no model can do better.")
    for col in columns:
        if col.floor is None:
            row.cells[col.key] = Cell("n/a", "n/a: no known floor for this track")
        else:
            row.cells[col.key] = Cell("ok", fmt.number(col.floor), Estimate(col.floor, None, 1))
    row.rank_text = row.gap_text = "n/a: reference row"
    return row


def _row_costs(row: Row, cost_keys: list[str]) -> None:
    for key in cost_keys:
        if row.name == "data floor":
            row.costs[key] = (None, "n/a: not a model")
            continue
        vals = [c.costs[key] for c in row.cells.values() if key in c.costs]
        if vals:
            value = max(vals) if key in MAX_COSTS else mean(vals)
            row.costs[key] = (value, fmt.cost(key, value))
        elif any(c.estimate for c in row.cells.values()):
            row.costs[key] = (None, "n/a: not metered")
        else:
            row.costs[key] = (None, "n/a: no completed cell")


def category_order(category: str) -> int:
    return CATEGORIES.index(category) if category in CATEGORIES else len(CATEGORIES)
