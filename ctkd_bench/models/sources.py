"""Resolve tokenizer and model specs to loaded objects.

Sources: ``build`` (trained/initialised locally and cached by content hash),
``local`` (a folder), ``hf`` (a hub id; needs network). Models are always
loaded through ``from_pretrained(folder)`` with safetensors and with remote
code off unless the suite's model spec sets ``trust_remote_code``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..errors import ConfigError
from ..specs import ModelSpec, TokenizerSpec
from ..util import stable_hash
from .build import ArchSpec, build_model
from .tokenizers import train_tokenizer


def tokenizer_hash(tokenizer) -> str:
    """Content hash of a tokenizer: its full serialised vocabulary and pipeline."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    blob = backend.to_str() if backend is not None else sorted(tokenizer.get_vocab().items())
    return stable_hash(blob)


def load_tokenizer(spec: TokenizerSpec, cache: Path, corpus: Callable[[], list[str]]):
    from transformers import AutoTokenizer

    if spec.source == "build":
        texts = corpus()
        key = stable_hash({"spec": spec.__dict__, "corpus": stable_hash(texts)})
        folder = cache / "tokenizers" / f"{spec.name}-{key}"
        if (folder / "tokenizer.json").exists():
            return AutoTokenizer.from_pretrained(folder)
        tmp = folder.with_name(folder.name + ".tmp")
        train_tokenizer(spec.family, texts, spec.vocab_size, tmp)
        if not folder.exists():  # written to a temp folder first: never a half-saved tokenizer
            tmp.replace(folder)
        return AutoTokenizer.from_pretrained(folder)
    if spec.source in ("local", "hf"):
        if spec.source == "local" and not Path(spec.path).is_dir():
            raise ConfigError(f"tokenizers.{spec.name}.path: folder {spec.path!r} does not exist")
        return AutoTokenizer.from_pretrained(spec.path)
    raise ConfigError(f"tokenizers.{spec.name}.source: unsupported source {spec.source!r}")


def arch_spec(spec: ModelSpec, num_labels: int = 0, max_positions: int = 512) -> ArchSpec:
    return ArchSpec(spec.arch, spec.hidden_size, spec.num_layers, spec.num_heads, max_positions, num_labels)


def load_pretrained(folder: Path | str, encoder: bool, trust_remote_code: bool = False, num_labels: int = 0):
    """The one loading path for saved models: safetensors, eager attention, remote code off by default."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    kwargs = dict(use_safetensors=True, trust_remote_code=trust_remote_code, attn_implementation="eager")
    if encoder:
        if num_labels:
            kwargs["num_labels"] = num_labels
        return AutoModelForSequenceClassification.from_pretrained(folder, **kwargs)
    return AutoModelForCausalLM.from_pretrained(folder, **kwargs)


def fresh_student(spec: ModelSpec, tokenizer, seed: int, encoder: bool, num_labels: int = 0,
                  max_positions: int = 512):
    """The student's starting point: seeded init (build) or the pretrained weights (local/hf)."""
    if spec.source == "build":
        return build_model(arch_spec(spec, num_labels, max_positions), tokenizer, seed)
    if spec.source == "local" and not Path(spec.path).is_dir():
        raise ConfigError(f"models.{spec.name}.path: folder {spec.path!r} does not exist")
    return load_pretrained(spec.path, encoder, spec.trust_remote_code, num_labels)
