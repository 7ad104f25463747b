"""Summary statistics for the leaderboard: means with t-intervals over seeds, ranks, gap closed.

Pure functions over plain floats (no scipy: the t quantile is computed here by
integrating the t density, which is accurate to ~1e-9 for the degrees of
freedom a seed count gives).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping, Sequence


@dataclass(frozen=True)
class Estimate:
    mean: float
    half_width: float | None   # None with a single seed: no interval
    n: int

    @property
    def low(self) -> float:
        return self.mean - (self.half_width or 0.0)

    @property
    def high(self) -> float:
        return self.mean + (self.half_width or 0.0)


def mean(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("mean of no values")
    return math.fsum(values) / len(values)


def sample_std(values: Sequence[float]) -> float:
    """Standard deviation with Bessel's correction (n - 1)."""
    if len(values) < 2:
        raise ValueError("a sample standard deviation needs two values")
    m = mean(values)
    return math.sqrt(math.fsum((v - m) ** 2 for v in values) / (len(values) - 1))


def t_density(x: float, df: int) -> float:
    log_c = (math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi))
    return math.exp(log_c - (df + 1) / 2 * math.log1p(x * x / df))


def t_cdf(x: float, df: int, intervals: int = 4000) -> float:
    """P(T <= x) by Simpson's rule on the density from 0 to |x| (symmetry for the rest)."""
    a = abs(x)
    if a == 0:
        return 0.5
    h = a / intervals
    total = t_density(0.0, df) + t_density(a, df)
    total += 4 * math.fsum(t_density((2 * i - 1) * h, df) for i in range(1, intervals // 2 + 1))
    total += 2 * math.fsum(t_density(2 * i * h, df) for i in range(1, intervals // 2))
    half = total * h / 3
    return 0.5 + half if x > 0 else 0.5 - half


@lru_cache(maxsize=256)
def t_quantile(p: float, df: int) -> float:
    """The p-quantile of Student's t with df degrees of freedom (0.5 < p < 1), by Newton."""
    if not 0.5 < p < 1 or df < 1:
        raise ValueError(f"t_quantile needs 0.5 < p < 1 and df >= 1, got p={p}, df={df}")
    z = _normal_quantile(p)
    x = z + (z ** 3 + z) / (4 * df)   # Cornish-Fisher start: close for df >= 3
    if df <= 2:
        x = math.tan(math.pi * (p - 0.5)) if df == 1 else (2 * p - 1) / math.sqrt(2 * p * (1 - p))
    for _ in range(50):
        step = (t_cdf(x, df) - p) / t_density(x, df)
        x -= step
        if abs(step) < 1e-12 * max(1.0, abs(x)):
            break
    return x


def _normal_quantile(p: float) -> float:
    lo, hi = -10.0, 10.0
    for _ in range(100):   # bisection on the normal CDF: plenty for a starting point
        mid = (lo + hi) / 2
        if 0.5 * math.erfc(-mid / math.sqrt(2)) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def mean_ci(values: Sequence[float], level: float = 0.95) -> Estimate:
    """Mean over seeds with the two-sided t-interval half width (None for one seed)."""
    values = [float(v) for v in values]
    m = mean(values)
    if len(values) < 2:
        return Estimate(m, None, len(values))
    t = t_quantile(0.5 + level / 2, len(values) - 1)
    return Estimate(m, t * sample_std(values) / math.sqrt(len(values)), len(values))


def ranks(scores: Mapping[str, float], higher_is_better: bool) -> dict[str, float]:
    """Rank 1 = best; tied scores share the mean of the ranks they span."""
    ordered = sorted(scores, key=lambda k: -scores[k] if higher_is_better else scores[k])
    out: dict[str, float] = {}
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and scores[ordered[j + 1]] == scores[ordered[i]]:
            j += 1
        for k in ordered[i:j + 1]:
            out[k] = (i + j) / 2 + 1
        i = j + 1
    return out


def mean_rank(per_track: Sequence[Mapping[str, float]]) -> dict[str, tuple[float, int]]:
    """Mean rank of each name over the tracks where it has one, and on how many tracks."""
    collected: dict[str, list[float]] = {}
    for track_ranks in per_track:
        for name, r in track_ranks.items():
            collected.setdefault(name, []).append(r)
    return {name: (mean(rs), len(rs)) for name, rs in collected.items()}


def gap_closed(method: float, sft: float, teacher: float, higher_is_better: bool) -> float | None:
    """(method - sft) / (teacher - sft): 0 = SFT, 1 = teacher, < 0 = worse than SFT.

    Undefined (None) unless the teacher beats SFT in the metric's direction: a
    ratio against a negative or zero gap would reward the wrong thing.
    """
    gap = teacher - sft
    if (gap <= 0 if higher_is_better else gap >= 0) or not math.isfinite(gap):
        return None
    return (method - sft) / gap
