"""Span groups, covering ranges and the batched chunk membership, against their definitions."""
from __future__ import annotations

import pytest
import torch
from align_helpers import ALL_FAMILIES, FAST, TEXTS, byte_view, get_tokenizer
from hypothesis import given
from hypothesis import strategies as st

from ctkd_bench.align.groups import Group, batch_chunk_matrices, covering_ranges, one_to_one, span_groups
from ctkd_bench.align.spans import encode_with_spans

PAIRS = [("toy-unigram", "toy-bpe"), ("toy-wordpiece", "toy-unigram"), ("mistral", "gpt2"),
         ("gpt2", "qwen"), ("bert", "deepseek"), ("cl100k", "mistral")]


def check_partition(groups: list[Group], n_a: int, n_b: int):
    """Every token in exactly one group, groups in order on both sides."""
    assert [i for g in groups for i in g.a] == list(range(n_a))
    assert [j for g in groups for j in g.b] == list(range(n_b))
    assert all(len(g.a) or len(g.b) for g in groups)
    starts = [g.start for g in groups]
    assert starts == sorted(starts)


def check_exact_text(groups, spans_a, spans_b):
    for g in groups:
        if g.exact:
            assert len(g.a) and len(g.b)
            cover_a = [spans_a[i] for i in g.a if spans_a[i][1] > spans_a[i][0]]
            cover_b = [spans_b[j] for j in g.b if spans_b[j][1] > spans_b[j][0]]
            for cover in (cover_a, cover_b):
                if cover:
                    assert cover[0][0] == g.start and cover[-1][1] == g.end
                    assert sum(e - s for s, e in cover) == g.end - g.start


def group_bytes(per, skip, rng) -> bytes:
    data = b"".join(per[k] for k in rng)
    return data[skip:] if rng and rng.start == 0 else data


@pytest.mark.parametrize("fa,fb", PAIRS)
@FAST
@given(text=TEXTS)
def test_groups_partition_and_decode_to_the_same_text(fa, fb, text):
    ta, tb = get_tokenizer(fa), get_tokenizer(fb)
    ids_a, spans_a = encode_with_spans(ta, text, add_special_tokens=True)
    ids_b, spans_b = encode_with_spans(tb, text, add_special_tokens=True)
    groups = span_groups(spans_a, spans_b)
    check_partition(groups, len(ids_a), len(ids_b))
    check_exact_text(groups, spans_a, spans_b)
    tiled = all(any(e > s for s, e in sp) for sp in (spans_a, spans_b))
    if tiled:                               # full encodings (no truncation): every group exact
        assert all(g.exact for g in groups)
    va, vb = byte_view(ta, text, ids_a), byte_view(tb, text, ids_b)
    for g in groups:
        piece = text[g.start:g.end].encode("utf-8")
        if va is not None:
            assert group_bytes(*va, g.a) == piece
        if vb is not None:
            assert group_bytes(*vb, g.b) == piece


def test_groups_by_hand():
    # a: "ab" "c" | b: "a" "bc"  ->  one 2:2 group; then "d" 1:1; trailing specials
    a = [(0, 0), (0, 2), (2, 3), (3, 4), (4, 4)]
    b = [(0, 1), (1, 3), (3, 4), (4, 4)]
    groups = span_groups(a, b)
    assert [(g.a, g.b, g.start, g.end, g.exact) for g in groups] == [
        (range(0, 3), range(0, 2), 0, 3, True),           # BOS joins the first group
        (range(3, 5), range(2, 4), 3, 4, True),           # EOS joins the last group
    ]
    assert one_to_one(groups) == []
    groups = span_groups(a[1:4], b[:3])
    assert [(g.a, g.b) for g in one_to_one(groups)] == [(range(2, 3), range(2, 3))]


def test_groups_internal_empty_tokens_join_the_previous_token():
    a = [(0, 1), (1, 1), (1, 2)]          # a character split over two tokens, then "x"
    b = [(0, 2)]
    assert [(g.a, g.b) for g in span_groups(a, b)] == [(range(0, 3), range(0, 1))]
    b = [(0, 1), (1, 2)]
    assert [(g.a, g.b) for g in span_groups(a, b)] == [(range(0, 2), range(0, 1)), (range(2, 3), range(1, 2))]


def test_truncated_sides_give_inexact_head_and_tail():
    a = [(2, 4), (4, 6), (6, 9)]          # prompt truncated from the left differently
    b = [(0, 3), (3, 4), (4, 6), (6, 7)]
    groups = span_groups(a, b)
    check_partition(groups, 3, 4)
    assert [(g.a, g.b, g.exact) for g in groups] == [
        (range(0, 1), range(0, 2), False), (range(1, 2), range(2, 3), True), (range(2, 3), range(3, 4), False)]


def brute_covering(S, T):
    """Definition by brute force: overlapping non-empty teacher tokens, plus the rules for empties."""
    nonempty_s = [i for i, (s, e) in enumerate(S) if e > s]
    nonempty_t = [j for j, (s, e) in enumerate(T) if e > s]
    out = []
    for i, (s, e) in enumerate(S):
        if e > s:
            hit = [j for j in nonempty_t if T[j][0] < e and T[j][1] > s]
            if hit:
                later = [j for j in nonempty_t if j > hit[-1]]
                out.append((hit[0], later[0] if later else hit[-1] + 1))
            else:
                out.append((0, 0))
        elif nonempty_s and nonempty_s[0] < i < nonempty_s[-1]:
            out.append(out[-1])
        else:
            out.append((0, 0))
    return out


@pytest.mark.parametrize("fa,fb", PAIRS[:4])
@FAST
@given(text=TEXTS, cut=st.integers(0, 6))
def test_covering_ranges_match_brute_force(fa, fb, text, cut):
    _, S = encode_with_spans(get_tokenizer(fa), text, add_special_tokens=True)
    _, T = encode_with_spans(get_tokenizer(fb), text, add_special_tokens=True)
    T = T[cut:] if cut < len(T) else T          # also a teacher side that lost its first tokens
    lo, hi = covering_ranges(S, T)
    assert list(zip(lo.tolist(), hi.tolist())) == brute_covering(S, T)
    for i, (s, e) in enumerate(S):          # the range covers the student token's characters
        if e > s and hi[i] > lo[i] and T and T[0][0] <= s:
            covered = [T[j] for j in range(lo[i], hi[i]) if T[j][1] > T[j][0]]
            assert covered[0][0] <= s and covered[-1][1] >= min(e, max(t[1] for t in T))


def test_covering_ranges_by_hand():
    S = [(0, 0), (0, 3), (3, 3), (3, 5), (5, 5)]          # BOS, "abc", byte token, "de", EOS
    T = [(0, 2), (2, 2), (2, 4), (4, 5), (5, 5)]
    lo, hi = covering_ranges(S, T)
    assert lo.tolist() == [0, 0, 0, 2, 0] and hi.tolist() == [0, 3, 3, 4, 0]
    lo, hi = covering_ranges(torch.tensor(S), torch.tensor(T))
    assert hi.tolist() == [0, 3, 3, 4, 0]


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_batch_chunk_matrices_match_span_groups(padding_side):
    from ctkd_bench.data.collate import collate_pair

    ts, tt = get_tokenizer("toy-unigram"), get_tokenizer("toy-bpe")
    examples = [{"id": "a", "prompt": "Reverse: the cat\nAnswer:", "response": " cat the"},
                {"id": "b", "prompt": "", "response": "東京 😀 café"},
                {"id": "c", "prompt": "Q: zebra quokka yak xylophone wombat", "response": " x"}]
    batch = collate_pair(examples, "instruct", ts, tt, max_len=12, padding_side=padding_side)
    ca = batch_chunk_matrices(batch.student, batch.teacher)
    A, Bm = ca.student_matrix(), ca.teacher_matrix()
    assert torch.equal(A.sum(1), batch.student.attention_mask.float())   # each real token in one chunk
    assert torch.equal(Bm.sum(1), batch.teacher.attention_mask.float())
    for b in range(len(examples)):
        ms, mt = batch.student.attention_mask[b].bool(), batch.teacher.attention_mask[b].bool()
        groups = span_groups(batch.student.offsets[b][ms], batch.teacher.offsets[b][mt])
        assert int(ca.n_chunks[b]) == len(groups)
        assert ca.student_chunk[b][ms].tolist() == [c for c, g in enumerate(groups) for _ in g.a]
        assert ca.teacher_chunk[b][mt].tolist() == [c for c, g in enumerate(groups) for _ in g.b]
        assert (ca.student_chunk[b][~ms] == -1).all() and (ca.teacher_chunk[b][~mt] == -1).all()
        assert ca.valid[b, :len(groups)].tolist() == [g.exact for g in groups]
        assert not ca.valid[b, len(groups):].any()
    if padding_side == "right":             # example c lost different prompt prefixes on the two sides
        assert batch.student.offsets[2, 1, 0] != batch.teacher.offsets[2, 1, 0]
        assert not ca.valid[2, :int(ca.n_chunks[2])].all() and ca.valid[2, 1:int(ca.n_chunks[2])].any()


@pytest.mark.parametrize("family", ALL_FAMILIES[:3])
def test_identical_tokenizers_give_one_to_one_everywhere(family):
    tok = get_tokenizer(family)
    _, spans = encode_with_spans(tok, "the cat sat on the mat, 東京 😀", add_special_tokens=True)
    groups = span_groups(spans, spans)
    assert all(g.a == g.b for g in groups)
    assert len(groups) == sum(1 for s, e in spans if e > s)
    _, spans = encode_with_spans(tok, "the cat sat on the mat")
    assert len(one_to_one(span_groups(spans, spans))) == len(spans)


def reference_groups(A, B):
    """The grouping rules written out token by token (no vectorisation)."""
    A, B = [tuple(x) for x in A], [tuple(x) for x in B]
    points = sorted({p for s, e in A if e > s for p in (s, e)} & {p for s, e in B if e > s for p in (s, e)})

    def keys(S):
        out, prev = [], None
        first = next((s for s, e in S if e > s), None)
        for s, e in S:
            if e > s or first is None:          # a side without text: each token by its position
                prev = max(sum(p <= s for p in points) + 1, prev or 0)
            out.append(prev if prev is not None else sum(p <= first for p in points) + 1)
        return out

    ka, kb = keys(A), keys(B)
    out = []
    for k in sorted(set(ka) | set(kb)):
        ra = [i for i, x in enumerate(ka) if x == k]
        rb = [j for j, x in enumerate(kb) if x == k]
        ca = [A[i] for i in ra if A[i][1] > A[i][0]]
        cb = [B[j] for j in rb if B[j][1] > B[j][0]]
        chars_a = sorted(c for s, e in ca for c in range(s, e))
        chars_b = sorted(c for s, e in cb for c in range(s, e))
        contiguous = chars_a == list(range(chars_a[0], chars_a[-1] + 1)) if chars_a else True
        exact = bool(ra) and bool(rb) and chars_a == chars_b and contiguous
        cover = ca + cb
        first = (A[ra[0]] if ra else B[rb[0]])[0]
        start = min(s for s, _ in cover) if cover else first
        end = max(e for _, e in cover) if cover else first
        before_a, before_b = sum(x < k for x in ka), sum(x < k for x in kb)
        out.append((range(before_a, before_a + len(ra)), range(before_b, before_b + len(rb)), start, end, exact))
    return out


SPANLISTS = st.lists(st.integers(0, 3), max_size=8).map(      # widths; 0 = an empty span
    lambda w: [(sum(w[:i]), sum(w[:i + 1])) for i in range(len(w))])


@FAST
@given(A=SPANLISTS, B=SPANLISTS, shift=st.integers(0, 2))
def test_span_groups_match_the_token_by_token_rules(A, B, shift):
    B = [(s + shift, e + shift) for s, e in B]           # also sides that start at different places
    got = [(g.a, g.b, g.start, g.end, g.exact) for g in span_groups(A, B)]
    assert got == reference_groups(A, B)
    check_partition(span_groups(A, B), len(A), len(B))
