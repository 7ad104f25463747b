"""Character spans of tokens (placeholder version; hardened in the alignment toolkit)."""
from __future__ import annotations


def encode_with_spans(tokenizer, text: str, add_special_tokens: bool = False):
    """Token ids of `text` and each token's character span [start, end) in `text`."""
    enc = tokenizer(text, add_special_tokens=add_special_tokens, return_offsets_mapping=True)
    return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
