"""Encoder (embed) track evaluation: classification accuracy on the test split."""
from __future__ import annotations

import torch

from ..data.collate import encode_encoder, pad_side


@torch.no_grad()
def evaluate_encoder(model, tokenizer, examples: list[dict], max_length: int, batch_size: int = 64) -> dict:
    model.eval()
    correct = 0
    for start in range(0, len(examples), batch_size):
        chunk = examples[start:start + batch_size]
        side = pad_side([encode_encoder(tokenizer, e["text"], max_length) for e in chunk], tokenizer)
        logits = model(input_ids=side.input_ids, attention_mask=side.attention_mask).logits
        gold = torch.tensor([int(e["label"]) for e in chunk])
        correct += int((logits.argmax(-1) == gold).sum())
    return {"accuracy": correct / max(1, len(examples))}
