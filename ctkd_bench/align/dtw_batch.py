"""DTW over a batch of integer cost matrices at once: the paths of `dtw.dtw`, vectorised over rows.

Same recursion, border and back-trace ties (diagonal, up, left) as `ctkd_bench.align.dtw`
(the DSKD/CDM ``dtw``). Matrices of different sizes are padded to [B, N, M]; entry b uses
``cost[b, :n[b], :m[b]]`` and ignores the rest. For integer-valued costs (edit distances,
CDM's edit distance times integer weights) every accumulated cost is an exact integer, so
the paths equal the per-matrix `dtw` paths exactly; non-integer costs are refused.

Cost: a small C kernel (`ctkd_bench.native`; CDM runs this every step, where numpy's per-call
cost was most of it) doing the double loop and the back-trace of each matrix; without a C
compiler, one vectorised row recursion over the batch (`dtw._dtw_rows`, batched), one
vectorised move table, then one pointer walk over the batch (at most n + m - 1 steps). Both
give the same paths (tested against each other and against `dtw.dtw`).
"""
from __future__ import annotations

import ctypes

import numpy as np

from ctkd_bench import native

KERNEL = r"""
#include <math.h>
#include <stdint.h>

/* For each b: the DTW of cost[b, :n[b], :m[b]] (row-major [B, N, M]) and its back-trace,
   marked in on[b] (zeroed by the caller). D: scratch of N * M doubles. */
void dtw_paths(int64_t B, int64_t N, int64_t M, const double *cost, const int64_t *n,
               const int64_t *m, double *D, uint8_t *on) {
    for (int64_t b = 0; b < B; b++) {
        int64_t nb = n[b], mb = m[b];
        if (nb <= 0 || mb <= 0) continue;
        const double *c = cost + b * N * M;
        uint8_t *path = on + b * N * M;
        for (int64_t i = 0; i < nb; i++) {
            for (int64_t j = 0; j < mb; j++) {
                double best = (i == 0 && j == 0) ? 0.0 : INFINITY;
                if (i > 0 && D[(i - 1) * M + j] < best) best = D[(i - 1) * M + j];
                if (j > 0 && D[i * M + j - 1] < best) best = D[i * M + j - 1];
                if (i > 0 && j > 0 && D[(i - 1) * M + j - 1] < best) best = D[(i - 1) * M + j - 1];
                D[i * M + j] = c[i * M + j] + best;
            }
        }
        int64_t i = nb - 1, j = mb - 1;
        path[i * M + j] = 1;
        while (i > 0 || j > 0) {      /* ties: diagonal, then up, then left */
            double diag = (i > 0 && j > 0) ? D[(i - 1) * M + j - 1] : INFINITY;
            double up = i > 0 ? D[(i - 1) * M + j] : INFINITY;
            double left = j > 0 ? D[i * M + j - 1] : INFINITY;
            if (diag <= up && diag <= left) { i--; j--; }
            else if (up <= left) { i--; }
            else { j--; }
            path[i * M + j] = 1;
        }
    }
}
"""
SIGNATURES = {"dtw_paths": (ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, native.array(np.float64),
                            native.array(np.int64), native.array(np.int64), native.array(np.float64),
                            native.array(np.uint8))}


def dtw_matrix_batch(cost: np.ndarray) -> np.ndarray:
    """Accumulated costs [B, N, M]; [b, :n, :m] equals `dtw.dtw_matrix(cost[b, :n, :m])`.

    The recursion for a cell only reads cells above and to the left, so the padding
    (any finite values) changes nothing inside each matrix's own block.
    """
    B, N, M = cost.shape
    D = np.empty((B, N, M))
    prev = np.full((B, M + 1), np.inf)            # D[i-1, j-1] for j = 0..M (column -1 first)
    prev[:, 0] = 0.0
    zero = np.zeros((B, 1))
    for i in range(N):
        x = np.minimum(prev[:, 1:], prev[:, :-1])
        P = np.cumsum(cost[:, i], axis=1)
        before = np.concatenate((zero, P[:, :-1]), axis=1)
        D[:, i] = P + np.minimum.accumulate(x - before, axis=1)
        prev[:, 0] = np.inf
        prev[:, 1:] = D[:, i]
    return D


def backtrace_batch(D: np.ndarray, n: np.ndarray, m: np.ndarray) -> np.ndarray:
    """[B, N, M] bool: the cells on each matrix's back-traced path (`dtw.backtrace`'s choices)."""
    B, N, M = D.shape
    padded = np.full((B, N + 1, M + 1), np.inf)
    padded[:, 1:, 1:] = D
    diag, up, left = padded[:, :-1, :-1], padded[:, :-1, 1:], padded[:, 1:, :-1]
    go_diag = (diag <= up) & (diag <= left)
    go_up = ~go_diag & (up <= left)
    step = np.where(go_diag, M + 1, np.where(go_up, M, 1)).reshape(B, N * M)
    step[:, 0] = 0                                # (0, 0): the path's start, stay there
    nxt = np.arange(N * M) - step                 # flat index of the next cell back
    on = np.zeros((B, N * M), dtype=bool)
    live = np.nonzero((n > 0) & (m > 0))[0]
    if len(live) == 0:
        return on.reshape(B, N, M)
    cur = (n[live] - 1) * M + (m[live] - 1)
    nxt = nxt[live]
    rows = np.arange(len(live))
    for _ in range(int((n[live] + m[live]).max()) - 1):
        on[live, cur] = True
        cur = nxt[rows, cur]
    on[live, cur] = True
    return on.reshape(B, N, M)


def dtw_paths_batch(cost: np.ndarray, n, m) -> np.ndarray:
    """On-path cells [B, N, M] bool of the DTW of each ``cost[b, :n[b], :m[b]]`` (integer costs).

    Row b's path runs from (0, 0) to (n[b]-1, m[b]-1); rows with n or m = 0 have none.
    """
    cost = np.asarray(cost, dtype=np.float64)
    n, m = np.asarray(n, dtype=np.int64), np.asarray(m, dtype=np.int64)
    B, N, M = cost.shape
    if len(n) != B or len(m) != B or (n > N).any() or (m > M).any() or (n < 0).any() or (m < 0).any():
        raise ValueError(f"dtw_paths_batch: sizes n, m must be one per matrix and within [0, {N}] x [0, {M}]")
    inside = (np.arange(N)[None, :, None] < n[:, None, None]) & (np.arange(M)[None, None, :] < m[:, None, None])
    cost = np.where(inside, cost, 0.0)
    if not (np.isfinite(cost).all() and (cost == np.round(cost)).all() and np.abs(cost).sum() < 2.0 ** 52):
        raise ValueError("dtw_paths_batch needs finite integer-valued costs (use dtw.dtw otherwise)")
    if N == 0 or M == 0:
        return np.zeros((B, N, M), dtype=bool)
    lib = native.library("dtw_paths", KERNEL, SIGNATURES)
    if lib is None:
        return backtrace_batch(dtw_matrix_batch(cost), n, m)
    return _native_paths(lib, np.ascontiguousarray(cost), n, m)


def _native_paths(lib, cost: np.ndarray, n: np.ndarray, m: np.ndarray) -> np.ndarray:
    B, N, M = cost.shape
    on = np.zeros((B, N, M), dtype=np.uint8)
    lib.dtw_paths(B, N, M, cost, np.ascontiguousarray(n), np.ascontiguousarray(m), np.empty(N * M), on)
    return on.view(bool)
