"""Turn task examples into a `PairBatch`: the same text tokenised by both tokenizers.

Causal tracks: ``[BOS] prompt response EOS`` where prompt and response are
tokenised separately (so no token straddles the boundary) and the prompt is
truncated from the left when the sequence is too long. Encoder tracks: the
tokenizer's own special tokens around the sentence.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..align.spans import encode_with_spans
from ..batch import PairBatch, Side
from ..defaults import ENCODER_TRACKS, IGNORE_INDEX


@dataclass
class Encoded:
    ids: list[int]
    spans: list[tuple[int, int]]
    labels: list[int] | None
    tokens: list[str] | None = None   # token strings, filled by `pad_side` on first use (an example recurs every epoch)


def pad_id(tokenizer) -> int:
    for tid in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if tid is not None:
            return tid
    return 0


def encode_causal(tokenizer, prompt: str, response: str, max_len: int) -> Encoded:
    p_ids, p_spans = encode_with_spans(tokenizer, prompt) if prompt else ([], [])
    r_ids, r_spans = encode_with_spans(tokenizer, response) if response else ([], [])
    shift = len(prompt)
    r_spans = [(s + shift, e + shift) for s, e in r_spans]
    end = len(prompt) + len(response)
    head_ids, head_spans = [], []
    if tokenizer.bos_token_id is not None:
        head_ids, head_spans = [tokenizer.bos_token_id], [(0, 0)]
    tail_ids, tail_spans = [], []
    if tokenizer.eos_token_id is not None:
        tail_ids, tail_spans = [tokenizer.eos_token_id], [(end, end)]
    room = max_len - len(head_ids) - len(tail_ids)
    if len(r_ids) > room:                       # keep the start of the response
        r_ids, r_spans, p_ids, p_spans = r_ids[:room], r_spans[:room], [], []
    elif len(p_ids) + len(r_ids) > room:        # drop the start of the prompt
        keep = room - len(r_ids)
        p_ids, p_spans = p_ids[len(p_ids) - keep:], p_spans[len(p_spans) - keep:]
    ids = head_ids + p_ids + r_ids + tail_ids
    spans = head_spans + p_spans + r_spans + tail_spans
    n_ignored = len(head_ids) + len(p_ids)
    labels = [IGNORE_INDEX] * n_ignored + r_ids + tail_ids
    return Encoded(ids, spans, labels)


def encode_encoder(tokenizer, text: str, max_len: int) -> Encoded:
    ids, spans = encode_with_spans(tokenizer, text, add_special_tokens=True)
    if len(ids) > max_len:
        ids, spans = ids[:max_len - 1] + ids[-1:], spans[:max_len - 1] + spans[-1:]
    return Encoded(ids, spans, None)


def pad_side(encoded: list[Encoded], tokenizer, padding_side: str = "right") -> Side:
    width = max(len(e.ids) for e in encoded)
    pid = pad_id(tokenizer)
    right = padding_side == "right"
    ids, mask, labels, offsets, tokens = [], [], [], [], []
    for e in encoded:
        pad = width - len(e.ids)
        end = e.spans[-1][1] if e.spans else 0
        if right:
            ids.append(e.ids + [pid] * pad)
            mask.append([1] * len(e.ids) + [0] * pad)
            offsets.append(list(e.spans) + [(end, end)] * pad)
            labels.append(None if e.labels is None else e.labels + [IGNORE_INDEX] * pad)
        else:
            ids.append([pid] * pad + e.ids)
            mask.append([0] * pad + [1] * len(e.ids))
            offsets.append([(0, 0)] * pad + list(e.spans))
            labels.append(None if e.labels is None else [IGNORE_INDEX] * pad + e.labels)
        if e.tokens is None:
            e.tokens = tokenizer.convert_ids_to_tokens(e.ids)
        tokens.append(e.tokens)
    def long(rows):
        return torch.tensor(rows, dtype=torch.long)

    return Side(long(ids), long(mask), None if encoded[0].labels is None else long(labels),
                long(offsets).view(len(encoded), width, 2), tokens, padding_side)


def collate_pair(examples: list[dict], track: str, student_tokenizer, teacher_tokenizer,
                 max_len: int, padding_side: str = "right") -> PairBatch:
    """Examples are dicts with ``id`` and ``prompt``/``response`` (causal) or ``text``/``label`` (encoder)."""
    encoder = track in ENCODER_TRACKS
    if encoder:  # the classifier pools position 0 ([CLS]/<s>), so encoder batches are always right-padded
        padding_side = "right"
        texts = [ex["text"] for ex in examples]
        prompts = [0] * len(examples)
        enc_s = [encode_encoder(student_tokenizer, t, max_len) for t in texts]
        enc_t = [encode_encoder(teacher_tokenizer, t, max_len) for t in texts]
        targets = torch.tensor([int(ex["label"]) for ex in examples], dtype=torch.long)
    else:
        texts = [ex["prompt"] + ex["response"] for ex in examples]
        prompts = [len(ex["prompt"]) for ex in examples]
        enc_s = [encode_causal(student_tokenizer, ex["prompt"], ex["response"], max_len) for ex in examples]
        enc_t = [encode_causal(teacher_tokenizer, ex["prompt"], ex["response"], max_len) for ex in examples]
        targets = None
    return PairBatch(
        track=track,
        ids=[str(ex.get("id", i)) for i, ex in enumerate(examples)],
        texts=texts,
        prompt_chars=prompts,
        student=pad_side(enc_s, student_tokenizer, padding_side),
        teacher=pad_side(enc_t, teacher_tokenizer, padding_side),
        targets=targets,
    )
