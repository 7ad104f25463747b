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
  the same characters (so both decode to the same text). Groups are inexact only
  where one side's coverage stops or starts elsewhere (truncation).

Every token lands in exactly one group and groups are monotone on both sides.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Sequence

import torch

Span = tuple[int, int]


@dataclass(frozen=True)
class Group:
    """Tokens ``a`` of one side and ``b`` of the other that cover the same text [start, end)."""
    a: range
    b: range
    start: int
    end: int
    exact: bool


def _as_spans(spans) -> list[Span]:
    if isinstance(spans, torch.Tensor):
        return [tuple(x) for x in spans.view(-1, 2).tolist()]
    return [(int(s), int(e)) for s, e in spans]


def _group_keys(spans: list[Span], points: list[int]) -> list[int]:
    """Group key per token: 1 + index of the interval between common points its span starts in.

    Empty tokens take the key of the token before them (leading ones: of the first
    non-empty token); a side without any non-empty token gets key 0 throughout.
    """
    keys = [0] * len(spans)
    first = next((i for i, (s, e) in enumerate(spans) if e > s), None)
    if first is None:
        return keys
    prev = bisect.bisect_right(points, spans[first][0]) + 1
    for i, (s, e) in enumerate(spans):
        if e > s:
            prev = bisect.bisect_right(points, s) + 1
        keys[i] = prev
    return keys


def _cover(spans: list[Span], idx: range) -> tuple[int, int, int]:
    """(min start, max end, chars covered) of the non-empty spans in idx."""
    lo, hi, total = None, None, 0
    for i in idx:
        s, e = spans[i]
        if e > s:
            lo = s if lo is None else min(lo, s)
            hi = e if hi is None else max(hi, e)
            total += e - s
    return (lo if lo is not None else -1), (hi if hi is not None else -1), total


def span_groups(spans_a, spans_b) -> list[Group]:
    """Groups of tokens of side a and side b that cover the same characters (see module doc)."""
    A, B = _as_spans(spans_a), _as_spans(spans_b)
    cuts_a = {p for s, e in A if e > s for p in (s, e)}
    cuts_b = {p for s, e in B if e > s for p in (s, e)}
    points = sorted(cuts_a & cuts_b)
    ka, kb = _group_keys(A, points), _group_keys(B, points)
    keys = sorted(set(ka) | set(kb))
    groups = []
    ia = ib = 0
    for k in keys:
        ja, jb = ia, ib
        while ja < len(A) and ka[ja] == k:
            ja += 1
        while jb < len(B) and kb[jb] == k:
            jb += 1
        ra, rb = range(ia, ja), range(ib, jb)
        ca, cb = _cover(A, ra), _cover(B, rb)
        exact = bool(ra) and bool(rb) and ca == cb and ca[2] == max(ca[1] - ca[0], 0)
        starts = [A[i][0] for i in ra] + [B[i][0] for i in rb]
        ends = [A[i][1] for i in ra] + [B[i][1] for i in rb]
        groups.append(Group(ra, rb, min(starts), max(ends), exact))
        ia, ib = ja, jb
    return groups


def one_to_one(groups: Sequence[Group]) -> list[Group]:
    """The exact groups with exactly one token on each side."""
    return [g for g in groups if g.exact and len(g.a) == 1 and len(g.b) == 1]


def covering_ranges(student_spans, teacher_spans) -> tuple[torch.Tensor, torch.Tensor]:
    """For each student token, the teacher tokens [lo, hi) whose spans overlap its span.

    Empty teacher tokens between overlapping ones, and right after the last one
    (later bytes of the same character), are included. A student token with an empty
    span takes the range of the student token before it; leading and trailing empty
    student tokens (specials) are unmapped: lo == hi == 0.
    """
    S, T = _as_spans(student_spans), _as_spans(teacher_spans)
    t_idx = [j for j, (s, e) in enumerate(T) if e > s]
    t_start = [T[j][0] for j in t_idx]
    t_end = [T[j][1] for j in t_idx]
    s_nonempty = [i for i, (s, e) in enumerate(S) if e > s]
    last = s_nonempty[-1] if s_nonempty else -1
    lo, hi = [0] * len(S), [0] * len(S)
    prev = (0, 0)
    for i, (s, e) in enumerate(S):
        if e > s:
            a = bisect.bisect_right(t_end, s)       # first teacher token ending after s
            b = bisect.bisect_left(t_start, e)      # first teacher token starting at/after e
            if a < b:
                l_, h_ = t_idx[a], (t_idx[b] if b < len(t_idx) else t_idx[-1] + 1)
                prev = (l_, h_)
            else:
                prev = (0, 0)
            lo[i], hi[i] = prev
        elif i < last:                               # internal: a later byte of a character
            lo[i], hi[i] = prev
    return torch.tensor(lo, dtype=torch.long), torch.tensor(hi, dtype=torch.long)


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
