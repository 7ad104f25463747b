"""CDM's vocabulary side: token surface strings, the exact-match map, near-candidate lists, and
the per-step dynamic top-K map, vectorised. See ``ctkd_methods.cdm`` for the method and its
provenance (``chiiipk/cdm-llm2vec`` @ 144f18c, ``src/run_clm_distill_CDM.py``).

Official ``get_dymaic_mapper`` (sic), per sample and direction (source top-K ids -> target):
for each source top-K id X at step g with no exact match (row-major order over g, k), among the
target top-K ids of step g minus a filter set, the candidate with the smallest normalised edit
distance ``ED(a, b) / (len a + len b)`` (spaces removed) below the threshold is written into a
per-sample copy of the exact map; a later step overwrites an earlier one; the final map is then
read at every slot. Here the same result is computed without a Python loop over slots: the
candidates within the threshold are precomputed per source id (``near_candidates``, in
``prepare``), and a step's choice is the first of them present in that step's target top-K.

Sentinel: -1 = "no mapping" (the official code uses id 0; its side effect, that a real token
with id 0 is always dropped, is reproduced where the caller asks for it).
"""
from __future__ import annotations

import numpy as np
import torch

from ctkd_bench.align.editdist import pairwise_edit_distance
from ctkd_bench.align.vocab import normalized_vocab

# The official cost/distance functions treat these end-of-sequence strings as equal (distance 0).
EOS_LIKE = frozenset({"</s>", "<|endoftext|>", "<|im_end|>"})


def surface_strings(tokenizer) -> list[str]:
    """``decode([id])`` of every id with spaces removed: the strings the official code compares."""
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    return [t.replace(" ", "") for t in texts]


def eos_like(tokenizer) -> frozenset[str]:
    eos = getattr(tokenizer, "eos_token", None)
    return EOS_LIKE | ({eos} if isinstance(eos, str) else set())


def exact_vocab_map(src_tokenizer, tgt_tokenizer) -> torch.Tensor:
    """[V_src] target id with the same normalised string (lowest id), -1 where none.

    Stands in for the official ``get_em_mapper.py`` output (not published).
    """
    first: dict[str, int] = {}
    for i, s in enumerate(normalized_vocab(tgt_tokenizer)):
        first.setdefault(s, i)
    return torch.tensor([first.get(s, -1) for s in normalized_vocab(src_tokenizer)], dtype=torch.long)


def near_candidates(src: list[str], tgt: list[str], src_ids: list[int], threshold: float,
                    specials: frozenset[str] = EOS_LIKE, cap: int = 64) -> torch.Tensor:
    """[len(src), R] target ids within ``threshold`` of each listed source id, best first, -1 padded.

    Order: normalised distance, then lower target id (the official code breaks ties by CPython
    set order). Only ``src_ids`` get lists (the others have exact matches). At most ``cap`` kept.
    """
    t_len = np.array([len(s) for s in tgt])
    by_len: dict[int, list[int]] = {}
    for i in src_ids:
        by_len.setdefault(len(src[i]), []).append(i)
    lists: dict[int, list[int]] = {}
    for la, rows in by_len.items():
        # ED >= |la - lb|, so only lengths with |la - lb| < threshold * (la + lb) can qualify
        ok = (np.abs(t_len - la) < threshold * (t_len + la)) | ((t_len == 0) & (la == 0))
        cols = np.nonzero(ok)[0]
        dist = np.full((len(rows), len(cols)), np.inf)
        if len(cols):
            ed = pairwise_edit_distance([src[i] for i in rows], [tgt[j] for j in cols])
            total = t_len[cols][None, :] + la
            dist = np.where(total > 0, ed / np.maximum(total, 1), 0.0)
        for r, i in enumerate(rows):
            d = dist[r].copy()
            if src[i] in specials:
                d[[c for c, j in enumerate(cols) if tgt[j] in specials]] = 0.0
            hit = np.nonzero(d < threshold)[0]
            order = np.lexsort((cols[hit], d[hit]))[:cap]
            lists[i] = cols[hit][order].tolist()
    width = max([len(v) for v in lists.values()] + [1])
    out = torch.full((len(src), width), -1, dtype=torch.long)
    for i, ids in lists.items():
        out[i, :len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out


def dynamic_map(src_top: torch.Tensor, cand_top: torch.Tensor, exact: torch.Tensor,
                near: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Target id for every source top-K slot (-1: unmapped): exact match, else the dynamic one.

    ``src_top`` [B, G, K] source ids; ``cand_top`` [B, G, K] target candidates per step (-1 =
    removed); ``exact`` [V_src] (-1 none); ``near`` [V_src, R] (from ``near_candidates``);
    ``valid`` [B, G] real steps. Within a row, a source id's dynamic target is the one chosen at
    the last step that found one (the official in-place map update).
    """
    B, G, K = src_top.shape
    em = exact[src_top]
    miss = (em < 0) & valid.unsqueeze(-1)
    cands = near[src_top]                                           # [B, G, K, R]
    pool = cand_top.sort(dim=-1).values                             # [B, G, K]
    flat = cands.reshape(B, G, -1)
    pos = torch.searchsorted(pool, flat).clamp(max=K - 1)
    member = (pool.gather(-1, pos) == flat).reshape(cands.shape) & (cands >= 0)
    first = member.to(torch.int8).argmax(-1, keepdim=True)
    choice = cands.gather(-1, first).squeeze(-1)
    found = miss & member.any(-1)
    # last step wins: per (row, source id), keep the choice of the largest g that found one
    steps = torch.arange(G, device=src_top.device).view(1, G, 1).expand(B, G, K)
    rows = torch.arange(B, device=src_top.device).view(B, 1, 1).expand(B, G, K)
    key = rows * exact.numel() + src_top
    f_key, f_step, f_choice = key[found], steps[found], choice[found]
    order = torch.argsort(f_key * G + f_step)
    f_key, f_choice = f_key[order], f_choice[order]
    last = torch.ones_like(f_key, dtype=torch.bool)
    last[:-1] = f_key[1:] != f_key[:-1]
    u_key, u_choice = f_key[last], f_choice[last]
    at = torch.searchsorted(u_key, key).clamp(max=max(len(u_key) - 1, 0))
    hit = (u_key[at] == key) if len(u_key) else torch.zeros_like(key, dtype=torch.bool)
    dyn = torch.where(hit & miss, u_choice[at] if len(u_key) else key.new_full(key.shape, -1), -1)
    return torch.where(miss, dyn, em)
