"""Train a suite's `build` teacher once and cache it (save_pretrained, loaded back via from_pretrained)."""
from __future__ import annotations

import random
import shutil
from pathlib import Path

import torch
import torch.nn.functional as F

from ..data.collate import encode_causal, encode_encoder, pad_side
from ..models.sources import arch_spec, load_pretrained
from ..models.build import build_model
from ..specs import ModelSpec, TrainSpec
from ..train.forward import causal_ce
from ..train.trainer import lr_factor
from ..defaults import GRAD_CLIP, WEIGHT_DECAY
from ..util import stable_hash


def teacher_folder(cache: Path, spec: ModelSpec, tok_hash: str, examples: list[dict], max_length: int,
                   num_labels: int) -> Path:
    key = stable_hash({"spec": repr(spec), "tok": tok_hash, "data": stable_hash(examples),
                       "max_length": max_length, "labels": num_labels, "v": 2})
    return cache / "teachers" / f"{spec.name}-{key}"


def train_teacher(spec: ModelSpec, tokenizer, examples: list[dict], encoder: bool, num_labels: int,
                  max_length: int, folder: Path, seed: int, progress=None):
    """Train from scratch on `examples` (all tracks this teacher serves); save to `folder`; load it back."""
    train: TrainSpec = spec.train or TrainSpec()
    model = build_model(arch_spec(spec, num_labels), tokenizer, seed)
    if encoder:
        encoded = [(encode_encoder(tokenizer, e["text"], max_length), int(e["label"])) for e in examples]
    else:
        encoded = [(encode_causal(tokenizer, e["prompt"], e["response"], max_length), None) for e in examples]
    opt = torch.optim.AdamW(model.parameters(), lr=train.lr, weight_decay=WEIGHT_DECAY)
    rng = random.Random(seed)
    order: list[int] = []
    model.train()
    for step in range(train.steps):
        if len(order) < train.batch_size:
            fresh = list(range(len(encoded)))
            rng.shuffle(fresh)
            order += fresh
        idx, order = order[:train.batch_size], order[train.batch_size:]
        side = pad_side([encoded[i][0] for i in idx], tokenizer)
        for g in opt.param_groups:
            g["lr"] = train.lr * lr_factor(step, train.steps, 0.05, "cosine")
        out = model(input_ids=side.input_ids, attention_mask=side.attention_mask)
        if encoder:
            loss = F.cross_entropy(out.logits, torch.tensor([encoded[i][1] for i in idx]))
        else:
            loss = causal_ce(out.logits, side.labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        opt.step()
        if progress:
            progress(1, float(loss))
    model.eval()
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    if folder.exists():
        shutil.rmtree(folder)
    tmp.replace(folder)
    return load_pretrained(folder, encoder, num_labels=num_labels)
