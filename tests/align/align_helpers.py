"""Shared pieces of the alignment tests: tokenizers per family, text strategies, byte views."""
from __future__ import annotations

import os
import tempfile
from functools import lru_cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from ctkd_bench.align.realtok import FAMILIES as REAL_FAMILIES
from ctkd_bench.align.realtok import TokenizerUnavailable, real_tokenizer
from ctkd_bench.align.vocab import special_ids, token_bytes, tokenizer_kind

TOY_FAMILIES = ("toy-bpe", "toy-unigram", "toy-wordpiece")
ALL_FAMILIES = TOY_FAMILIES + REAL_FAMILIES
LOSSLESS = ("toy-bpe", "gpt2", "mistral", "cl100k", "deepseek", "qwen")   # decode(encode(x)) == x

# CTKD_ALIGN_EXAMPLES=500 for a deeper local run; CI keeps the suite fast.
FAST = settings(max_examples=int(os.environ.get("CTKD_ALIGN_EXAMPLES", "25")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

PIECES = ["Hello", " world", "  ", "   ", "\n", "\n\n", "\t", "\r\n", "😀", "👨‍👩‍👧", "🇫🇷", "東京", "的",
          "café", "e\u0301", "\u0301", "İ", "ﬁ", "ß", "Ǆ", "𝔘", "\x00", "\x1b", "\x7f", "\u200b",
          "\u00a0", "\u2028", "▁", "Ġ", "##", "<s>", "</s>", "<|endoftext|>", "[CLS]", "x", "1234",
          "ab", "'s", "¡", "Ã©", "\ufffd", "가", "ทย", "\U0010fffd"]

TEXTS = st.one_of(
    st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=24),
    st.lists(st.sampled_from(PIECES), max_size=10).map("".join),
)

_CORPUS = [
    "the cat sat on the mat", "café naïve über 東京 😀", "Reverse: one two three\nAnswer: three two one",
    "".join(chr(c) for c in range(33, 127)), "Ünïcödé ‰ € — “quotes” ß ﬁ", "  spaces\tand\ttabs\n\n",
] * 20


@lru_cache(maxsize=None)
def _toy(family: str):
    from ctkd_bench.models.tokenizers import train_tokenizer

    sizes = {"bpe": 400, "unigram": 350, "wordpiece": 200}
    root = Path(tempfile.mkdtemp(prefix="ctkd-align-toy-"))
    return train_tokenizer(family, _CORPUS, sizes[family], root / family)


def get_tokenizer(family: str):
    """Tokenizer of a family; pytest.skip when its pip package is not installed."""
    if family.startswith("toy-"):
        return _toy(family[4:])
    try:
        return real_tokenizer(family)
    except TokenizerUnavailable as err:
        pytest.skip(str(err))


def ids_bytes(tokenizer, ids: list[int]) -> list[bytes] | None:
    """Bytes each token contributes to the text (specials/added tokens literally); None if unknown."""
    kind = tokenizer_kind(tokenizer)
    specials = special_ids(tokenizer)
    out = []
    for tid, tok in zip(ids, tokenizer.convert_ids_to_tokens(ids)):
        data = tok.encode("utf-8") if tid in specials else token_bytes(tok, kind)
        if data is None:
            return None
        out.append(data)
    return out


def byte_view(tokenizer, text: str, ids: list[int]) -> tuple[list[bytes], int] | None:
    """(per-token bytes, number of prepended bytes) when the tokens spell the text exactly, else None.

    SentencePiece-style tokenizers prepend one space (the first ``▁``) that is not in the text.
    """
    per = ids_bytes(tokenizer, ids)
    if per is None:
        return None
    joined, target = b"".join(per), text.encode("utf-8")
    if joined == target:
        return per, 0
    if joined == b" " + target:
        return per, 1
    return None
