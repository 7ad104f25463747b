"""Token-string alignment: normalised token strings, edit distance, MinED maps, DTW.

One import point for method authors; the code lives in `vocab`, `editdist`,
`mined` and `dtw`. `token_dtw` is the MinED/CDM sequence alignment: DTW over the
edit distances of the two token-string sequences, optionally weighted per position.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .dtw import backtrace, dtw, dtw_matrix, path_maps
from .editdist import edit_distance, pairwise_edit_distance
from .mined import mined_map_strings, mined_vocab_map, tokenizer_hash
from .vocab import normalize_token, normalized_vocab, token_bytes, tokenizer_kind

__all__ = [
    "normalize_token", "normalized_vocab", "token_bytes", "tokenizer_kind", "edit_distance",
    "pairwise_edit_distance", "mined_vocab_map", "mined_map_strings", "tokenizer_hash", "dtw",
    "dtw_matrix", "backtrace", "path_maps", "token_cost_matrix", "token_dtw",
]


def token_cost_matrix(tokens_a: Sequence[str], tokens_b: Sequence[str],
                      normalize: Callable[[str], str] | None = normalize_token) -> np.ndarray:
    """Edit distance [n, m] between every pair of (normalised) token strings.

    Each distinct string pair is computed once (token sequences repeat a lot).
    """
    a = [normalize(t) for t in tokens_a] if normalize else list(tokens_a)
    b = [normalize(t) for t in tokens_b] if normalize else list(tokens_b)
    ua, ia = np.unique(np.array(a, dtype=object), return_inverse=True) if a else ([], np.zeros(0, int))
    ub, ib = np.unique(np.array(b, dtype=object), return_inverse=True) if b else ([], np.zeros(0, int))
    D = pairwise_edit_distance(list(ua), list(ub))
    return D[np.asarray(ia).reshape(-1)][:, np.asarray(ib).reshape(-1)]


def token_dtw(tokens_a: Sequence[str], tokens_b: Sequence[str], weights=None,
              normalize: Callable[[str], str] | None = normalize_token):
    """DTW over two token-string sequences with edit-distance cost: (total, path).

    `weights` is None or a pair (weights_a [n], weights_b [m]) multiplying the cost
    (CDM's entropy weights). `normalize` maps each token string before the distance
    (default `normalize_token`; pass e.g. ``lambda t: t.replace("▁", "")`` to copy an
    official variant, or None for raw strings).
    """
    cost = token_cost_matrix(tokens_a, tokens_b, normalize)
    wa, wb = weights if weights is not None else (None, None)
    return dtw(cost, wa, wb)
