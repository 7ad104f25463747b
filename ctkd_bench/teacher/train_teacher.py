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
from ..run.faults import checkpoint
from ..specs import ModelSpec, TrainSpec
from ..train.forward import causal_ce
from ..train.trainer import lr_factor
from ..defaults import GRAD_CLIP, WEIGHT_DECAY
from ..util import stable_hash


def teacher_folder(cache: Path, spec: ModelSpec, tok_hash: str, examples: list[dict], max_length: int,
                   num_labels: int) -> Path:
    key = stable_hash({"spec": repr(spec), "tok": tok_hash, "data": stable_hash(examples),
                       "max_length": max_length, "labels": num_labels, "v": 3})
    return cache / "teachers" / f"{spec.name}-{key}"


def length_bucketed_batches(encoded: list, batch_size: int, steps: int, rng: random.Random) -> list[list[int]]:
    """`steps` batches over shuffled epochs; within windows of 50 batches, examples of similar
    length share a batch (far less padding when tracks of different lengths are mixed)."""
    batches: list[list[int]] = []
    window = 50 * batch_size
    while len(batches) < steps:
        order = list(range(len(encoded)))
        rng.shuffle(order)
        epoch = []
        for start in range(0, len(order), window):
            chunk = sorted(order[start:start + window], key=lambda i: len(encoded[i][0].ids))
            epoch += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
        rng.shuffle(epoch)
        batches += epoch
    return batches[:steps]


def _fit(model, opt, batches, encoded, tokenizer, encoder: bool, train: TrainSpec, progress) -> None:
    model.train()
    for step, idx in enumerate(batches):
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
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP, foreach=True)
        opt.step()
        if progress:
            progress(1, loss.item())


def train_teacher(spec: ModelSpec, tokenizer, examples: list[dict], encoder: bool, num_labels: int,
                  max_length: int, folder: Path, seed: int, progress=None, init_folder: Path | None = None):
    """Train on `examples` (all tracks this teacher serves) from scratch, or fine-tune the pretrained
    model in `init_folder`; save to `folder`; load it back."""
    train: TrainSpec = spec.train or TrainSpec()
    if init_folder is not None:
        with torch.random.fork_rng(devices=[]):   # a new classification head is seeded too
            torch.manual_seed(seed)
            model = load_pretrained(init_folder, encoder, spec.trust_remote_code, num_labels)
    else:
        model = build_model(arch_spec(spec, num_labels), tokenizer, seed)
    if encoder:
        encoded = [(encode_encoder(tokenizer, e["text"], max_length), int(e["label"])) for e in examples]
    else:
        encoded = [(encode_causal(tokenizer, e["prompt"], e["response"], max_length), None) for e in examples]
    opt = torch.optim.AdamW(model.parameters(), lr=train.lr, weight_decay=WEIGHT_DECAY, foreach=True)
    batches = length_bucketed_batches(encoded, train.batch_size, train.steps, random.Random(seed))
    with torch.random.fork_rng(devices=[]):   # dropout masks are seeded too: a cold cache rebuilds this teacher
        torch.manual_seed(seed)
        _fit(model, opt, batches, encoded, tokenizer, encoder, train, progress)
    model.eval()
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    checkpoint("teacher-train")
    if folder.exists():
        shutil.rmtree(folder)
    tmp.replace(folder)
    return load_pretrained(folder, encoder, num_labels=num_labels)
