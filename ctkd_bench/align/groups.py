"""Many-to-many token groups at coinciding character boundaries (ALM chunks, VocAgnoLM ranges).

Input spans follow `spans.encode_with_spans`: the non-empty spans of a side are
monotone and (on a full, untruncated encoding) tile the text; a token with an
empty span belongs to the token before it (a later byte of the same character,
or a special token). Rules:

- the *cut points* of a side are the starts and ends of its non-empty spans; a
  group boundary is a cut point of both sides;
- a non-empty token joins the group of the interval its span starts in; an empty
  token joins the group of the previous token of its side (a later byte of the
  same character, or EOS/SEP), and empty tokens before the first non-empty one
  (BOS/CLS, a prepended ``▁``) join the first group. Spans alone cannot tell a
  trailing special token from the last bytes of the final character, so neither
  gets a group of its own;
- a group is ``exact`` when both sides hold at least one token and cover exactly
  the same characters (so both decode to the same text); ``start``/``end`` are the
  characters covered by its non-empty spans (a group of empty tokens only: the
  empty span where its first token sits). Groups are inexact only where one
  side's coverage stops or starts elsewhere (truncation), or where one side has
  no non-empty token at all (e.g. WordPiece on whitespace).

Every token lands in exactly one group and groups are monotone on both sides.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Sequence

import numpy as np
import torch

Span = tuple[int, int]


class Group(NamedTuple):
    """Tokens ``a`` of one side and ``b`` of the other that cover the same text [start, end)."""
    a: range
    b: range
    start: int
    end: int
    exact: bool


def _as_array(spans) -> np.ndarray:
    if isinstance(spans, torch.Tensor):
        return spans.detach().cpu().reshape(-1, 2).numpy().astype(np.int64)
    return np.asarray(spans, dtype=np.int64).reshape(-1, 2)


def _as_spans(spans) -> list[Span]:
    return [(int(s), int(e)) for s, e in _as_array(spans).tolist()]


def _group_keys(spans: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Group key per token: 1 + index of the interval between common points its span starts in.

    Empty tokens take the key of the token before them (leading ones: of the first
    non-empty token); on a side without any non-empty token, each token is placed by
    its own position.
    """
    nonempty = spans[:, 1] > spans[:, 0]
    keys = np.searchsorted(points, spans[:, 0], side="right") + 1
    if not nonempty.any():
        return np.maximum.accumulate(keys) if len(keys) else keys
    idx = np.where(nonempty, np.arange(len(spans)), -1)
    idx = np.maximum.accumulate(idx)                          # last non-empty token so far
    idx[idx < 0] = int(np.argmax(nonempty))                   # leading empties: the first one
    return keys[idx]


def _coverage(spans: np.ndarray, keys: np.ndarray, groups: np.ndarray):
    """Per group key: (first start, last end, characters covered) of the non-empty spans; -1 if none."""
    nonempty = spans[:, 1] > spans[:, 0]
    k = np.searchsorted(groups, keys[nonempty])
    lo = np.full(len(groups), -1, dtype=np.int64)
    hi = np.full(len(groups), -1, dtype=np.int64)
    total = np.zeros(len(groups), dtype=np.int64)
    lo[k[::-1]] = spans[nonempty, 0][::-1]                    # first occurrence wins
    hi[k] = spans[nonempty, 1]                                # last occurrence wins
    np.add.at(total, k, spans[nonempty, 1] - spans[nonempty, 0])
    return lo, hi, total


def span_groups(spans_a, spans_b) -> list[Group]:
    """Groups of tokens of side a and side b that cover the same characters (see module doc)."""
    A, B = _as_array(spans_a), _as_array(spans_b)
    ne_a, ne_b = A[:, 1] > A[:, 0], B[:, 1] > B[:, 0]
    points = np.intersect1d(A[ne_a].ravel(), B[ne_b].ravel())
    ka, kb = _group_keys(A, points), _group_keys(B, points)
    keys = np.union1d(ka, kb)
    a_lo, a_hi = np.searchsorted(ka, keys, "left"), np.searchsorted(ka, keys, "right")
    b_lo, b_hi = np.searchsorted(kb, keys, "left"), np.searchsorted(kb, keys, "right")
    ca, cb = _coverage(A, ka, keys), _coverage(B, kb, keys)
    exact = ((a_hi > a_lo) & (b_hi > b_lo) & (ca[0] == cb[0]) & (ca[1] == cb[1]) & (ca[2] == cb[2])
             & (ca[2] == np.maximum(ca[1] - ca[0], 0)))
    big = np.iinfo(np.int64).max
    lo = np.minimum(np.where(ca[0] >= 0, ca[0], big), np.where(cb[0] >= 0, cb[0], big))
    hi = np.maximum(ca[1], cb[1])
    if (lo == big).any():                                     # groups of empty tokens only
        first = np.where(a_hi > a_lo, A[np.minimum(a_lo, max(len(A) - 1, 0)), 0] if len(A) else 0,
                         B[np.minimum(b_lo, max(len(B) - 1, 0)), 0] if len(B) else 0)
        lo = np.where(lo == big, first, lo)
        hi = np.where(hi < 0, first, hi)
    start, end = lo.tolist(), hi.tolist()
    return [Group(range(p, q), range(r, s), st, en, ex) for p, q, r, s, st, en, ex in zip(
        a_lo.tolist(), a_hi.tolist(), b_lo.tolist(), b_hi.tolist(), start, end, exact.tolist())]


def one_to_one(groups: Sequence[Group]) -> list[Group]:
    """The exact groups with exactly one token on each side."""
    return [g for g in groups if g.exact and len(g.a) == 1 and len(g.b) == 1]


def covering_ranges(student_spans, teacher_spans) -> tuple[torch.Tensor, torch.Tensor]:
    """For each student token, the teacher tokens [lo, hi) whose spans overlap its span.

    Empty teacher tokens between overlapping ones, and right after the last one
    (later bytes of the same character), are included. A student token with an empty
    span takes the range of the student token before it; leading and trailing empty
    student tokens (specials, padding) are unmapped: lo == hi == 0, as is a student
    token that no teacher token overlaps.
    """
    S, T = _as_array(student_spans), _as_array(teacher_spans)
    t_idx = np.nonzero(T[:, 1] > T[:, 0])[0]
    lo = np.zeros(len(S), dtype=np.int64)
    hi = np.zeros(len(S), dtype=np.int64)
    s_ne = S[:, 1] > S[:, 0]
    if len(t_idx) and s_ne.any():
        t_start, t_end = T[t_idx, 0], T[t_idx, 1]
        first = np.searchsorted(t_end, S[:, 0], side="right")    # first teacher token ending after s
        stop = np.searchsorted(t_start, S[:, 1], side="left")    # first teacher token starting at/after e
        hit = s_ne & (first < stop)
        nxt = np.append(t_idx, t_idx[-1] + 1)                    # index after the last overlapping one
        lo = np.where(hit, t_idx[np.minimum(first, len(t_idx) - 1)], 0)
        hi = np.where(hit, nxt[np.minimum(stop, len(t_idx))], 0)
        last = np.nonzero(s_ne)[0][-1]
        src = np.where(s_ne, np.arange(len(S)), -1)
        src = np.maximum.accumulate(src)                         # internal empties: previous token
        inner = ~s_ne & (src >= 0) & (np.arange(len(S)) < last)
        lo = np.where(inner, lo[np.maximum(src, 0)], lo)
        hi = np.where(inner, hi[np.maximum(src, 0)], hi)
    return torch.from_numpy(lo.astype(np.int64)), torch.from_numpy(hi.astype(np.int64))


@dataclass
class ChunkAlignment:
    """Per-row chunk membership of a PairBatch's student and teacher tokens.

    - ``student_chunk`` [B, L_s] / ``teacher_chunk`` [B, L_t] long: index of the chunk
      (= `span_groups` group, in text order) each token belongs to; -1 on padding.
      Every real token is in exactly one chunk.
    - ``valid`` [B, C] bool: chunk c of row b exists and is exact (both sides hold
      tokens and cover the same text). C = max number of chunks over rows.
    - ``n_chunks`` [B] long; ``start`` / ``end`` [B, C] long: the chunk's characters.
    """
    student_chunk: torch.Tensor
    teacher_chunk: torch.Tensor
    valid: torch.Tensor
    n_chunks: torch.Tensor
    start: torch.Tensor
    end: torch.Tensor

    @staticmethod
    def _matrix(chunk: torch.Tensor, C: int, dtype) -> torch.Tensor:
        m = torch.zeros(chunk.shape[0], C + 1, chunk.shape[1], dtype=dtype, device=chunk.device)
        idx = torch.where(chunk >= 0, chunk, C)
        m.scatter_(1, idx.unsqueeze(1), 1)
        return m[:, :C]

    def student_matrix(self, dtype=torch.float32) -> torch.Tensor:
        """[B, C, L_s] 0/1: entry (b, c, t) = 1 iff student token t of row b is in chunk c."""
        return self._matrix(self.student_chunk, self.valid.shape[1], dtype)

    def teacher_matrix(self, dtype=torch.float32) -> torch.Tensor:
        """[B, C, L_t] 0/1, as `student_matrix` for the teacher."""
        return self._matrix(self.teacher_chunk, self.valid.shape[1], dtype)


def _row_spans(side, b: int) -> tuple[torch.Tensor, list[Span]]:
    pos = side.attention_mask[b].nonzero().view(-1)
    return pos, _as_spans(side.offsets[b, pos].cpu())


def batch_chunk_matrices(side_s, side_t) -> ChunkAlignment:
    """Chunk membership of every real token of the student and teacher `Side`s (ALM)."""
    B = side_s.input_ids.shape[0]
    rows = []
    for b in range(B):
        pos_s, spans_s = _row_spans(side_s, b)
        pos_t, spans_t = _row_spans(side_t, b)
        rows.append((pos_s, pos_t, span_groups(spans_s, spans_t)))
    C = max((len(g) for *_, g in rows), default=0)
    student_chunk = torch.full(side_s.input_ids.shape, -1, dtype=torch.long)
    teacher_chunk = torch.full(side_t.input_ids.shape, -1, dtype=torch.long)
    valid = torch.zeros(B, C, dtype=torch.bool)
    start = torch.zeros(B, C, dtype=torch.long)
    end = torch.zeros(B, C, dtype=torch.long)
    for b, (pos_s, pos_t, groups) in enumerate(rows):
        for c, g in enumerate(groups):
            student_chunk[b, pos_s[g.a.start:g.a.stop]] = c
            teacher_chunk[b, pos_t[g.b.start:g.b.stop]] = c
            valid[b, c], start[b, c], end[b, c] = g.exact, g.start, g.end
    n_chunks = torch.tensor([len(g) for *_, g in rows], dtype=torch.long)
    device = side_s.input_ids.device
    return ChunkAlignment(student_chunk.to(device), teacher_chunk.to(device), valid.to(device),
                          n_chunks.to(device), start.to(device), end.to(device))
