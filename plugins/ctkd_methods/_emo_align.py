"""EMO's per-batch index tensors: the OTIS mass source and the IRA rows, vectorised over the batch.

Everything that depends only on a sentence's tokens (MinED maps, first positions, stop-word
exclusions) is computed once per sentence (`row_plan`, cached); the per-step part that depends on the
teacher's attention (the top-m ranking of `_emo_tokens.top_reciprocal_map` and the row lists of
`_emo_tokens.ira_rows`) runs as tensor ops over the whole batch. Same result as those per-example
functions (checked by the tests).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from . import _emo_tokens as tok
from ._emo_loss import IraIndex


@dataclass(frozen=True)
class RowPlan:
    """One sentence's importance-independent alignment, indices over its real tokens (int64 / bool)."""
    source: np.ndarray       # [n_s]: teacher token whose OTIS mass each student token takes (-1: none)
    key: np.ndarray          # [n_t]: the reciprocal-map entry of each teacher token (-1: none)
    excluded: np.ndarray     # [n_t] bool: left out of the attention ranking (stop word, digits)
    t_first: np.ndarray      # [U]: first teacher position of each map entry
    s_first: np.ndarray      # [U]: first student position of the entry's student token
    k: int                   # top-m size: len(map) // 3


def row_plan(reciprocal: dict[str, str], source: list[int], t_tokens: list[str], s_tokens: list[str],
             excluded: list[bool]) -> RowPlan:
    keys = list(reciprocal)
    key_id = {t: u for u, t in enumerate(keys)}
    t_first = tok.first_positions(t_tokens, set(keys))
    s_first = tok.first_positions(s_tokens, set(reciprocal.values()))
    return RowPlan(source=np.array(source, dtype=np.int64).reshape(len(s_tokens)),
                   key=np.array([key_id.get(t, -1) for t in t_tokens], dtype=np.int64).reshape(len(t_tokens)),
                   excluded=np.array(excluded, dtype=bool).reshape(len(t_tokens)),
                   t_first=np.array([t_first[t] for t in keys], dtype=np.int64).reshape(len(keys)),
                   s_first=np.array([s_first[reciprocal[t]] for t in keys], dtype=np.int64).reshape(len(keys)),
                   k=len(reciprocal) // 3)


def _scatter_rows(values: list[np.ndarray], real: np.ndarray, fill, dtype) -> np.ndarray:
    """Per-row values over the real tokens -> padded [B, L] (real tokens in order, any padding side)."""
    out = np.full(real.shape, fill, dtype=dtype)
    if values:
        out[real] = np.concatenate(values)
    return out


def _padded(values: list[np.ndarray]) -> np.ndarray:
    width = max((len(v) for v in values), default=0)
    out = np.zeros((len(values), width), dtype=np.int64)
    for b, v in enumerate(values):
        out[b, :len(v)] = v
    return out


def batch_alignment(plans: list[RowPlan], real_s: torch.Tensor, real_t: torch.Tensor, received: torch.Tensor,
                    pair_by_mapping: bool = False) -> tuple[IraIndex, torch.Tensor]:
    """(IRA rows, OTIS mass source [B, S]) for a batch, positions in the padded sequences.

    plans[b]: `RowPlan` of row b; real_s [B, S] / real_t [B, T] bool; received [B, T]: attention each
    teacher token receives (the ranking importance). Top-m: the teacher tokens ranked by importance
    (ties to the earlier position, excluded tokens unranked); a map entry is kept when one of its
    teacher tokens is among the first k. Rows: first positions of the kept entries on each side, each
    side sorted by position (official pairing) or paired through the map, ordered by teacher position.
    Whole-batch array ops (numpy: these index arrays are tiny, where torch's per-op cost dominates).
    """
    device = received.device
    real_s, real_t = real_s.cpu().numpy(), real_t.cpu().numpy()
    importance = received.detach().float().cpu().numpy()
    B, T = real_t.shape
    off_s, off_t = real_s.argmax(1), real_t.argmax(1)          # first real position per row
    src = _scatter_rows([p.source for p in plans], real_s, -1, np.int64)
    source = np.where(src >= 0, src + off_t[:, None], -1)

    key = _scatter_rows([p.key for p in plans], real_t, -1, np.int64)
    excluded = _scatter_rows([p.excluded for p in plans], real_t, True, bool)
    order = np.argsort(np.where(excluded, np.inf, -importance), axis=1, kind="stable")
    batch_rows = np.arange(B)[:, None]
    rank = np.empty_like(order)
    rank[batch_rows, order] = np.arange(T)
    k = np.array([p.k for p in plans], dtype=np.int64).reshape(B, 1)
    in_top = (rank < k) & ~excluded & (key >= 0)
    U = max((len(p.t_first) for p in plans), default=0)
    kept = np.zeros((B, U + 1), dtype=bool)
    kept[batch_rows, np.where(in_top, key, U)] = True
    kept = kept[:, :U]

    far = real_s.shape[1] + T + 1           # sorts after every real position
    t_pos = np.where(kept, _padded([p.t_first for p in plans]) + off_t[:, None], far)
    s_pos = np.where(kept, _padded([p.s_first for p in plans]) + off_s[:, None], far)
    if pair_by_mapping:
        by_teacher = np.argsort(t_pos, axis=1, kind="stable")
        t_pos, s_pos = np.take_along_axis(t_pos, by_teacher, 1), np.take_along_axis(s_pos, by_teacher, 1)
    else:
        t_pos, s_pos = np.sort(t_pos, axis=1), np.sort(s_pos, axis=1)
    counts = kept.sum(1)
    m = int(counts.max()) if B and U else 0
    real = np.arange(m)[None, :] < counts[:, None]
    rows = IraIndex(*(torch.from_numpy(np.ascontiguousarray(x)).to(device) for x in
                      (np.where(real, t_pos[:, :m], 0), np.where(real, s_pos[:, :m], 0), real)))
    return rows, torch.from_numpy(source).to(device)
