"""Token strings as text: byte-level (``Ġ``), SentencePiece (``▁``, ``<0xNN>``) and WordPiece (``##``).

The *normalised* form of a token is the text it stands for, with its word-start
marker removed: the bytes it contributes decoded as UTF-8, where bytes that do not
form a whole character (one part of a character split over several tokens) are
kept as lone surrogates (``surrogateescape``) so that they never equal real text,
then one leading space stripped (the ``Ġ``/``▁`` marker); WordPiece drops ``##``.
Special and added tokens keep their literal content.
"""
from __future__ import annotations

import json
import re
import weakref
from functools import lru_cache

KINDS = ("bytelevel", "metaspace", "wordpiece", "plain")
METASPACE = "\u2581"
_BYTE_TOKEN = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


@lru_cache(maxsize=1)
def byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet: printable char -> byte (inverse of bytes_to_unicode)."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


def _bytes_text(data: bytes) -> str:
    return data.decode("utf-8", errors="surrogateescape")


def token_bytes(token: str, kind: str) -> bytes | None:
    """Bytes a token contributes to the text (metaspace: ``▁`` = space), None if unknown."""
    if kind == "bytelevel":
        table = byte_decoder()
        if all(c in table for c in token):
            return bytes(table[c] for c in token)
        return None
    if kind == "metaspace":
        m = _BYTE_TOKEN.match(token)
        if m:
            return bytes([int(m.group(1), 16)])
        return token.replace(METASPACE, " ").encode("utf-8", "surrogatepass")
    if kind == "plain":
        return token.encode("utf-8", "surrogatepass")
    return None


def _guess_kind(token: str) -> str:
    if _BYTE_TOKEN.match(token) or METASPACE in token:
        return "metaspace"
    if token.startswith("##") and len(token) > 2:
        return "wordpiece"
    table = byte_decoder()
    if token and all(c in table for c in token):
        if any(ord(c) >= 256 for c in token):
            return "bytelevel"
        data = bytes(table[c] for c in token)
        try:
            if data.decode("utf-8") != token:
                return "bytelevel"
        except UnicodeDecodeError:
            pass
    return "plain"


def normalize_token(token: str, kind: str = "auto") -> str:
    """The text a token string stands for, word-start marker stripped (see module doc).

    ``kind="auto"`` guesses the family from the string alone (``Ġ``-style remapped
    bytes, ``▁``/``<0xNN>``, ``##``); pass the tokenizer's kind (`tokenizer_kind`) to be exact.
    """
    if kind == "auto":
        kind = _guess_kind(token)
    if kind == "wordpiece":
        return token[2:] if token.startswith("##") and len(token) > 2 else token
    data = token_bytes(token, kind)
    text = token if data is None else _bytes_text(data)
    return text[1:] if text.startswith(" ") and kind != "plain" else text


def tokenizer_kind(tokenizer) -> str:
    """Family of a HF fast tokenizer's token strings, read from its backend's decoder."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    decoder = getattr(backend, "decoder", None)
    spec = json.loads(decoder.__getstate__()) if decoder is not None else {}
    text = json.dumps(spec)
    if '"ByteLevel"' in text:
        return "bytelevel"
    if '"WordPiece"' in text:
        return "wordpiece"
    if '"Metaspace"' in text or '"ByteFallback"' in text or METASPACE in text:
        return "metaspace"
    pre = getattr(backend, "pre_tokenizer", None)
    pre_text = pre.__getstate__().decode() if pre is not None else ""
    if "ByteLevel" in pre_text:
        return "bytelevel"
    if "Metaspace" in pre_text:
        return "metaspace"
    return "plain"


_VOCAB: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def special_ids(tokenizer) -> set[int]:
    """Ids of special and added tokens (their strings are kept literally)."""
    ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    decoder = getattr(tokenizer, "added_tokens_decoder", None) or {}
    ids.update(int(i) for i in decoder)
    return ids


def vocab_tokens(tokenizer) -> list[str]:
    """Raw token string of every id in range(len(tokenizer)) ('' for holes in the id space)."""
    n = len(tokenizer)
    toks = tokenizer.convert_ids_to_tokens(list(range(n)))
    return [t if t is not None else "" for t in toks]


def normalized_vocab(tokenizer) -> list[str]:
    """Normalised string of every id in range(len(tokenizer)), cached per tokenizer object.

    Special and added tokens keep their literal content, except byte-fallback tokens
    (``<0xNN>``), which some tokenizers register as added tokens.
    """
    cached = _VOCAB.get(tokenizer) if _weakrefable(tokenizer) else None
    if cached is not None and len(cached) == len(tokenizer):
        return cached
    kind = tokenizer_kind(tokenizer)
    specials = special_ids(tokenizer)
    out = []
    for i, t in enumerate(vocab_tokens(tokenizer)):
        literal = i in specials and not (kind == "metaspace" and _BYTE_TOKEN.match(t))
        out.append(t if literal else normalize_token(t, kind))
    if _weakrefable(tokenizer):
        _VOCAB[tokenizer] = out
    return out


def _weakrefable(obj) -> bool:
    try:
        weakref.ref(obj)
        return True
    except TypeError:
        return False
