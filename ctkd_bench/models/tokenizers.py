"""Train small tokenizers of real families locally with `tokenizers` (no network).

Families: ``bpe`` (byte-level BPE with ``Ġ``, GPT-2 style), ``unigram``
(SentencePiece-style Unigram with ``▁`` and byte fallback, Llama style) and
``wordpiece`` (lower-casing BERT WordPiece with ``##``). The result is saved as a
HF tokenizer folder and always loaded back through ``AutoTokenizer.from_pretrained``.

The ``tokenizers`` Unigram and WordPiece trainers are not reproducible across
processes (their vocabulary depends on Rust hash-map order, whatever the
thread and hash-seed settings), so a suite can ship *pinned* trained
tokenizers: ``suites/pinned-tokenizers/<name>-<key>.json`` (the raw
``tokenizer.json``), where ``key`` hashes the tokenizer spec and its training
corpus. A pin is used instead of training when its key matches, so every cold
cache builds the same tokenizers and hence the same teachers;
``scripts/pin-tokenizers.py`` writes them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

FAMILIES = ("bpe", "unigram", "wordpiece")

_SPECIALS = {
    "bpe": dict(bos_token="<|bos|>", eos_token="<|endoftext|>", pad_token="<|pad|>", unk_token=None),
    "unigram": dict(bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"),
    "wordpiece": dict(cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]", unk_token="[UNK]",
                      mask_token="[MASK]"),
}


def _bpe(vocab_size: int, texts: Iterable[str]) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    specials = [s for s in _SPECIALS["bpe"].values() if s]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return tok


def _unigram(vocab_size: int, texts: Iterable[str]) -> Tokenizer:
    tok = Tokenizer(models.Unigram(byte_fallback=True))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tok.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace(replacement="▁",
                                                                                  prepend_scheme="first")])
    specials = ["<unk>", "<s>", "</s>", "<pad>"]
    byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=specials + byte_tokens,
                                      unk_token="<unk>", show_progress=False)
    tok.train_from_iterator(texts, trainer)
    # Encoder use adds <s> ... </s>; causal collation encodes without special tokens.
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> $B:1 </s>:1",
        special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))])
    return tok


def _wordpiece(vocab_size: int, texts: Iterable[str]) -> Tokenizer:
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False)
    tok.train_from_iterator(texts, trainer)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return tok


def train_raw_tokenizer(family: str, texts: list[str], vocab_size: int) -> Tokenizer:
    builders = {"bpe": _bpe, "unigram": _unigram, "wordpiece": _wordpiece}
    if family not in builders:
        raise ValueError(f"unknown tokenizer family {family!r}; expected one of {FAMILIES}")
    return builders[family](vocab_size, texts)


def train_tokenizer(family: str, texts: list[str], vocab_size: int, out_dir: Path):
    """Train a tokenizer of `family` on `texts`, save it to `out_dir`, load it back."""
    return save_tokenizer(train_raw_tokenizer(family, texts, vocab_size), family, out_dir)


def pinned_tokenizer_file(name: str, key: str) -> Path | None:
    """The shipped pin for tokenizer `name` trained under `key`, if there is one."""
    from ..specs import builtin_suite_dir

    path = builtin_suite_dir() / "pinned-tokenizers" / f"{name}-{key}.json"
    return path if path.is_file() else None


def load_pinned_tokenizer(path: Path, family: str, out_dir: Path):
    """Install a pinned raw tokenizer as a HF folder, exactly as training would have saved it."""
    return save_tokenizer(Tokenizer.from_file(str(path)), family, out_dir)


def save_tokenizer(raw: Tokenizer, family: str, out_dir: Path):
    """Wrap `raw` as a HF fast tokenizer of `family`, save it to `out_dir`, load it back."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    specials = {k: v for k, v in _SPECIALS[family].items() if v}
    hf = PreTrainedTokenizerFast(tokenizer_object=raw, **specials)
    if family == "wordpiece":
        hf.model_input_names = ["input_ids", "attention_mask"]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    hf.save_pretrained(out_dir)
    return AutoTokenizer.from_pretrained(out_dir)
