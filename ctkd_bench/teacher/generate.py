"""Teacher generations (e.g. chain-of-thought for CoT2Align): generated once, cached, metered."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..util import atomic_write_json, stable_hash


@torch.no_grad()
def generate_responses(model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int = 32,
                       progress=None, settings: dict | None = None, seed: int = 0) -> tuple[list[str], int]:
    """Continuations of `prompts` (BOS + prompt, left-padded): greedy unless `settings` ask to sample
    (then seeded, so the cache is reproducible). Returns texts and the generated-token count."""
    model.eval()
    settings = {"do_sample": False, **(settings or {})}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _generate(model, tokenizer, prompts, max_new_tokens, batch_size, progress, settings)


def _generate(model, tokenizer, prompts, max_new_tokens, batch_size, progress, settings):
    texts, n_tokens = [], 0
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    for start in range(0, len(prompts), batch_size):
        chunk = [bos + tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts[start:start + batch_size]]
        width = max(len(c) for c in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, c in enumerate(chunk):
            ids[i, width - len(c):] = torch.tensor(c)
            mask[i, width - len(c):] = 1
        # use_cache: each step feeds one new token against the cached keys/values (a converted or
        # hand-made config with use_cache off would recompute the whole prefix every step)
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                             pad_token_id=pad, eos_token_id=tokenizer.eos_token_id,
                             **{"use_cache": True, **settings})
        new = out[:, width:]
        for row in new:
            keep = row.tolist()
            ended = tokenizer.eos_token_id in keep
            if ended:
                keep = keep[:keep.index(tokenizer.eos_token_id)]
            n_tokens += len(keep) + ended       # EOS counts when generated; a cut-off row has none
            texts.append(tokenizer.decode(keep, skip_special_tokens=True))
        if progress:
            progress(len(chunk))
    return texts, n_tokens


def cached_generations(cache_root: Path, teacher_key: str, model, tokenizer, prompts: list[str],
                       max_new_tokens: int, progress=None, settings: dict | None = None) -> tuple[list[str], int, bool]:
    """Generations from the cache, or generated now and stored. Returns (texts, tokens, was_cached)."""
    key = stable_hash({"teacher": teacher_key, "prompts": prompts, "max_new_tokens": max_new_tokens,
                       "settings": dict(settings or {})})
    path = Path(cache_root) / teacher_key / "generations" / f"{key}.json"
    if path.exists():
        data = json.loads(path.read_text())
        return data["texts"], data["tokens"], True
    texts, tokens = generate_responses(model, tokenizer, prompts, max_new_tokens, progress=progress,
                                       settings=settings)
    atomic_write_json(path, {"texts": texts, "tokens": tokens})
    return texts, tokens, False
