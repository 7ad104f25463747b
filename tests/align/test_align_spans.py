"""Character spans: tiling, specials, clean boundaries, for toy and real tokenizer families."""
from __future__ import annotations

import pytest
from align_helpers import ALL_FAMILIES, FAST, LOSSLESS, TEXTS, byte_view, get_tokenizer
from hypothesis import given

from ctkd_bench.align.spans import encode_with_spans, raw_offsets, tile_spans


def test_tile_spans_overlap_goes_to_first_token_of_the_atom():
    # "a😀b" with a token straddling the emoji: [a + first bytes][last bytes + b]
    assert tile_spans([(0, 2), (1, 3)], None, 3) == [(0, 3), (3, 3)]
    # one character over three byte tokens, then a clean boundary
    assert tile_spans([(0, 1), (0, 1), (0, 1), (1, 2)], None, 2) == [(0, 1), (1, 1), (1, 1), (1, 2)]


def test_tile_spans_gaps_go_to_the_next_token_and_ends_are_closed():
    # WordPiece: " hello  world " -> hello (1, 6), world (8, 13)
    assert tile_spans([(1, 6), (8, 13)], None, 14) == [(0, 6), (6, 14)]


def test_tile_spans_specials_sit_between_tokens():
    assert tile_spans([(0, 0), (0, 2), (2, 4), (0, 0)], [1, 0, 0, 1], 5) == [(0, 0), (0, 2), (2, 5), (5, 5)]
    assert tile_spans([(0, 0), (0, 0)], [1, 1], 3) == [(0, 0), (0, 0)]
    assert tile_spans([], [], 0) == []


def test_tile_spans_zero_width_token_stays_empty():
    assert tile_spans([(0, 0), (0, 5)], [0, 0], 5) == [(0, 0), (0, 5)]


def check_spans(tokenizer, text: str, add_special_tokens: bool):
    ids, spans = encode_with_spans(tokenizer, text, add_special_tokens=add_special_tokens)
    _, raw, special = raw_offsets(tokenizer, text, add_special_tokens)
    assert len(ids) == len(spans)
    ends = [e for _, e in spans]
    for (s, e), (s2, _) in zip(spans, spans[1:]):
        assert 0 <= s <= e <= len(text) and e == s2            # monotone and contiguous
    real = [sp for sp, sf, r in zip(spans, special, raw) if not (sf and r[0] == r[1])]
    nonempty = [sp for sp in spans if sp[1] > sp[0]]
    if nonempty:                                               # tiles the whole text
        assert spans[0][0] == 0 and max(ends) == len(text)
        assert sum(e - s for s, e in nonempty) == len(text)
    for sp, sf in zip(spans, special):
        if sf and sp not in real:
            assert sp[0] == sp[1]
    return ids, spans


def check_clean_boundaries(tokenizer, text: str, ids, spans) -> bool:
    """Before every non-empty token, the tokens so far spell exactly the text so far."""
    view = byte_view(tokenizer, text, ids)
    if view is None:
        return False
    per, skip = view
    done = b""
    for k, (s, e) in enumerate(spans):
        if e > s:
            assert done[skip:] == text[:s].encode("utf-8"), (k, text)
        done += per[k]
    return True


@pytest.mark.parametrize("family", ALL_FAMILIES)
@FAST
@given(text=TEXTS)
def test_spans_tile_and_boundaries_are_clean(family, text):
    tok = get_tokenizer(family)
    for add in (False, True):
        ids, spans = check_spans(tok, text, add)
        lossless = check_clean_boundaries(tok, text, ids, spans)
        if family in LOSSLESS and not add and "\u2581" not in text:   # SentencePiece reads "▁" as " "
            assert lossless, (family, text)


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_known_hard_cases(family):
    tok = get_tokenizer(family)
    for text in ["", " ", "a😀b", "😀😀😀", "東京都庁", "  x  ", "e\u0301\u0301", "ﬁﬂ", "İstanbul",
                 "\x00\x01", "a\r\nb", "👨‍👩‍👧‍👦!", "<|endoftext|>x</s>[SEP]"]:
        ids, spans = check_spans(tok, text, add_special_tokens=True)
        check_clean_boundaries(tok, text, ids, spans)


def test_byte_level_straddle_is_one_atom():
    tok = get_tokenizer("gpt2")
    text = "東京都庁"            # GPT-2 merges bytes across these characters
    ids, spans = encode_with_spans(tok, text)
    assert check_clean_boundaries(tok, text, ids, spans)
    assert any(s == e for s, e in spans)          # some tokens hold no whole character


def test_metaspace_prefix_token_is_zero_width():
    tok = get_tokenizer("toy-unigram")
    ids, spans = encode_with_spans(tok, "Hello")
    toks = tok.convert_ids_to_tokens(ids)
    assert toks[0] == "▁" and spans[0] == (0, 0) and spans[1][0] == 0
