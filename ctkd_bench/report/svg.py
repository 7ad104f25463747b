"""Hand-written SVG plots: per-track bars with seed spread, and score against cost.

Every string that reaches the SVG passes through `esc` (plugin names are
untrusted). The SVG uses presentation attributes only, so the same text works
inline in the HTML page and as a standalone .svg file next to the markdown.
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass, field

from .stats import Estimate

FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"
CATEGORY_COLORS = {
    "probability-distribution alignment": "#4e79a7",
    "multi-level alignment": "#f28e2b",
    "reasoning alignment": "#59a14f",
    "text alignment": "#b07aa1",
    "baseline": "#8c8c8c",
}
OTHER_COLOR = "#e15759"
WIDTH = 700   # two plots side by side on a laptop screen
REF_STYLES = {"teacher": "#1b7837", "sft": "#444444", "untrained": "#b2182b",
              "data floor": "#2166ac"}


def esc(text) -> str:
    return html.escape(str(text), quote=True)


def color_for(category: str) -> str:
    return CATEGORY_COLORS.get(category, OTHER_COLOR)


@dataclass
class Bar:
    label: str
    category: str
    estimate: Estimate
    seeds: list[float] = field(default_factory=list)
    text: str = ""


@dataclass
class Point:
    label: str
    category: str
    x: float
    estimate: Estimate


@dataclass
class RefLine:
    label: str
    value: float


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (the first <= lo, the last >= hi)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError("ticks need finite bounds")
    if hi <= lo:
        lo, hi = lo - (abs(lo) * 0.1 or 1.0), hi + (abs(hi) * 0.1 or 1.0)
    raw = (hi - lo) / max(count - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw * (1 - 1e-9))
    start = math.floor(lo / step + 1e-9) * step
    n = max(1, math.ceil((hi - start) / step - 1e-9))
    return [round(start + i * step, 12) for i in range(n + 1)]


def _tick_text(value: float, ticks: list[float]) -> str:
    """Just enough decimals to tell neighbouring ticks apart."""
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    decimals = 0
    while decimals < 6 and abs(round(step, decimals) - step) > 1e-9 * max(1.0, abs(step)):
        decimals += 1
    return f"{value:.{decimals}f}"


def _svg_open(width: int, height: int, title: str) -> list[str]:
    return [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
            f'width="{width}" height="{height}" role="img" font-family="{esc(FONT)}" '
            f'font-size="12" fill="#222">',
            f"<title>{esc(title)}</title>",
            f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
            f'<text x="8" y="18" font-size="14" font-weight="600">{esc(title)}</text>']


def _short(label: str, limit: int = 26) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def bar_chart(title: str, bars: list[Bar], refs: list[RefLine], higher_is_better: bool) -> str:
    """Horizontal bars (mean), 95% CI whiskers and one dot per seed; dashed reference lines."""
    left, right, top, row_h = 190, 105, 68, 24
    width = WIDTH
    height = top + row_h * max(len(bars), 1) + 40
    values = [v for b in bars for v in (b.estimate.low, b.estimate.high, *b.seeds)]
    shown, off_scale = _fit_refs(values, refs)
    ticks = nice_ticks(min(values + [r.value for r in shown]), max(values + [r.value for r in shown]))
    lo, hi = ticks[0], ticks[-1]
    plot_w = width - left - right

    def x(v: float) -> float:
        return left + (v - lo) / (hi - lo) * plot_w

    out = _svg_open(width, height, title)
    note = ("higher is better" if higher_is_better else "lower is better")
    if off_scale:
        note += "; off scale: " + ", ".join(f"{r.label} {r.value:.3g}" for r in off_scale)
    out.append(f'<text x="8" y="36" font-size="11" fill="#555">{esc(note)}</text>')
    bottom = top + row_h * max(len(bars), 1)
    out += _x_axis(ticks, x, bottom, top)
    for i, bar in enumerate(bars):
        y = top + i * row_h
        color = color_for(bar.category)
        est = bar.estimate
        out.append(f'<g><title>{esc(bar.label)}: {esc(bar.text)}</title>')
        out.append(f'<text x="{left - 8}" y="{y + 16}" text-anchor="end">{esc(_short(bar.label))}</text>')
        out.append(f'<rect x="{left}" y="{y + 5}" width="{max(x(est.mean) - left, 1):.1f}" '
                   f'height="{row_h - 10}" fill="{color}" fill-opacity="0.75"/>')
        if est.half_width is not None:
            out.append(f'<line x1="{x(est.low):.1f}" x2="{x(est.high):.1f}" y1="{y + 12}" '
                       f'y2="{y + 12}" stroke="#111" stroke-width="1.5"/>')
        for s in bar.seeds:
            out.append(f'<circle cx="{x(s):.1f}" cy="{y + 12}" r="2.6" fill="#fff" '
                       f'stroke="#111" stroke-width="1"/>')
        out.append(f'<text x="{width - right + 6}" y="{y + 16}" font-size="11">'
                   f'{esc(bar.text)}</text></g>')
    out += _ref_lines_vertical(shown, x, top, bottom)
    out.append("</svg>")
    return "\n".join(out)


def scatter(title: str, points: list[Point], x_label: str, y_label: str, refs: list[RefLine],
            higher_is_better: bool) -> str:
    """Score (with CI) against a cost; log x axis when the costs span over 20x."""
    left, right, top, bottom_m = 60, 150, 44, 48
    width, height = WIDTH, 380
    xs = [p.x for p in points]
    ys = [v for p in points for v in (p.estimate.low, p.estimate.high)]
    shown, _ = _fit_refs(ys, refs)
    log_x = min(xs) > 0 and max(xs) / min(xs) > 20
    fx = (lambda v: math.log10(v)) if log_x else (lambda v: v)
    xticks = nice_ticks(min(map(fx, xs)), max(map(fx, xs)))
    yticks = nice_ticks(min(ys + [r.value for r in shown]), max(ys + [r.value for r in shown]))
    plot_w, plot_h = width - left - right, height - top - bottom_m
    bottom = top + plot_h

    def px(v: float) -> float:
        return left + (fx(v) - xticks[0]) / (xticks[-1] - xticks[0]) * plot_w

    def py(v: float) -> float:
        return bottom - (v - yticks[0]) / (yticks[-1] - yticks[0]) * plot_h

    out = _svg_open(width, height, title)
    out.append(f'<text x="8" y="34" font-size="11" fill="#555">'
               f'{esc(y_label)} ({"higher" if higher_is_better else "lower"} is better)</text>')
    for t in yticks:
        out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{py(t):.1f}" y2="{py(t):.1f}" '
                   f'stroke="#e6e6e6"/>')
        out.append(f'<text x="{left - 6}" y="{py(t) + 4:.1f}" text-anchor="end" font-size="11">'
                   f'{_tick_text(t, yticks)}</text>')
    for t in xticks:
        xv = left + (t - xticks[0]) / (xticks[-1] - xticks[0]) * plot_w
        label = f"{10 ** t:.3g}" if log_x else _tick_text(t, xticks)
        out.append(f'<line x1="{xv:.1f}" x2="{xv:.1f}" y1="{top}" y2="{bottom}" stroke="#f0f0f0"/>')
        out.append(f'<text x="{xv:.1f}" y="{bottom + 16}" text-anchor="middle" font-size="11">'
                   f'{label}</text>')
    axis = x_label + (" (log scale)" if log_x else "")
    out.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 10}" text-anchor="middle">'
               f'{esc(axis)}</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" '
               f'stroke="#999"/>')
    for ref in shown:
        color = REF_STYLES.get(ref.label, "#666")
        out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{py(ref.value):.1f}" '
                   f'y2="{py(ref.value):.1f}" stroke="{color}" stroke-dasharray="5 4"/>')
        out.append(f'<text x="{left + 4}" y="{py(ref.value) - 4:.1f}" font-size="10" '
                   f'fill="{color}">{esc(ref.label)}</text>')
    # Labels sit in a column right of the plot, spread apart, with a leader line each:
    # clustered points stay readable.
    ordered = sorted(points, key=lambda p: py(p.estimate.mean))
    label_ys = spread([py(p.estimate.mean) for p in ordered], gap=13, lo=top + 4, hi=bottom)
    for p, ly in zip(ordered, label_ys):
        cx, cy, est = px(p.x), py(p.estimate.mean), p.estimate
        out.append(f'<g><title>{esc(p.label)}: {est.mean:.4g} at {p.x:.3g}</title>')
        if est.half_width is not None:
            out.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{py(est.low):.1f}" '
                       f'y2="{py(est.high):.1f}" stroke="#333"/>')
        out.append(f'<line x1="{cx:.1f}" y1="{cy:.1f}" x2="{left + plot_w + 6}" y2="{ly:.1f}" '
                   f'stroke="#bbb" stroke-width="0.7"/>')
        out.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="5" fill="{color_for(p.category)}" '
                   f'stroke="#222"/>')
        out.append(f'<text x="{left + plot_w + 9}" y="{ly + 4:.1f}" font-size="11">'
                   f'{esc(_short(p.label, 20))}</text></g>')
    out.append("</svg>")
    return "\n".join(out)


def spread(ys: list[float], gap: float, lo: float, hi: float) -> list[float]:
    """Move sorted label positions apart by at least `gap`, staying within [lo, hi] if they fit."""
    out = list(ys)
    for i in range(len(out)):
        out[i] = max(out[i], lo if i == 0 else out[i - 1] + gap)
    for i in reversed(range(len(out))):
        out[i] = min(out[i], hi if i == len(out) - 1 else out[i + 1] - gap)
    for i in range(len(out)):   # too many labels for the height: keep the order, overflow below
        out[i] = max(out[i], lo if i == 0 else out[i - 1] + gap)
    return out


def _fit_refs(values: list[float], refs: list[RefLine]) -> tuple[list[RefLine], list[RefLine]]:
    """Split reference lines into those drawn and those that would squash the data (> 3x span)."""
    lo, hi = min(values), max(values)
    span = max(hi - lo, 1e-9)
    shown, off = [], []
    for ref in refs:
        new_span = max(hi, ref.value) - min(lo, ref.value)
        (shown if new_span <= 3 * span else off).append(ref)
    return shown, off


def _x_axis(ticks: list[float], x, bottom: float, top: float) -> list[str]:
    out = []
    for t in ticks:
        out.append(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{top}" y2="{bottom}" '
                   f'stroke="#ececec"/>')
        out.append(f'<text x="{x(t):.1f}" y="{bottom + 16}" text-anchor="middle" font-size="11">'
                   f'{_tick_text(t, ticks)}</text>')
    out.append(f'<line x1="{x(ticks[0]):.1f}" x2="{x(ticks[-1]):.1f}" y1="{bottom}" '
               f'y2="{bottom}" stroke="#999"/>')
    return out


def _ref_lines_vertical(refs: list[RefLine], x, top: float, bottom: float) -> list[str]:
    out = []
    for i, ref in enumerate(refs):
        color = REF_STYLES.get(ref.label, "#666")
        out.append(f'<line x1="{x(ref.value):.1f}" x2="{x(ref.value):.1f}" y1="{top - 4}" '
                   f'y2="{bottom}" stroke="{color}" stroke-width="1.5" stroke-dasharray="5 4"/>')
        out.append(f'<text x="{x(ref.value):.1f}" y="{top - 8 - 10 * (i % 2)}" text-anchor="middle" '
                   f'font-size="10" fill="{color}">{esc(ref.label)}</text>')
    return out
