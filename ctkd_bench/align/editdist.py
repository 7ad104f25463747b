"""Levenshtein distance (unit insert/delete/substitute on code points), scalar and vectorised.

`pairwise_edit_distance` runs Myers' bit-parallel algorithm (Myers 1999, in the
column form of Hyyrö 2001) in numpy over a whole grid of string pairs at once:
one uint64 bit-vector per pair, one step per character of the column string. A
pattern of more than 64 characters falls back to the plain dynamic program.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

_WORD = 64


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance between two strings (Wagner-Fischer, one row)."""
    if a == b:
        return 0
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return len(a)
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def encode_strings(strings: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Code points [n, max_len] (0-padded, int64) and lengths [n] of a list of strings."""
    lengths = np.fromiter((len(s) for s in strings), dtype=np.int64, count=len(strings))
    width = int(lengths.max()) if len(strings) else 0
    codes = np.zeros((len(strings), max(width, 1)), dtype=np.int64)
    for i, s in enumerate(strings):
        if s:
            codes[i, :len(s)] = np.frombuffer(s.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    return codes, lengths


def _peq_table(codes: np.ndarray, lengths: np.ndarray, alphabet: np.ndarray) -> np.ndarray:
    """Myers' match masks: peq[i, k] has bit p set iff pattern i has alphabet[k] at position p.

    Column len(alphabet) is all zeros, for characters that no pattern contains.
    """
    n, width = codes.shape
    peq = np.zeros((n, len(alphabet) + 1), dtype=np.uint64)
    rows, cols = np.nonzero(np.arange(width)[None, :] < lengths[:, None])
    sym = np.searchsorted(alphabet, codes[rows, cols])
    np.bitwise_or.at(peq, (rows, sym), np.left_shift(np.uint64(1), cols.astype(np.uint64)))
    return peq


def _symbols(codes: np.ndarray, alphabet: np.ndarray) -> np.ndarray:
    """Map code points to alphabet indices; characters outside the alphabet to len(alphabet)."""
    idx = np.searchsorted(alphabet, codes)
    idx = np.minimum(idx, len(alphabet))
    hit = np.zeros(codes.shape, dtype=bool)
    inside = idx < len(alphabet)
    hit[inside] = alphabet[idx[inside]] == codes[inside]
    return np.where(hit, idx, len(alphabet))


def _word_type(max_len: int):
    for dtype in (np.uint8, np.uint16, np.uint32, np.uint64):
        if max_len <= np.iinfo(dtype).bits:
            return dtype
    raise ValueError("patterns longer than 64 characters need the plain dynamic program")


def myers_grid(pat_codes, pat_lengths, txt_codes, txt_lengths) -> np.ndarray:
    """Edit distances [n_pat, n_txt] for patterns of at most 64 characters (bit-parallel).

    State is laid out [n_txt, n_pat] (one bit-vector per pair, in the narrowest
    unsigned type that holds the longest pattern); every update runs in place. A
    text's distance is read off the vertical deltas once its last character is in:
    ``ED = len(text) + popcount(VP) - popcount(VN)`` over the pattern's bits.
    """
    n_p, n_t = len(pat_lengths), len(txt_lengths)
    if n_p == 0 or n_t == 0:
        return np.zeros((n_p, n_t), dtype=np.int64)
    dtype = _word_type(int(pat_lengths.max(initial=1)))
    alphabet = np.unique(pat_codes[np.arange(pat_codes.shape[1])[None, :] < pat_lengths[:, None]])
    peq_t = np.ascontiguousarray(_peq_table(pat_codes, pat_lengths, alphabet).T.astype(dtype))
    sym = _symbols(txt_codes, alphabet)
    one = dtype(1)
    mask = ((np.left_shift(np.uint64(1), pat_lengths.astype(np.uint64)) - np.uint64(1))
            .astype(dtype)[None, :])                    # wraps to all ones for 64
    mask[0, pat_lengths >= np.iinfo(dtype).bits] = np.iinfo(dtype).max
    shape = (n_t, n_p)
    vp = np.full(shape, np.iinfo(dtype).max, dtype=dtype)
    vn = np.zeros(shape, dtype=dtype)
    d0, hp, hn, x = (np.empty(shape, dtype=dtype) for _ in range(4))
    out = np.broadcast_to(pat_lengths[None, :], shape).astype(np.int64)   # empty texts: len(pattern)
    finish = {int(L): np.nonzero(txt_lengths == L)[0] for L in np.unique(txt_lengths) if L > 0}
    for k in range(int(txt_lengths.max(initial=0))):
        eq = peq_t[sym[:, k]]
        np.bitwise_and(eq, vp, out=d0)                  # d0 = (((eq & vp) + vp) ^ vp) | eq | vn
        np.add(d0, vp, out=d0)
        np.bitwise_xor(d0, vp, out=d0)
        np.bitwise_or(d0, eq, out=d0)
        np.bitwise_or(d0, vn, out=d0)
        np.bitwise_or(d0, vp, out=hp)                   # hp = vn | ~(d0 | vp)
        np.invert(hp, out=hp)
        np.bitwise_or(hp, vn, out=hp)
        np.bitwise_and(vp, d0, out=hn)                  # hn = vp & d0
        np.left_shift(hp, one, out=x)                   # x = (hp << 1) | 1
        np.bitwise_or(x, one, out=x)
        np.bitwise_and(x, d0, out=vn)                   # vn = x & d0
        np.bitwise_or(x, d0, out=vp)                    # vp = (hn << 1) | ~(x | d0)
        np.invert(vp, out=vp)
        np.left_shift(hn, one, out=hn)
        np.bitwise_or(vp, hn, out=vp)
        rows = finish.get(k + 1)
        if rows is not None:
            up = np.bitwise_count(vp[rows] & mask).astype(np.int64)
            down = np.bitwise_count(vn[rows] & mask).astype(np.int64)
            out[rows] = (k + 1) + up - down
    empty = pat_lengths == 0
    if empty.any():
        out[:, empty] = txt_lengths[:, None]
    return out.T


def pairwise_edit_distance(a: Sequence[str], b: Sequence[str], block: int = 1 << 21) -> np.ndarray:
    """Edit distance of every pair: [len(a), len(b)] int64 (vectorised, exact)."""
    a, b = list(a), list(b)
    out = np.zeros((len(a), len(b)), dtype=np.int64)
    if not a or not b:
        return out
    ca, la = encode_strings(a)
    cb, lb = encode_strings(b)
    short = np.nonzero(la <= _WORD)[0]
    rows_per_block = max(1, block // len(b))
    for i in range(0, len(short), rows_per_block):
        sel = short[i:i + rows_per_block]
        out[sel] = myers_grid(ca[sel], la[sel], cb, lb)
    for i in np.nonzero(la > _WORD)[0]:
        out[i] = [edit_distance(a[i], t) for t in b]
    return out
