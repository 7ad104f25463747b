"""The teacher-signal cache serves exactly what a live teacher computes, for any padding side."""
import pytest
import torch

from ctkd_bench.data.collate import encode_causal, encode_encoder, pad_side
from ctkd_bench.errors import UndeclaredSignalError
from ctkd_bench.method import Needs
from ctkd_bench.teacher.cache import TeacherCache
from ctkd_bench.teacher.signals import live_teacher_signals
from ctkd_bench.toy import toy_pair

NEEDS = Needs(logits=True, topk=4, token_logprobs=True, hidden_states=(0, -1), attentions=(-1,))


def _encode(pair, encoder):
    tok = pair.teacher_tokenizer
    if encoder:
        return [encode_encoder(tok, e["text"], 48) for e in pair.examples[:10]]
    return [encode_causal(tok, e["prompt"], e["response"], 48) for e in pair.examples[:10]]


@pytest.mark.parametrize("track", ["instruct", "embed"])
@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_cached_equals_live(tmp_path, track, padding_side):
    pair = toy_pair(track)
    encoder = track == "embed"
    if encoder and padding_side == "left":
        pytest.skip("encoder batches are always right-padded (the classifier pools position 0)")
    encoded = _encode(pair, encoder)
    cache = TeacherCache(tmp_path, pair.teacher, "toy", pair.head, encoder, pair.teacher_tokenizer, batch_size=3)
    needs = Needs(logits=True, hidden_states=(-1,), attentions=(-1,)) if encoder else NEEDS
    ekey = cache.ensure(encoded, needs)
    idx = [7, 2, 5]
    side = pad_side([encoded[i] for i in idx], pair.teacher_tokenizer, padding_side)
    cached = cache.signals(ekey, idx, side, needs)
    live = live_teacher_signals(pair.teacher, side, needs, pair.head, encoder)
    mask = side.attention_mask.bool()
    if encoder:
        torch.testing.assert_close(cached.class_logits, live.class_logits, atol=1e-4, rtol=1e-4)
    else:
        torch.testing.assert_close(cached.logits[mask], live.logits[mask], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(cached.topk_ids[mask], live.topk_ids[mask])
        both = mask[:, :-1] & mask[:, 1:]
        torch.testing.assert_close(cached.token_logprobs[:, :-1][both], live.token_logprobs[:, :-1][both],
                                   atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(cached.hidden_states[-1][mask], live.hidden_states[-1][mask], atol=1e-4, rtol=1e-4)
    a_mask = mask[:, None, :, None] & mask[:, None, None, :]
    a_c, a_l = cached.attentions[-1], live.attentions[-1]
    torch.testing.assert_close(a_c.masked_select(a_mask), a_l.masked_select(a_mask), atol=1e-4, rtol=1e-4)


def test_cache_is_reused_from_disk(tmp_path):
    pair = toy_pair("instruct")
    encoded = _encode(pair, False)
    first = TeacherCache(tmp_path, pair.teacher, "toy", pair.head, False, pair.teacher_tokenizer)
    first.ensure(encoded, NEEDS)
    assert first.computed_tokens > 0
    second = TeacherCache(tmp_path, pair.teacher, "toy", pair.head, False, pair.teacher_tokenizer)
    second.ensure(encoded, NEEDS)
    assert second.computed_tokens == 0  # served from disk: the teacher did not run again


def test_only_declared_signals_are_readable(tmp_path):
    pair = toy_pair("instruct")
    encoded = _encode(pair, False)
    cache = TeacherCache(tmp_path, pair.teacher, "toy", pair.head, False, pair.teacher_tokenizer)
    needs = Needs(topk=3)
    ekey = cache.ensure(encoded, needs)
    side = pad_side(encoded[:2], pair.teacher_tokenizer)
    signals = cache.signals(ekey, [0, 1], side, needs)
    assert signals.topk_logprobs.shape[-1] == 3
    for name in ("logits", "hidden_states", "attentions", "lm_head", "embeddings", "generations"):
        with pytest.raises(UndeclaredSignalError):
            getattr(signals, name)
    assert not signals.topk_logprobs.requires_grad
