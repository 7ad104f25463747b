"""Cross-tokenizer alignment toolkit: pure, vectorised, tested once and hard.

- `spans`: `encode_with_spans` — character spans that tile the text.
- `groups`: `span_groups`, `one_to_one`, `covering_ranges`, `batch_chunk_matrices`.
- `strings`: `normalize_token`, `edit_distance`, `mined_vocab_map`, `dtw`, `token_dtw`.
- `ot`: `sinkhorn`, `sorted_w1`;  `cka`: `linear_cka`.
- `diagnostics`: `pair_diagnostics`;  `realtok`: real tokenizers from pip packages.
"""
from .cka import linear_cka
from .groups import ChunkAlignment, Group, batch_chunk_matrices, covering_ranges, one_to_one, span_groups
from .ot import sinkhorn, sorted_w1
from .spans import encode_with_spans
from .strings import dtw, edit_distance, mined_vocab_map, normalize_token, token_dtw

__all__ = [
    "encode_with_spans", "Group", "ChunkAlignment", "span_groups", "one_to_one", "covering_ranges",
    "batch_chunk_matrices", "normalize_token", "edit_distance", "mined_vocab_map", "dtw", "token_dtw",
    "sinkhorn", "sorted_w1", "linear_cka",
]
