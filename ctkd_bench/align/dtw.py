"""Dynamic time warping over a cost matrix, as in the DSKD/FuseLLM MinED code and CDM.

Official routine (DSKD `code/criterions/min_edit_dis_kld.py::dtw` @ 077337a; CDM
`src/run_clm_distill_CDM.py::dtw` @ 144f18c adds the weights):

- ``D(i, j) = c(i, j) + min(D(i-1, j), D(i, j-1), D(i-1, j-1))`` with ``D(-1, -1) = 0``
  and infinity elsewhere on the border, so the path starts at (0, 0) and ends at
  (n-1, m-1);
- CDM's weighted cost is ``c(i, j) = cost(i, j) * w_a[i] * w_b[j]`` (edit distance
  times the two entropy weights);
- back-trace from (n-1, m-1), choosing the smallest of (diagonal, up = i-1,
  left = j-1), ties broken in that order (``np.argmin``), until (0, 0).

The forward pass is vectorised two ways, both bit-identical to the double loop:
row by row with a cumulative minimum when every cost is an integer (edit
distances, CDM's integer weights: sums are exact), else along anti-diagonals (the
same additions and minima as the loop).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def _as_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def _dtw_diagonals(cost: np.ndarray) -> np.ndarray:
    """Accumulated cost along anti-diagonals: the double loop's exact operations, vectorised."""
    n, m = cost.shape
    D = np.full((n + 1, m + 1), np.inf)
    D[0, 0] = 0.0
    for d in range(2, n + m + 1):               # anti-diagonal i + j = d in 1-based indices
        i = np.arange(max(1, d - m), min(n, d - 1) + 1)
        j = d - i
        best = np.minimum(np.minimum(D[i - 1, j], D[i, j - 1]), D[i - 1, j - 1])
        D[i, j] = cost[i - 1, j - 1] + best
    return D[1:, 1:]


def _dtw_rows(cost: np.ndarray) -> np.ndarray:
    """Accumulated cost row by row, for integer-valued costs (exact in float64 below 2**53).

    Within a row, ``D[i, j] = c[i, j] + min(x[j], D[i, j-1])`` with
    ``x[j] = min(D[i-1, j], D[i-1, j-1])`` unrolls to
    ``D[i, j] = P[j] + min_{k <= j} (x[k] - P[k-1])`` (P: prefix sums of the row's
    costs): a cumulative minimum. Sums of integers are exact, so D equals the loop's.
    """
    n, m = cost.shape
    D = np.empty((n, m))
    prev = np.full(m + 1, np.inf)                # D[i-1, j-1] for j = 0..m (column -1 first)
    prev[0] = 0.0
    for i in range(n):
        x = np.minimum(prev[1:], prev[:-1])
        P = np.cumsum(cost[i])
        P_before = np.concatenate(([0.0], P[:-1]))
        D[i] = P + np.minimum.accumulate(x - P_before)
        prev = np.concatenate(([np.inf], D[i]))
    return D


def dtw_matrix(cost: np.ndarray) -> np.ndarray:
    """Accumulated cost D [n, m] of the DTW recursion (float64), identical to the double loop."""
    cost = np.asarray(cost, dtype=np.float64)
    if cost.size and np.isfinite(cost).all() and (cost == np.round(cost)).all() \
            and np.abs(cost).sum() < 2.0 ** 52:
        return _dtw_rows(cost)
    return _dtw_diagonals(cost)


def backtrace(D: np.ndarray) -> list[tuple[int, int]]:
    """Monotone path from (0, 0) to (n-1, m-1) through D (ties: diagonal, up, left)."""
    i, j = D.shape[0] - 1, D.shape[1] - 1
    path = []
    while i > 0 or j > 0:
        path.append((i, j))
        diag = D[i - 1, j - 1] if i > 0 and j > 0 else np.inf
        up = D[i - 1, j] if i > 0 else np.inf
        left = D[i, j - 1] if j > 0 else np.inf
        if diag <= up and diag <= left:
            i, j = i - 1, j - 1
        elif up <= left:
            i -= 1
        else:
            j -= 1
    path.append((0, 0))
    path.reverse()
    return path


def dtw(cost, weights_a=None, weights_b=None) -> tuple[float, list[tuple[int, int]]]:
    """DTW over `cost` [n, m] (optionally times weights_a[i] * weights_b[j]): (total, path).

    Empty inputs give (0.0, []).
    """
    C = _as_numpy(cost)
    n, m = C.shape
    if n == 0 or m == 0:
        return 0.0, []
    if weights_a is not None:
        C = C * _as_numpy(weights_a).reshape(n, 1)
    if weights_b is not None:
        C = C * _as_numpy(weights_b).reshape(1, m)
    D = dtw_matrix(C)
    return float(D[-1, -1]), backtrace(D)


def path_maps(path: Sequence[tuple[int, int]], n: int, m: int) -> tuple[list[list[int]], list[list[int]]]:
    """For each i, the js aligned to it, and for each j, the is (the official `mappings_series_*`)."""
    a_to_b: list[list[int]] = [[] for _ in range(n)]
    b_to_a: list[list[int]] = [[] for _ in range(m)]
    for i, j in path:
        a_to_b[i].append(j)
        b_to_a[j].append(i)
    return a_to_b, b_to_a
