"""Hand-written SVG: well-formed XML, escaped labels, the marks the data calls for."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from ctkd_bench.report.stats import Estimate, mean_ci
from ctkd_bench.report.svg import Bar, Point, RefLine, bar_chart, nice_ticks, scatter, spread

NS = "{http://www.w3.org/2000/svg}"
EVIL = '<script>alert(1)</script> & "x"'


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)   # raises on anything not well-formed


@pytest.mark.parametrize("lo, hi", [(0.18, 0.62), (1.03, 1.65), (15, 57), (-3, 2), (0.5, 0.5)])
def test_nice_ticks_cover_the_range_with_even_round_steps(lo, hi):
    ticks = nice_ticks(lo, hi)
    assert ticks[0] <= lo and ticks[-1] >= hi
    steps = {round(b - a, 9) for a, b in zip(ticks, ticks[1:])}
    assert len(steps) == 1 and 2 <= len(ticks) <= 8


def test_spread_keeps_order_and_minimum_gap():
    out = spread([10, 11, 12, 50, 51], gap=5, lo=0, hi=100)
    assert out == sorted(out)
    assert all(b - a >= 5 - 1e-9 for a, b in zip(out, out[1:]))
    assert spread([3, 90], gap=5, lo=0, hi=100) == [3, 90]   # already apart: untouched


def test_bar_chart_draws_one_bar_per_method_and_one_dot_per_seed():
    bars = [Bar("uld", "probability-distribution alignment", mean_ci([0.3, 0.32, 0.31]),
                [0.3, 0.32, 0.31], "0.310 ± 0.025"),
            Bar(EVIL, "text alignment", mean_ci([0.2, 0.25]), [0.2, 0.25], "0.225")]
    svg = bar_chart("math " + EVIL, bars, [RefLine("teacher", 0.6), RefLine("untrained", 40.0)],
                    higher_is_better=True)
    root = parse(svg)
    assert len(root.findall(f".//{NS}circle")) == 5
    texts = "".join(root.itertext())
    assert EVIL in texts                      # shown literally...
    assert "<script" not in svg               # ...because it was escaped
    assert "off scale: untrained 40" in texts  # a far-away reference does not squash the bars
    assert "teacher" in texts


def test_scatter_uses_a_log_axis_for_costs_spanning_orders_of_magnitude():
    pts = [Point("a", "baseline", 1.0, Estimate(0.5, 0.1, 3)),
           Point("b", "baseline", 500.0, Estimate(0.7, None, 1))]
    root = parse(scatter("t", pts, "time (s)", "acc", [RefLine("sft", 0.55)], True))
    assert "(log scale)" in "".join(root.itertext())
    assert len(root.findall(f".//{NS}circle")) == 2
    linear = parse(scatter("t", [pts[0], Point("b", "x", 3.0, Estimate(0.7, None, 1))],
                           "time (s)", "acc", [], True))
    assert "(log scale)" not in "".join(linear.itertext())
