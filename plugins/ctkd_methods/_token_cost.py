"""Edit-distance cost between two token-id sequences, by token id (CDM's and MinED's DTW cost).

``cost[i, j] = ED(a[t_ids[i]], b[s_ids[j]])`` over per-id strings, with every pair of strings
from ``zero_pairs`` (e.g. end-of-sequence strings) costing 0. The cost depends only on the two
vocabularies, so for vocabularies up to ``max_pairs`` id pairs the whole table is computed once
(in ``prepare``) and a sequence pair's cost is a gather; larger ones compute the distinct
string pairs of each call, memoised per id-sequence pair (a training example's pair recurs every
epoch). Both give exactly ``pairwise_edit_distance`` of the two sequences.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ctkd_bench.align.editdist import pairwise_edit_distance

MAX_TABLE_PAIRS = 1 << 22      # 4M id pairs: 16 MB of int32, about a second to build
MEMO_SIZE = 100_000            # sequence pairs kept when there is no table


class TokenCost:
    def __init__(self, a: Sequence[str], b: Sequence[str], zero_pairs: frozenset[str] = frozenset(),
                 max_pairs: int = MAX_TABLE_PAIRS):
        self.a, self.b = list(a), list(b)
        self.a_zero = np.array([s in zero_pairs for s in self.a], dtype=bool)
        self.b_zero = np.array([s in zero_pairs for s in self.b], dtype=bool)
        self.table = None
        self._memo: dict = {}
        if len(self.a) * len(self.b) <= max_pairs:
            self.table = self._distances(np.arange(len(self.a)), np.arange(len(self.b))).astype(np.int32)

    def _distances(self, a_ids: np.ndarray, b_ids: np.ndarray) -> np.ndarray:
        d = pairwise_edit_distance([self.a[i] for i in a_ids], [self.b[j] for j in b_ids])
        d[self.a_zero[a_ids][:, None] & self.b_zero[b_ids][None, :]] = 0
        return d

    def __call__(self, a_ids, b_ids) -> np.ndarray:
        """float64 [len(a_ids), len(b_ids)] costs (integer-valued)."""
        a_ids, b_ids = np.asarray(a_ids, dtype=np.int64), np.asarray(b_ids, dtype=np.int64)
        if self.table is not None:
            return self.table[a_ids[:, None], b_ids[None, :]].astype(np.float64)
        key = (a_ids.tobytes(), b_ids.tobytes())
        if key not in self._memo:
            if len(self._memo) >= MEMO_SIZE:
                self._memo.clear()
            ua, ia = np.unique(a_ids, return_inverse=True)
            ub, ib = np.unique(b_ids, return_inverse=True)
            self._memo[key] = self._distances(ua, ub)[ia.reshape(-1)][:, ib.reshape(-1)].astype(np.float64)
        return self._memo[key].copy()

    def batch(self, a_ids: np.ndarray, b_ids: np.ndarray, n_a, n_b) -> np.ndarray:
        """float64 [B, N, M] costs of each row pair ``a_ids[r, :n_a[r]]`` x ``b_ids[r, :n_b[r]]``, 0 outside
        (``a_ids`` [B, N], ``b_ids`` [B, M]: id arrays, padded with any valid ids)."""
        a_ids, b_ids = np.asarray(a_ids, dtype=np.int64), np.asarray(b_ids, dtype=np.int64)
        B, N, M = len(a_ids), a_ids.shape[1], b_ids.shape[1]
        inside = (np.arange(N)[None, :, None] < np.asarray(n_a)[:, None, None]) \
            & (np.arange(M)[None, None, :] < np.asarray(n_b)[:, None, None])
        if self.table is not None:            # one gather for the batch
            return np.where(inside, self.table[a_ids[:, :, None], b_ids[:, None, :]], 0).astype(np.float64)
        cost = np.zeros((B, N, M))
        for r, (i, j) in enumerate(zip(n_a, n_b)):
            cost[r, :i, :j] = self(a_ids[r, :i], b_ids[r, :j])
        return cost
