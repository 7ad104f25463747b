"""Character spans of tokens that tile the text, for any HF fast tokenizer.

`encode_with_spans` returns, for every token, a character span ``(start, end)``
into the text such that

- the spans of the non-special tokens tile the text: monotone, contiguous, every
  character covered exactly once (the first such token starts at 0, the last
  one ends at ``len(text)``);
- special tokens (BOS/EOS/CLS/SEP added by the post-processor) get the empty
  span ``(p, p)`` at the place they sit;
- a boundary between two tokens with non-empty spans is always *clean*: the
  tokens before it decode to exactly the characters before it.

The raw offsets of HF fast tokenizers violate all three in places:

- byte-level BPE and SentencePiece byte fallback split one character over several
  tokens and give each of them the whole character's offsets (overlaps);
- WordPiece drops whitespace and BERT's normaliser drops control characters and
  accents (gaps); NFKC and lower-casing can map one character to several tokens;
- byte-level post-processors with ``trim_offsets=True`` (RoBERTa style) leave
  the leading ``Ġ`` space outside a token's offsets.

Rules used to repair them (`tile_spans`):

1. tokens whose raw offsets overlap share at least one character, so no clean
   boundary lies between them: such runs form one *atom*; the atom's text goes to
   its first token and the others get the empty span at the atom's end (so
   `groups.span_groups` puts them in the group of the token before them);
2. text in a gap between atoms goes to the following atom (the space belongs to
   the word after it, as ``Ġ``/``▁`` tokens say); leading text goes to the first
   atom, trailing text to the last;
3. special tokens sit at the end of the atom before them (0 if none);
4. (`raw_offsets`) trimmed offsets are recomputed with trimming off, and the bare
   ``▁`` that SentencePiece-style tokenizers prepend (it stands for no character)
   is made zero-width instead of sharing the first character.

Checked by hypothesis over arbitrary unicode for byte-level BPE, SentencePiece,
WordPiece and tiktoken-style tokenizers (tests/align/test_align_spans.py).

When no non-special token exists (empty text, or BERT on whitespace only) the
text cannot be tiled and every span is empty.
"""
from __future__ import annotations

import json
import weakref
from typing import Sequence

import numpy as np

Span = tuple[int, int]
METASPACE = "\u2581"


def tile_spans(offsets: Sequence[Sequence[int]], special: Sequence[int] | None,
               n_chars: int) -> list[Span]:
    """Repair raw token offsets into tiling spans (see module docstring)."""
    n = len(offsets)
    if n == 0:
        return []
    raw = np.asarray(offsets, dtype=np.int64).reshape(n, 2).clip(0, n_chars)
    is_special = np.zeros(n, dtype=bool) if special is None else np.asarray(special, dtype=bool)
    real = np.nonzero(~is_special)[0]
    spans = np.zeros((n, 2), dtype=np.int64)
    if len(real):
        s = raw[real, 0]
        e = np.maximum(raw[real, 1], s)
        reach = np.maximum.accumulate(e)                        # max raw end so far
        new_atom = np.ones(len(real), dtype=bool)
        new_atom[1:] = s[1:] >= reach[:-1]                    # no overlap with anything before
        atom = np.cumsum(new_atom) - 1
        last = np.append(np.nonzero(new_atom)[0][1:] - 1, len(real) - 1)   # last member per atom
        atom_end = reach[last]
        atom_end[-1] = n_chars                                # trailing text to the last atom
        atom_start = np.concatenate([[0], atom_end[:-1]])
        start = np.where(new_atom, atom_start[atom], atom_end[atom])
        spans[real, 0], spans[real, 1] = start, atom_end[atom]
    ends = np.zeros(n, dtype=np.int64)                        # specials: end of the token before
    ends[real] = spans[real, 1]
    has_real_before = np.cumsum(~is_special) > 0
    pos = np.maximum.accumulate(np.where(~is_special, ends, 0))
    pos = np.where(has_real_before, pos, 0)
    spans[is_special, 0] = spans[is_special, 1] = pos[is_special]
    return [(int(a), int(b)) for a, b in spans.tolist()]


_INFO: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _untrim(node) -> bool:
    """Set trim_offsets=False in a post-processor spec, in place; True if anything changed."""
    changed = False
    if isinstance(node, dict):
        if node.get("trim_offsets") is True:
            node["trim_offsets"] = False
            changed = True
        for v in node.values():
            changed |= _untrim(v)
    elif isinstance(node, list):
        for v in node:
            changed |= _untrim(v)
    return changed


def _tokenizer_info(tokenizer):
    """(backend copy with untrimmed offsets or None, id of the bare "▁" token or None), cached."""
    try:
        return _INFO[tokenizer]
    except (KeyError, TypeError):
        pass
    fixed = None
    backend = getattr(tokenizer, "backend_tokenizer", None)
    post = getattr(backend, "post_processor", None)
    if post is not None:
        spec = json.loads(post.__getstate__())
        if _untrim(spec):
            from tokenizers import Tokenizer

            full = json.loads(backend.to_str())
            full["post_processor"] = spec
            fixed = Tokenizer.from_str(json.dumps(full))
    mark = tokenizer.convert_tokens_to_ids(METASPACE)
    if mark is None or tokenizer.convert_ids_to_tokens(mark) != METASPACE:
        mark = None
    info = (fixed, mark)
    try:
        _INFO[tokenizer] = info
    except TypeError:
        pass
    return info


def raw_offsets(tokenizer, text: str, add_special_tokens: bool = False):
    """(ids, offsets, special mask) from the fast tokenizer, with two known artefacts removed.

    - trimmed offsets (``trim_offsets=True``) are replaced by untrimmed ones;
    - a bare ``▁`` that SentencePiece-style tokenizers prepend to the text (it stands for
      no character) gets a zero-width offset instead of sharing the next character's.
    """
    enc = tokenizer(text, add_special_tokens=add_special_tokens, return_offsets_mapping=True,
                    return_special_tokens_mask=True)
    ids = list(enc["input_ids"])
    offsets = [tuple(o) for o in enc["offset_mapping"]]
    special = list(enc["special_tokens_mask"])
    fixed, mark = _tokenizer_info(tokenizer)
    if fixed is not None:
        alt = fixed.encode(text, add_special_tokens=add_special_tokens)
        if list(alt.ids) == ids:       # same tokens, honest offsets
            offsets = [tuple(o) for o in alt.offsets]
    if mark is not None:
        for i, tid in enumerate(ids):
            s = offsets[i][0]
            if tid == mark and not special[i] and s < len(text) and not _is_space_char(text[s]):
                offsets[i] = (s, s)
    return ids, offsets, special


def _is_space_char(ch: str) -> bool:
    return ch.isspace() or ch == METASPACE


def encode_with_spans(tokenizer, text: str, add_special_tokens: bool = False):
    """Token ids of `text` and each token's character span [start, end) in `text` (tiling)."""
    ids, offsets, special = raw_offsets(tokenizer, text, add_special_tokens)
    return ids, tile_spans(offsets, special, len(text))
