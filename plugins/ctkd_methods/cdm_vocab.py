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
``prepare``), and a step's choice is the first of them present in that step's target top-K
(one lookup in a per-step membership table, only for the slots without an exact match).
Three equal implementations: ``dynamic_map_native`` (a C kernel, CPU, when a C compiler is
there: `ctkd_bench.native`), ``dynamic_map_lists`` (numpy, CPU: only the real entries of each
near list) and ``dynamic_map_dense`` (torch, any device: the padded [slots, R] table).

Sentinel: -1 = "no mapping" (the official code uses id 0; its side effect, that a real token
with id 0 is always dropped, is reproduced where the caller asks for it).
"""
from __future__ import annotations

import ctypes
import weakref

import numpy as np
import torch

from ctkd_bench import native
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
    for la, all_rows in by_len.items():
        # ED >= |la - lb|, so only lengths with |la - lb| < threshold * (la + lb) can qualify
        ok = (np.abs(t_len - la) < threshold * (t_len + la)) | ((t_len == 0) & (la == 0))
        cols = np.nonzero(ok)[0]
        # in blocks of rows: a length class of a 262k vocabulary against a 49k one would be a
        # [30k x 49k] float64 table (12 GB); each row's list depends on its own row only
        block = max(1, NEAR_BLOCK_CELLS // max(1, len(cols)))
        for start in range(0, len(all_rows), block):
            lists.update(_near_lists(src, tgt, all_rows[start:start + block], cols, t_len, la, threshold,
                                     specials, cap))
    width = max([len(v) for v in lists.values()] + [1])
    out = torch.full((len(src), width), -1, dtype=torch.long)
    for i, ids in lists.items():
        out[i, :len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out


NEAR_BLOCK_CELLS = 1 << 24        # source x target pairs per block of `near_candidates` (128 MB float64)


def _near_lists(src, tgt, rows, cols, t_len, la, threshold, specials, cap) -> dict[int, list[int]]:
    """`near_candidates`' lists for source ids ``rows`` (all of length ``la``) against ``cols``."""
    lists = {}
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
    return lists


def dynamic_map(src_top: torch.Tensor, cand_top: torch.Tensor, exact: torch.Tensor,
                near: torch.Tensor, valid: torch.Tensor, blocked: torch.Tensor | None = None,
                zero_unmapped: bool = False) -> torch.Tensor:
    """Target id for every source top-K slot (-1: unmapped); see `dynamic_map_dense` for the contract.

    On CPU `dynamic_map_lists` (same values, several times faster); elsewhere `dynamic_map_dense`.
    """
    if src_top.device.type == "cpu":
        lib = native.library("cdm_dynamic_map", KERNEL, SIGNATURES)
        if lib is not None:
            return dynamic_map_native(lib, src_top, cand_top, exact, near, valid, blocked, zero_unmapped)
        return dynamic_map_lists(src_top, cand_top, exact, near, valid, blocked, zero_unmapped)
    return dynamic_map_dense(src_top, cand_top, exact, near, valid, blocked, zero_unmapped)


def blocked_targets(source_exact: torch.Tensor, n_targets: int, block_zero: bool,
                    official_filter: bool) -> torch.Tensor:
    """[n_targets] bool: target ids the official code removes from *every* step's candidates.

    Both removals depend on the id alone, so they are a vocabulary table, not a per-slot pass:
    id 0 (the official "unmapped" sentinel) when ``block_zero``; with ``official_filter``, the
    target ids ``c`` whose *source*-vocabulary entry ``source_exact[c]`` has no exact match
    (the official filter indexes the source map by target ids: CDM's quirk 3).
    """
    out = torch.zeros(n_targets, dtype=torch.bool, device=source_exact.device)
    if official_filter:
        n = min(n_targets, source_exact.numel())
        out[:n] = source_exact[:n] < 0
    if block_zero and n_targets:
        out[0] = True
    return out


def _allowed_columns(blocked: torch.Tensor | None, width: int, device=None) -> torch.Tensor:
    """[width] bool membership columns that count: not blocked, and not the last (the removed-candidate
    column, where -1 entries land)."""
    allowed = torch.ones(width, dtype=torch.bool, device=device)
    if blocked is not None:
        n = min(width, blocked.numel())
        allowed[:n] = ~blocked[:n]
    allowed[width - 1] = False
    return allowed


def _membership_columns(flat: np.ndarray, cand: np.ndarray, blocked: torch.Tensor | None):
    """(width, allowed [width] bool ndarray) of the per-step membership table the list walks use: one
    column per id the near lists or the candidates name, plus the removed-candidate column."""
    width = max(int(flat.max()) if flat.size else 0, int(cand.max()) if cand.size else 0) + 2
    return width, _allowed_columns(blocked, width).numpy()


def dynamic_map_lists(src_top: torch.Tensor, cand_top: torch.Tensor, exact: torch.Tensor,
                      near: torch.Tensor, valid: torch.Tensor, blocked: torch.Tensor | None = None,
                      zero_unmapped: bool = False) -> torch.Tensor:
    """`dynamic_map_dense` in numpy (CPU tensors), walking only the real entries of the near lists.

    The near lists are flattened (each source id's entries contiguous, best first); each entry
    of each searched slot is one lookup in the per-step membership table; a slot's choice is
    its first entry found; per (row, source id), the found slot at the largest step wins.
    """
    B, G, K = src_top.shape
    src = src_top.numpy().reshape(-1)
    lens, flat, list_start, searchable = _flat_near_lists(near, exact)
    slots = np.flatnonzero(searchable[src])                         # ascending: by row, then step
    slots = slots[valid.numpy().reshape(-1)[slots // K]]
    x, step = src[slots], slots // K
    n_entries = lens[x]
    ends = np.cumsum(n_entries)
    starts = list_start[x]
    cand = flat[np.arange(int(ends[-1]) if len(ends) else 0) + np.repeat(starts - (ends - n_entries), n_entries)]
    cand_np = cand_top.numpy().reshape(B * G, K)
    width, allowed = _membership_columns(flat, cand_np, blocked)     # the last column: removed (-1) ids
    column = np.where(cand_np >= 0, cand_np, width - 1)
    present = np.zeros((B * G, width), dtype=bool)
    present.reshape(-1)[(np.arange(0, B * G * width, width)[:, None] + column).reshape(-1)] = True
    present &= allowed
    hit = np.flatnonzero(present.reshape(-1)[np.repeat(step * width, n_entries) + cand])
    owner = np.searchsorted(ends, hit, side="right")                # the slot each found entry belongs to
    first = np.ones(len(hit), dtype=bool)
    first[1:] = owner[1:] != owner[:-1]
    won, choice = owner[first], cand[hit[first]]
    # last step wins: slots ascend by step within a row, so a key's last found slot is its winner
    key = (step // G) * len(exact) + x
    won_key = key[won]
    order = np.argsort(won_key, kind="stable")
    last = np.ones(len(order), dtype=bool)
    last[:-1] = won_key[order][1:] != won_key[order][:-1]
    table = np.full(B * len(exact), -1, dtype=np.int64)
    table[won_key[order][last]] = choice[order][last]
    out = _exact_read(exact, zero_unmapped).numpy()[src]
    out[slots] = table[key]
    return torch.from_numpy(out.reshape(B, G, K))


KERNEL = r"""
#include <stdint.h>

/* dynamic_map_lists in one pass per row, steps from last to first: the first step (from the
   end) whose candidates hold a near entry decides a (row, source id) -- the official map keeps
   the last step's choice -- so every later lookup of that key is skipped. Written without
   data-dependent branches where it can be: on this workload mispredicted branches, not memory,
   are the cost. allowed[width - 1] is 0: removed candidates (-1) land there. */
void cdm_dynamic_map(int64_t B, int64_t G, int64_t K, const int64_t *src, const int64_t *cand,
                     const uint8_t *valid, const int64_t *exact_read, const uint8_t *searchable,
                     const int64_t *starts, const int64_t *lens, const int64_t *entries,
                     const uint8_t *allowed, int64_t width, int64_t *stamp, int64_t *chosen,
                     int64_t *decided, int64_t *out) {
    for (int64_t b = 0; b < B; b++) {
        for (int64_t g = G - 1; g >= 0; g--) {
            int64_t step = b * G + g, tag = step + 1;
            if (!valid[step]) continue;
            const int64_t *c = cand + step * K, *s = src + step * K;
            for (int64_t k = 0; k < K; k++) {
                int64_t col = (c[k] >= 0 && c[k] < width) ? c[k] : width - 1;
                stamp[col] = allowed[col] ? tag : 0;        /* tags are unique per step */
            }
            for (int64_t k = 0; k < K; k++) {
                int64_t x = s[k];
                int64_t n = (searchable[x] && decided[x] != b + 1) ? lens[x] : 0;
                const int64_t *list = entries + starts[x];
                for (int64_t e = 0; e < n; e++) {
                    if (stamp[list[e]] == tag) { chosen[x] = list[e]; decided[x] = b + 1; break; }
                }
            }
        }
        for (int64_t step = b * G; step < (b + 1) * G; step++) {
            const int64_t *s = src + step * K;
            int64_t *o = out + step * K;
            for (int64_t k = 0; k < K; k++) {
                int64_t x = s[k];
                int64_t dynamic = decided[x] == b + 1 ? chosen[x] : -1;
                o[k] = (valid[step] && searchable[x]) ? dynamic : exact_read[x];
            }
        }
    }
}
"""

_INT, _I64, _U8 = ctypes.c_int64, native.array(np.int64), native.array(np.uint8)
SIGNATURES = {"cdm_dynamic_map": (_INT, _INT, _INT, _I64, _I64, _U8, _I64, _U8, _I64, _I64, _I64, _U8,
                                  _INT, _I64, _I64, _I64, _I64)}


def dynamic_map_native(lib, src_top: torch.Tensor, cand_top: torch.Tensor, exact: torch.Tensor,
                       near: torch.Tensor, valid: torch.Tensor, blocked: torch.Tensor | None = None,
                       zero_unmapped: bool = False) -> torch.Tensor:
    """`dynamic_map_lists` through the C kernel ``lib`` (`KERNEL`): the same values (CPU tensors)."""
    B, G, K = src_top.shape
    lens, flat, list_start, searchable = _flat_near_lists(near, exact)
    src = np.ascontiguousarray(src_top.numpy(), dtype=np.int64)
    cand = np.ascontiguousarray(cand_top.numpy(), dtype=np.int64)
    exact_read = np.ascontiguousarray(_exact_read(exact, zero_unmapped).numpy(), dtype=np.int64)
    n_src = len(exact_read)
    if src.size and (int(src.min()) < 0 or int(src.max()) >= n_src):   # C would read past the tables
        raise IndexError(f"source ids must lie in [0, {n_src}), got {int(src.min())}..{int(src.max())}")
    width, allowed = _membership_columns(flat, cand, blocked)
    out = np.empty((B, G, K), dtype=np.int64)
    lib.cdm_dynamic_map(B, G, K, src, cand, np.ascontiguousarray(valid.numpy()).view(np.uint8), exact_read,
                        searchable.view(np.uint8), list_start, lens, flat, allowed.view(np.uint8), width,
                        np.zeros(width, dtype=np.int64), np.empty(n_src, dtype=np.int64),
                        np.zeros(n_src, dtype=np.int64), out)
    return torch.from_numpy(out)


_FLAT_NEAR: dict[int, tuple] = {}      # id(near) -> (weak ref, versions, flattened lists)


def _flat_near_lists(near: torch.Tensor, exact: torch.Tensor):
    """``near``'s lists flattened, computed once per table: (lengths [V_src], entries (row-major: by
    source id, best first), each list's start, searchable [V_src]: no exact match and a non-empty
    list). Tables do not change after ``prepare``; one edited in place is flattened again."""
    stamp = (near._version, id(exact), exact._version)
    got = _FLAT_NEAR.get(id(near))
    if got is None or got[0]() is not near or got[1] != stamp:
        near_np = near.numpy()
        lens = (near_np >= 0).sum(1)
        searchable = (exact.numpy() < 0) & (lens > 0)
        if len(_FLAT_NEAR) >= 16:                                  # tables of finished cells
            _FLAT_NEAR.clear()
        lens = lens.astype(np.int64)                               # int64 throughout: the C kernel's types
        entries = near_np[near_np >= 0].astype(np.int64)
        got = (weakref.ref(near), stamp, (lens, entries, np.cumsum(lens) - lens, np.ascontiguousarray(searchable)))
        _FLAT_NEAR[id(near)] = got
    return got[2]


def _exact_read(exact: torch.Tensor, zero_unmapped: bool) -> torch.Tensor:
    """The exact map as the output reads it: with ``zero_unmapped`` an exact target 0 is -1 (the
    official sentinel; the search still treats such a source id as exactly matched)."""
    return exact.masked_fill(exact == 0, -1) if zero_unmapped else exact


def dynamic_map_dense(src_top: torch.Tensor, cand_top: torch.Tensor, exact: torch.Tensor,
                      near: torch.Tensor, valid: torch.Tensor, blocked: torch.Tensor | None = None,
                      zero_unmapped: bool = False) -> torch.Tensor:
    """Target id for every source top-K slot (-1: unmapped): exact match, else the dynamic one.

    ``src_top`` [B, G, K] source ids (distinct within a step); ``cand_top`` [B, G, K] target
    candidates per step (-1 = removed); ``exact`` [V_src] (-1 none); ``near`` [V_src, R] (from
    ``near_candidates``); ``valid`` [B, G] real steps; ``blocked`` [V_tgt] bool: target ids
    removed from every step's candidates (`blocked_targets`); ``zero_unmapped``: an exact
    target 0 reads as -1 (`_exact_read`). Within a row, a source id's dynamic target
    is the one chosen at the last step that found one (the official in-place map update).

    Only the slots without an exact match are searched: a step's candidate set is a row of a
    [B * G, V_tgt] membership table, so each near candidate is one lookup.
    """
    B, G, K = src_top.shape
    device = src_top.device
    em = exact[src_top]
    miss = (em < 0) & valid.unsqueeze(-1)
    b_idx, g_idx, _ = torch.nonzero(miss, as_tuple=True)
    src = src_top[miss]                                             # [M]
    cands = near[src]                                               # [M, R]
    width = max(int(cand_top.max()) if cand_top.numel() else 0, int(near.max()) if near.numel() else 0) + 2
    present = torch.zeros(B * G, width, dtype=torch.bool, device=device)
    present.scatter_(1, torch.where(cand_top >= 0, cand_top, width - 1).view(B * G, K), True)
    present &= _allowed_columns(blocked, width, device)
    cell = (b_idx * G + g_idx).unsqueeze(-1) * width + torch.where(cands >= 0, cands, width - 1)
    member = present.view(-1).take(cell)                            # [M, R]
    first = member.to(torch.int8).argmax(-1, keepdim=True)         # the first member, else 0
    choice = cands.gather(-1, first).squeeze(-1)
    found = member.gather(-1, first).squeeze(-1)                    # = member.any(-1), cheaper
    # last step wins: per (row, source id), the choice made at the largest step that found one
    key = b_idx * exact.numel() + src                               # [M]
    last_step = torch.full((B * exact.numel(),), -1, dtype=torch.long, device=device)
    last_step.scatter_reduce_(0, key[found], g_idx[found], reduce="amax")
    winner = found & (g_idx == last_step[key])                      # one slot per key (ids distinct per step)
    table = torch.full_like(last_step, -1)
    table[key[winner]] = choice[winner]
    out = _exact_read(exact, zero_unmapped)[src_top]
    out[miss] = table[key]
    return out
