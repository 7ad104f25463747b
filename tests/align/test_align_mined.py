"""MinED vocabulary maps equal brute force; the disk cache is keyed by both tokenizers."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from align_helpers import FAST, get_tokenizer
from hypothesis import given
from hypothesis import strategies as st

from ctkd_bench.align.editdist import edit_distance, pairwise_edit_distance
from ctkd_bench.align.mined import mined_map_strings, tokenizer_hash
from ctkd_bench.align.strings import mined_vocab_map, normalized_vocab

TOKENS = st.text(alphabet=st.sampled_from("abcdeé😀 \udcf0東"), max_size=7)


def brute_map(src: list[str], tgt: list[str]) -> list[int]:
    return [min(range(len(tgt)), key=lambda j: (edit_distance(s, tgt[j]), j)) for s in src]


@FAST
@given(src=st.lists(TOKENS, max_size=25), tgt=st.lists(TOKENS, min_size=1, max_size=25))
def test_mined_map_matches_brute_force(src, tgt):
    assert mined_map_strings(src, tgt).tolist() == brute_map(src, tgt)


def test_mined_map_long_and_empty_strings():
    src = ["", "a" * 70, "ab" * 40, "x" * 64, "y" * 65, "q"]
    tgt = ["b" * 69, "a" * 66, "", "xy" * 32, "zz", "y" * 3]
    assert mined_map_strings(src, tgt).tolist() == brute_map(src, tgt)


def test_mined_map_ties_go_to_the_lowest_id_and_exact_wins():
    assert mined_map_strings(["ab", "abc", "zz"], ["xb", "ax", "abc", "ab", "ab"]).tolist() == [3, 2, 0]


@pytest.mark.parametrize("src_family,tgt_family", [("gpt2", "mistral"), ("mistral", "bert"), ("qwen", "gpt2")])
def test_mined_map_on_real_vocabulary_slices(src_family, tgt_family):
    src, tgt = normalized_vocab(get_tokenizer(src_family)), normalized_vocab(get_tokenizer(tgt_family))
    rng = np.random.default_rng(0)
    s = [src[i] for i in rng.choice(len(src), 400, replace=False)]
    t = [tgt[i] for i in rng.choice(len(tgt), 3000, replace=False)] + s[:10]
    # brute force over the full distance matrix (pairwise_edit_distance is itself checked
    # against the scalar dynamic program in test_align_strings); argmin keeps the first = lowest id
    assert mined_map_strings(s, t).tolist() == pairwise_edit_distance(s, t).argmin(axis=1).tolist()


def test_mined_vocab_map_on_toy_tokenizers_and_cache(tmp_path):
    src, tgt = get_tokenizer("toy-unigram"), get_tokenizer("toy-wordpiece")
    first = mined_vocab_map(src, tgt, cache_dir=tmp_path)
    assert first.dtype == torch.long and first.shape == (len(src),)
    assert first.tolist() == brute_map(normalized_vocab(src), normalized_vocab(tgt))
    files = list(tmp_path.glob("mined-*.npy"))
    assert len(files) == 1 and tokenizer_hash(src) in files[0].name and tokenizer_hash(tgt) in files[0].name
    np.save(files[0], np.zeros(len(src), dtype=np.int64))      # the cached file is what gets read
    assert mined_vocab_map(src, tgt, cache_dir=tmp_path).sum() == 0
    back = mined_vocab_map(tgt, src, cache_dir=tmp_path)
    assert back.shape == (len(tgt),) and len(list(tmp_path.glob("mined-*.npy"))) == 2
    assert tokenizer_hash(src) != tokenizer_hash(tgt)
