"""MinED vocabulary maps: for every source token, the target token at minimum edit distance.

Definition (FuseLLM `vocab_mapping.py`, as used by DSKD's MinED baseline, CDM and
EMO): ``map[i] = argmin_j (ED(norm(src_i), norm(tgt_j)), j)`` over the normalised
token strings (`vocab.normalized_vocab`), i.e. an exact match when there is one and
ties broken towards the lowest target id (deterministic; FuseLLM's own tie-break
was not read, see shared/methods/minED.md).

The search returns exactly the brute-force result, fast:

1. exact matches through a dict;
2. distance 1 through a deletion index (two strings are within distance 1 iff one
   deletion from each, or none, makes them equal), verified exactly;
3. the rest by bit-parallel edit distance (`editdist.myers_grid`) against target
   length buckets in order of growing length difference, stopping once the
   length difference exceeds the best distance found (|len a - len b| <= ED).
"""
from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from ..util import atomic_write_bytes
from .editdist import _WORD, edit_distance, encode_strings, myers_grid
from .vocab import normalized_vocab

MAP_VERSION = 1          # bump when the normalisation or the tie-break changes
_BLOCK = 1 << 20         # pairs per vectorised block


def _deletions(s: str) -> set[str]:
    return {s} | {s[:k] + s[k + 1:] for k in range(len(s))}


def _within_one(a: str, b: str) -> bool:
    """ED(a, b) <= 1, in O(len)."""
    la, lb = len(a), len(b)
    if abs(la - lb) > 1:
        return False
    if la > lb:
        a, b, la, lb = b, a, lb, la
    k = 0
    while k < la and a[k] == b[k]:
        k += 1
    if la == lb:
        return a[k + 1:] == b[k + 1:]
    return a[k:] == b[k + 1:]


def _distance_one(todo: dict[str, int], firsts: dict[str, int]) -> dict[str, int]:
    """Sources (string -> placeholder) whose nearest target is at distance 1: string -> target id."""
    index: dict[str, list[int]] = defaultdict(list)
    strings = {}
    for s, j in firsts.items():
        strings[j] = s
        for v in _deletions(s):
            index[v].append(j)
    out = {}
    for s in todo:
        best = None
        for v in _deletions(s):
            for j in index.get(v, ()):
                if (best is None or j < best) and _within_one(s, strings[j]):
                    best = j
        if best is not None:
            out[s] = best
    return out


def _search_rest(rest: list[str], firsts: dict[str, int]) -> dict[str, int]:
    """Exact nearest target (lowest id on ties) for sources with no target within distance 1."""
    t_strings = sorted(firsts, key=firsts.get)            # unique target strings by id
    t_ids = np.array([firsts[s] for s in t_strings], dtype=np.int64)
    t_codes, t_len = encode_strings(t_strings)
    buckets = {int(L): np.nonzero(t_len == L)[0] for L in np.unique(t_len)}
    out = {}
    long_src = [s for s in rest if len(s) > _WORD]
    for s in long_src:                                    # rare: plain dynamic program
        d = [edit_distance(s, t) for t in t_strings]
        best = min(range(len(d)), key=lambda k: (d[k], t_ids[k]))
        out[s] = int(t_ids[best])
    by_len: dict[int, list[str]] = defaultdict(list)
    for s in rest:
        if len(s) <= _WORD:
            by_len[len(s)].append(s)
    for L, group in by_len.items():
        s_codes, s_len = encode_strings(group)
        best_d = np.full(len(group), np.iinfo(np.int64).max)
        best_id = np.full(len(group), np.iinfo(np.int64).max)
        r = 0
        while True:                                       # radius r = |len(target) - L|
            active = np.nonzero(best_d >= r)[0]           # ED >= r there: only these can improve or tie
            if len(active) == 0:
                break
            for ell in sorted({L - r, L + r}):
                if ell not in buckets:
                    continue
                cols = buckets[ell]
                step = max(1, _BLOCK // len(cols))
                for k in range(0, len(active), step):
                    rows = active[k:k + step]
                    d = myers_grid(s_codes[rows], s_len[rows], t_codes[cols], t_len[cols])
                    pick = d.argmin(axis=1)                # first minimum = lowest id (cols sorted by id)
                    dmin = d[np.arange(len(rows)), pick]
                    imin = t_ids[cols][pick]
                    better = (dmin < best_d[rows]) | ((dmin == best_d[rows]) & (imin < best_id[rows]))
                    best_d[rows[better]] = dmin[better]
                    best_id[rows[better]] = imin[better]
            r += 1
        out.update({s: int(i) for s, i in zip(group, best_id)})
    return out


def mined_map_strings(src: list[str], tgt: list[str]) -> np.ndarray:
    """``map[i] = argmin_j (ED(src[i], tgt[j]), j)``: the MinED map between two string lists."""
    if not tgt:
        raise ValueError("empty target vocabulary")
    firsts: dict[str, int] = {}
    for j, t in enumerate(tgt):
        firsts.setdefault(t, j)
    result = np.empty(len(src), dtype=np.int64)
    todo = {s: 0 for s in src if s not in firsts}
    near = _distance_one(todo, firsts)
    far = _search_rest([s for s in todo if s not in near], firsts)
    for i, s in enumerate(src):
        result[i] = firsts[s] if s in firsts else near[s] if s in near else far[s]
    return result


def tokenizer_hash(tokenizer) -> str:
    """Content hash of a tokenizer: its normalised vocabulary (what the map depends on)."""
    h = hashlib.sha256()
    for s in normalized_vocab(tokenizer):
        h.update(s.encode("utf-8", "surrogatepass") + b"\x00")
    return h.hexdigest()[:16]


def mined_vocab_map(src_tokenizer, tgt_tokenizer, cache_dir: str | Path | None = None) -> torch.Tensor:
    """Closest target id by edit distance on normalised strings, per source id: LongTensor [V_src].

    Exact match first, ties to the lowest target id. With `cache_dir`, the map is stored
    there under a name keyed by both tokenizers' content hashes and `MAP_VERSION`.
    """
    path = None
    if cache_dir is not None:
        name = f"mined-v{MAP_VERSION}-{tokenizer_hash(src_tokenizer)}-{tokenizer_hash(tgt_tokenizer)}.npy"
        path = Path(cache_dir) / name
        if path.exists():
            return torch.from_numpy(np.load(path))
    result = mined_map_strings(normalized_vocab(src_tokenizer), normalized_vocab(tgt_tokenizer))
    if path is not None:
        import io

        buf = io.BytesIO()
        np.save(buf, result)
        atomic_write_bytes(path, buf.getvalue())
    return torch.from_numpy(result)
