"""lm-eval sees the text exactly as the trainer encoded it: BOS + prompt, never EOS.

Regression: the Unigram tokenizer's encoder template (``<s> $A </s>``) made lm-eval end
every generation context with EOS, so causal students answered with EOS and scored 0;
the byte-level BPE teacher got no BOS although it was trained after one.
"""
from __future__ import annotations

import pytest
from lm_eval.models.huggingface import HFLM
from transformers import GPT2Config, GPT2LMHeadModel

from ctkd_bench.data.collate import encode_causal
from ctkd_bench.data.tasks import instruct
from ctkd_bench.evaluate.lmeval import eval_tokenizer
from ctkd_bench.models.tokenizers import train_tokenizer

EXAMPLES = instruct.generate(60, seed=3)
TEXTS = [e["prompt"] + e["response"] for e in EXAMPLES]


@pytest.fixture(scope="module", params=["bpe", "unigram"])
def tokenizer(request, tmp_path_factory):
    return train_tokenizer(request.param, TEXTS, 300, tmp_path_factory.mktemp(request.param))


def _hflm(tokenizer, add_bos: bool) -> HFLM:
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=8, n_layer=1, n_head=1))
    return HFLM(pretrained=model, tokenizer=eval_tokenizer(tokenizer), batch_size=2, max_length=128,
                device="cpu", add_bos_token=add_bos)


def _prompt_ids(tokenizer, example) -> list[int]:
    enc = encode_causal(tokenizer, example["prompt"], example["response"], 512)
    n_prompt = sum(label == -100 for label in enc.labels)
    return enc.ids[:n_prompt]


def test_generation_context_is_the_training_prefix(tokenizer):
    lm = _hflm(tokenizer, add_bos=True)
    for example in EXAMPLES[:5]:
        expected = _prompt_ids(tokenizer, example)
        assert expected[0] == tokenizer.bos_token_id
        assert lm.tok_encode(example["prompt"]) == expected
        ids, mask = lm.tok_batch_encode([example["prompt"]])
        assert ids[0][mask[0].bool()].tolist() == expected
    assert tokenizer.eos_token_id not in lm.tok_encode(EXAMPLES[0]["prompt"])


def test_rolling_text_has_no_specials_and_bos_is_the_prefix(tokenizer):
    lm = _hflm(tokenizer, add_bos=False)
    text = TEXTS[0]
    assert lm.tok_encode(text) == tokenizer(text, add_special_tokens=False)["input_ids"]
    assert lm.prefix_token_id == tokenizer.bos_token_id


def test_the_original_tokenizer_is_left_alone(tokenizer):
    before = tokenizer(EXAMPLES[0]["prompt"])["input_ids"]
    eval_tokenizer(tokenizer)
    assert tokenizer(EXAMPLES[0]["prompt"])["input_ids"] == before
