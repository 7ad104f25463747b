"""Which plots a suite gets, built from its view: per column a bar chart and a cost scatter."""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..util import stable_hash
from .model import Column, SuiteView
from .svg import Bar, Point, RefLine, bar_chart, scatter

COST_AXIS = ("wall_prepare_s", "wall_train_s")   # x of the scatter: time spent to get the student


@dataclass
class Plot:
    name: str          # file name under plots/
    title: str
    svg: str


# Every name `_column_plots` gives: <suite>-<track>-<pair>-<6 hex of suite hash and column>-bars|cost.svg
PLOT_NAME = re.compile(r"^.+-[0-9a-f]{6}-(bars|cost)\.svg$")


def suite_plots(view: SuiteView) -> dict[str, list[Plot]]:
    """column key -> its plots (none where no method has a score)."""
    return {col.key: _column_plots(view, col) for col in view.columns}


def _column_plots(view: SuiteView, col: Column) -> list[Plot]:
    scored = [r for r in view.rows if r.cells[col.key].estimate is not None]
    if not scored:
        return []
    scored.sort(key=lambda r: r.cells[col.key].rank or 0.0)
    refs = [RefLine(r.name, r.cells[col.key].estimate.mean) for r in view.references
            if r.cells.get(col.key) is not None and r.cells[col.key].estimate is not None]
    sft = next((r for r in view.rows if r.is_sft and r.cells[col.key].estimate), None)
    if sft is not None:
        refs.append(RefLine("sft", sft.cells[col.key].estimate.mean))
    stem = _slug(f"{view.suite}-{col.track}-{col.pair}") + "-" + stable_hash(
        [view.suite_hash, col.key], 6)
    title = f"{view.suite} · {col.track} · {col.pair} — {col.metric}"
    bars = [Bar(r.name, r.category, r.cells[col.key].estimate, r.cells[col.key].seeds,
                r.cells[col.key].text) for r in scored]
    plots = [Plot(f"{stem}-bars.svg", title, bar_chart(title, bars, refs, col.higher_is_better))]
    points = []
    for r in scored:
        costs = r.cells[col.key].costs
        if all(k in costs for k in COST_AXIS):
            points.append(Point(r.name, r.category, sum(costs[k] for k in COST_AXIS),
                                r.cells[col.key].estimate))
    if points:
        s_title = f"{col.track}: {col.metric} vs prepare + train time"
        plots.append(Plot(f"{stem}-cost.svg", s_title,
                          scatter(s_title, points, "prepare + train wall time per cell (s)",
                                  col.metric, [x for x in refs if x.label != "untrained"],
                                  col.higher_is_better)))
    return plots


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.]+", "-", text).strip("-")[:60] or "plot"
