"""Leaderboard statistics against hand-computed and tabulated values."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctkd_bench.report.stats import (gap_closed, mean_ci, mean_rank, ranks, sample_std, t_cdf,
                                     t_quantile)

# Two-sided 95% critical values of Student's t (any printed table).
T_TABLE = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 9: 2.262, 19: 2.093, 29: 2.045}


@pytest.mark.parametrize("df, expected", sorted(T_TABLE.items()))
def test_t_quantile_matches_the_printed_table(df, expected):
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=5e-4)


def test_t_quantile_closed_forms_for_one_and_two_degrees_of_freedom():
    for p in (0.6, 0.9, 0.95, 0.995):
        assert t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-9)
        assert t_quantile(p, 2) == pytest.approx((2 * p - 1) / math.sqrt(2 * p * (1 - p)), rel=1e-9)


def test_t_quantile_agrees_with_scipy_when_available():
    scipy_stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 3, 6, 14, 50):
        for p in (0.9, 0.975, 0.99):
            assert t_quantile(p, df) == pytest.approx(scipy_stats.t.ppf(p, df), rel=1e-8)


def test_t_cdf_is_symmetric_and_monotone():
    assert t_cdf(0.0, 3) == 0.5
    assert t_cdf(-1.3, 4) == pytest.approx(1 - t_cdf(1.3, 4), abs=1e-12)
    values = [t_cdf(x, 5) for x in (-3, -1, 0, 1, 3)]
    assert values == sorted(values)


def test_mean_ci_by_hand():
    est = mean_ci([1.0, 2.0, 3.0])               # mean 2, s = 1, n = 3
    assert est.mean == 2.0 and est.n == 3
    assert est.half_width == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    assert (est.low, est.high) == pytest.approx((2 - est.half_width, 2 + est.half_width))
    one = mean_ci([0.7])
    assert one.half_width is None and one.low == one.high == 0.7
    assert mean_ci([5.0, 5.0]).half_width == 0.0
    with pytest.raises(ValueError):
        mean_ci([])


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=8))
def test_interval_contains_the_mean_and_grows_with_spread(values):
    est = mean_ci(values)
    assert est.low <= est.mean <= est.high
    wider = mean_ci([2 * v for v in values])
    assert wider.half_width == pytest.approx(2 * est.half_width, rel=1e-9, abs=1e-9)
    assert est.half_width == pytest.approx(
        t_quantile(0.975, len(values) - 1) * sample_std(values) / math.sqrt(len(values)), rel=1e-12)


def test_ranks_follow_the_metric_direction_and_share_ties():
    scores = {"a": 0.3, "b": 0.9, "c": 0.5, "d": 0.5}
    assert ranks(scores, higher_is_better=True) == {"b": 1, "c": 2.5, "d": 2.5, "a": 4}
    assert ranks(scores, higher_is_better=False) == {"a": 1, "c": 2.5, "d": 2.5, "b": 4}
    assert ranks({}, True) == {}


def test_mean_rank_counts_only_the_tracks_a_method_has():
    out = mean_rank([{"a": 1, "b": 2}, {"a": 3, "b": 1, "c": 2}, {"b": 2}])
    assert out == {"a": (2.0, 2), "b": (5 / 3, 3), "c": (2.0, 1)}


@pytest.mark.parametrize("method, sft, teacher, higher, expected", [
    (0.5, 0.4, 0.8, True, 0.25),        # accuracy-like: a quarter of the way
    (1.5, 1.6, 1.2, False, 0.25),       # bits per byte: lower is better, same quarter
    (0.3, 0.4, 0.8, True, -0.25),       # worse than SFT
    (0.9, 0.4, 0.8, True, 1.25),        # beyond the teacher
    (1.7, 1.6, 1.2, False, -0.25),
])
def test_gap_closed_respects_direction(method, sft, teacher, higher, expected):
    assert gap_closed(method, sft, teacher, higher) == pytest.approx(expected)


@pytest.mark.parametrize("sft, teacher, higher", [
    (0.8, 0.4, True),    # teacher below SFT on a higher-is-better metric
    (1.2, 1.6, False),   # teacher above SFT on a lower-is-better metric
    (0.5, 0.5, True),    # no gap
])
def test_gap_closed_is_undefined_when_the_teacher_does_not_beat_sft(sft, teacher, higher):
    assert gap_closed(0.6, sft, teacher, higher) is None
