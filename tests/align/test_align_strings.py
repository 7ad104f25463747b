"""Token-string normalisation, edit distance and DTW against brute force."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest
import torch
from align_helpers import FAST, get_tokenizer
from hypothesis import given
from hypothesis import strategies as st

from ctkd_bench.align.strings import (dtw, edit_distance, normalize_token, normalized_vocab, pairwise_edit_distance,
                                      path_maps, token_dtw, tokenizer_kind)

WORDS = st.text(alphabet=st.sampled_from("abcé😀 \u0301東"), max_size=9)
ANY = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=12)


def recursive_ed(a: str, b: str) -> int:
    @lru_cache(maxsize=None)
    def d(i, j):
        if i == 0 or j == 0:
            return i + j
        return min(d(i - 1, j) + 1, d(i, j - 1) + 1, d(i - 1, j - 1) + (a[i - 1] != b[j - 1]))
    return d(len(a), len(b))


@FAST
@given(a=st.one_of(WORDS, ANY), b=st.one_of(WORDS, ANY))
def test_edit_distance_is_the_recursive_definition(a, b):
    assert edit_distance(a, b) == recursive_ed(a, b) == edit_distance(b, a)


@FAST
@given(a=st.lists(st.one_of(WORDS, ANY), max_size=8), b=st.lists(st.one_of(WORDS, ANY), max_size=8))
def test_pairwise_edit_distance_matches_scalar(a, b):
    D = pairwise_edit_distance(a, b)
    assert D.shape == (len(a), len(b))
    assert all(D[i, j] == edit_distance(x, y) for i, x in enumerate(a) for j, y in enumerate(b))


@pytest.mark.parametrize("n", [7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 130])
def test_pairwise_edit_distance_at_word_size_edges(n):
    rng = np.random.default_rng(n)
    a = ["".join(rng.choice(list("ab😀"), size=n)), "a" * n, ""]
    b = ["".join(rng.choice(list("ab😀c"), size=m)) for m in (0, 1, n - 1, n, n + 3, 70)] + ["a" * n]
    D = pairwise_edit_distance(a, b)
    assert all(D[i, j] == edit_distance(x, y) for i, x in enumerate(a) for j, y in enumerate(b))


@pytest.mark.parametrize("token,kind,expected", [
    ("Ġhello", "bytelevel", "hello"), ("hello", "bytelevel", "hello"), ("Ċ", "bytelevel", "\n"),
    ("ĠÃ©t", "bytelevel", "ét"), ("ĠĠ", "bytelevel", " "), ("ðŁĺ", "bytelevel", "\udcf0\udc9f\udc98"),
    ("▁hello", "metaspace", "hello"), ("hel", "metaspace", "hel"), ("▁▁", "metaspace", " "),
    ("<0x0A>", "metaspace", "\n"), ("<0xF0>", "metaspace", "\udcf0"), ("##ing", "wordpiece", "ing"),
    ("##", "wordpiece", "##"), ("play", "wordpiece", "play"),
    ("Ġhello", "auto", "hello"), ("▁hello", "auto", "hello"), ("##ing", "auto", "ing"),
    ("<0x41>", "auto", "A"), ("é", "auto", "é"), ("Ã©", "auto", "é"), ("plain", "auto", "plain"),
])
def test_normalize_token(token, kind, expected):
    assert normalize_token(token, kind) == expected


@pytest.mark.parametrize("family,kind", [("toy-bpe", "bytelevel"), ("toy-unigram", "metaspace"),
                                         ("toy-wordpiece", "wordpiece"), ("gpt2", "bytelevel"),
                                         ("mistral", "metaspace"), ("bert", "wordpiece"), ("qwen", "bytelevel")])
def test_tokenizer_kind_and_vocab(family, kind):
    tok = get_tokenizer(family)
    assert tokenizer_kind(tok) == kind
    vocab = normalized_vocab(tok)
    assert len(vocab) == len(tok)
    ids = tok("hello world", add_special_tokens=False)["input_ids"]
    assert "".join(vocab[i] for i in ids).replace(" ", "") == "helloworld"


def brute_dtw_cost(C: np.ndarray) -> float:
    """Minimum over all monotone paths (steps (1,0), (0,1), (1,1)) from (0,0) to (n-1,m-1)."""
    n, m = C.shape
    best = np.inf

    def walk(i, j, acc):
        nonlocal best
        acc += C[i, j]
        if (i, j) == (n - 1, m - 1):
            best = min(best, acc)
            return
        for di, dj in ((1, 0), (0, 1), (1, 1)):
            if i + di < n and j + dj < m:
                walk(i + di, j + dj, acc)
    walk(0, 0, 0.0)
    return best


def loop_dtw(C: np.ndarray):
    """The official double loop and back-trace, written out plainly."""
    n, m = C.shape
    M = np.full((n + 1, m + 1), np.inf)
    M[0, 0] = 0
    for i in range(n):
        for j in range(m):
            M[i + 1, j + 1] = C[i, j] + min(M[i, j + 1], M[i + 1, j], M[i, j])
    M = M[1:, 1:]
    i, j, path = n - 1, m - 1, []
    while i > 0 or j > 0:
        path.append((i, j))
        opts = [M[i - 1, j - 1] if i and j else np.inf, M[i - 1, j] if i else np.inf, M[i, j - 1] if j else np.inf]
        move = int(np.argmin(opts))
        i, j = (i - 1, j - 1) if move == 0 else (i - 1, j) if move == 1 else (i, j - 1)
    path.append((0, 0))
    return M[-1, -1], path[::-1]


COSTS = st.integers(1, 5).flatmap(lambda n: st.integers(1, 5).flatmap(lambda m: st.lists(
    st.sampled_from([0.0, 1.0, 2.0, 0.5, 3.0]), min_size=n * m, max_size=n * m).map(
    lambda v: np.array(v).reshape(n, m))))


@FAST
@given(C=COSTS, data=st.data())
def test_dtw_matches_brute_force_and_the_official_loop(C, data):
    n, m = C.shape
    wa = np.array(data.draw(st.lists(st.sampled_from([3.0, 4.0, 5.0]), min_size=n, max_size=n)))
    wb = np.array(data.draw(st.lists(st.sampled_from([3.0, 4.0, 5.0]), min_size=m, max_size=m)))
    for weights in ((None, None), (wa, wb)):
        W = C * (wa[:, None] if weights[0] is not None else 1) * (wb[None, :] if weights[1] is not None else 1)
        total, path = dtw(torch.tensor(C), *weights)
        assert total == pytest.approx(brute_dtw_cost(W))
        ref_total, ref_path = loop_dtw(W)
        assert total == ref_total and path == ref_path
        assert path[0] == (0, 0) and path[-1] == (n - 1, m - 1)
        assert all(0 <= i2 - i1 <= 1 and 0 <= j2 - j1 <= 1 and (i2, j2) != (i1, j1)
                   for (i1, j1), (i2, j2) in zip(path, path[1:]))
        assert total == pytest.approx(sum(W[i, j] for i, j in path))


def test_dtw_empty_and_maps():
    assert dtw(np.zeros((0, 3))) == (0.0, [])
    a_to_b, b_to_a = path_maps([(0, 0), (1, 0), (2, 1)], 3, 2)
    assert a_to_b == [[0], [0], [1]] and b_to_a == [[0, 1], [2]]


def test_token_dtw_aligns_across_families():
    total, path = token_dtw(["ĠHello", "Ġworld", "!"], ["▁Hel", "lo", "▁world", "!"])
    assert total == 2 + 3 and path == [(0, 0), (0, 1), (1, 2), (2, 3)]      # Hello~Hel, Hello~lo
    total_w, _ = token_dtw(["ĠHello", "Ġworld", "!"], ["▁Hel", "lo", "▁world", "!"],
                           weights=([1.0, 2.0, 1.0], [3.0, 1.0, 1.0, 1.0]))
    assert total_w == 2 * 3 + 3 * 1
    raw, _ = token_dtw(["ab"], ["▁ab"], normalize=None)
    assert raw == 1.0


@pytest.mark.parametrize("seed", range(3))
def test_token_dtw_big_random_matches_loop(seed):
    rng = np.random.default_rng(seed)
    vocab = ["".join(rng.choice(list("abcde"), size=rng.integers(1, 6))) for _ in range(40)]
    a, b = list(rng.choice(vocab, size=30)), list(rng.choice(vocab, size=25))
    total, path = token_dtw(a, b, normalize=None)
    C = np.array([[edit_distance(x, y) for y in b] for x in a], dtype=float)
    assert (total, path) == loop_dtw(C)


@pytest.mark.parametrize("integer", [True, False])
@pytest.mark.parametrize("shape", [(1, 1), (1, 6), (6, 1), (13, 7), (40, 55)])
def test_dtw_both_vectorisations_equal_the_loop(integer, shape):
    from ctkd_bench.align.dtw import _dtw_diagonals, _dtw_rows, dtw_matrix

    rng = np.random.default_rng(sum(shape))
    C = rng.integers(0, 6, size=shape).astype(float) if integer else rng.random(shape)
    n, m = shape
    M = np.full((n + 1, m + 1), np.inf)
    M[0, 0] = 0
    for i in range(n):
        for j in range(m):
            M[i + 1, j + 1] = C[i, j] + min(M[i, j + 1], M[i + 1, j], M[i, j])
    assert np.array_equal(dtw_matrix(C), M[1:, 1:])
    assert np.array_equal(_dtw_diagonals(C), M[1:, 1:])
    if integer:
        assert np.array_equal(_dtw_rows(C), M[1:, 1:])


def test_byte_fallback_tokens_registered_as_added_tokens_are_still_bytes():
    tok = get_tokenizer("toy-unigram")              # its trainer registers <0xNN> as special tokens
    vocab = normalized_vocab(tok)
    assert vocab[tok.convert_tokens_to_ids("<0x41>")] == "A"
    assert vocab[tok.convert_tokens_to_ids("<0xF0>")] == "\udcf0"
    assert vocab[tok.convert_tokens_to_ids("</s>")] == "</s>"
