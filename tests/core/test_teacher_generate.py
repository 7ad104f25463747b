"""Teacher generations (`teacher.generate`): batched, left-padded, cached decoding gives the tokens an
independent one-prompt-at-a-time recomputation gives, and each step feeds only the new token."""
import pytest
import torch

from ctkd_bench.models.build import ArchSpec, build_model
from ctkd_bench.models.tokenizers import train_tokenizer
from ctkd_bench.teacher.generate import generate_responses

TEXTS = ["the cat sat on the mat", "a dog ran to the park and back", "numbers 12 and 345 add up",
         "Question: what is two plus two?\nAnswer: four"] * 8
PROMPTS = ["the cat", "Question: what is a dog and a cat and a mat?", "12 and"]   # three lengths
NEW = 6


@pytest.fixture(scope="module")
def tok_model(tmp_path_factory):
    tok = train_tokenizer("bpe", TEXTS, 300, tmp_path_factory.mktemp("bpe"))
    model = build_model(ArchSpec("llama", 32, 2, 4, 128), tok, seed=0).eval()
    return tok, model


def _greedy_without_cache(model, tok, prompt: str) -> list[int]:
    """Re-run the whole sequence for every new token (no padding, no cache)."""
    ids = [tok.bos_token_id] + tok(prompt, add_special_tokens=False)["input_ids"]
    new = []
    with torch.no_grad():
        for _ in range(NEW):
            nxt = int(model(input_ids=torch.tensor([ids + new]), use_cache=False).logits[0, -1].argmax())
            if nxt == tok.eos_token_id:
                break
            new.append(nxt)
    return new


def test_batched_generation_matches_the_uncached_recomputation(tok_model):
    tok, model = tok_model
    texts, n_tokens = generate_responses(model, tok, PROMPTS, NEW, batch_size=3)
    expected = [_greedy_without_cache(model, tok, p) for p in PROMPTS]
    assert texts == [tok.decode(e, skip_special_tokens=True) for e in expected]
    assert n_tokens == sum(len(e) + (len(e) < NEW) for e in expected)   # EOS counted only when generated


def test_decoding_reuses_the_kv_cache(tok_model):
    tok, model = tok_model
    widths = []
    hook = model.register_forward_pre_hook(lambda mod, args, kwargs: widths.append(kwargs["input_ids"].shape[1]),
                                           with_kwargs=True)
    try:
        generate_responses(model, tok, PROMPTS[:2], NEW, batch_size=2)
    finally:
        hook.remove()
    prompt_width = 1 + max(len(tok(p, add_special_tokens=False)["input_ids"]) for p in PROMPTS[:2])
    assert widths[0] == prompt_width and len(widths) > 1
    assert set(widths[1:]) == {1}          # one new token per step, not the whole prefix again
