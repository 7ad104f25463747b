"""Pair diagnostics are JSON-serialisable and take their extreme values where they must."""
from __future__ import annotations

import json

import pytest
from align_helpers import get_tokenizer

from ctkd_bench.align.diagnostics import pair_diagnostics
from ctkd_bench.align.realtok import FAMILIES, FAMILY_PACKAGES, TokenizerUnavailable, available_families, real_tokenizer

TEXTS = ["the cat sat on the mat", "Reverse: one two\nAnswer: two one", "café 東京 😀", ""]


def test_identical_tokenizers_are_fully_aligned():
    tok = get_tokenizer("toy-bpe")
    d = pair_diagnostics(tok, tok, TEXTS[:2] + [""])      # (a character split over byte tokens is one group)
    json.dumps(d)
    assert d["vocab_overlap"] == 1.0 and d["one_to_one_student"] == 1.0 and d["one_to_one_teacher"] == 1.0
    assert d["mean_group_student"] == d["mean_group_teacher"] == 1.0
    assert d["n_texts"] == 3 and d["student_kind"] == "bytelevel"


def test_different_families_are_partially_aligned():
    d = pair_diagnostics(get_tokenizer("toy-unigram"), get_tokenizer("toy-wordpiece"), TEXTS)
    assert json.loads(json.dumps(d)) == d
    assert 0 < d["vocab_overlap"] < 1 and 0 < d["one_to_one_student"] < 1
    assert d["mean_group_student"] >= 1 and d["n_tokens_student"] == pytest.approx(
        d["mean_group_student"] * d["n_groups"])


def test_real_pair_diagnostics():
    d = pair_diagnostics(get_tokenizer("mistral"), get_tokenizer("gpt2"), TEXTS)
    assert 0.3 < d["vocab_overlap_student"] < 1 and d["student_vocab"] == 32000 and d["teacher_vocab"] == 50257


@pytest.mark.parametrize("family,size", [("gpt2", 50257), ("mistral", 32000), ("bert", 30522),
                                         ("cl100k", 100261), ("deepseek", 129280), ("qwen", 151646)])
def test_real_tokenizers_load_with_full_vocabularies(family, size):
    tok = get_tokenizer(family)
    assert len(tok) == size and family in available_families()
    text = "Hello world, 東京 😀!"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids).replace(" ", "") == (text.lower() if family == "bert" else text).replace(" ", "") \
        or family == "bert"


def test_missing_family_is_a_clear_error(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(TokenizerUnavailable, match=FAMILY_PACKAGES["qwen"]):
        real_tokenizer.__wrapped__("qwen")             # bypass the per-process cache
    with pytest.raises(ValueError):
        real_tokenizer("nope")
    assert set(FAMILIES) == set(FAMILY_PACKAGES)
