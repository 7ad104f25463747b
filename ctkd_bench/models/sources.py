"""Resolve tokenizer and model specs to loaded objects.

Sources: ``build`` (trained/initialised locally and cached by content hash) and
every scheme of the ``ctkd_register_model_sources`` hook (``local``, ``hf``,
``pip``, ``pip-gguf`` built in; see `registry` and `builtin_sources`), which
resolve a spec to a folder; tokenizers also ``realtok`` (a real tokenizer from
a pip package, `ctkd_bench.align.realtok`). Models are always loaded through
``from_pretrained(folder)`` with safetensors only and with remote code off
unless the suite's model spec sets ``trust_remote_code``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..errors import UsageError
from ..specs import ModelSpec, TokenizerSpec
from ..util import stable_hash
from .build import ArchSpec, build_model
from .registry import resolve_folder
from .tokenizers import load_pinned_tokenizer, pinned_tokenizer_file, train_tokenizer


def tokenizer_hash(tokenizer) -> str:
    """Content hash of a tokenizer: its full serialised vocabulary and pipeline."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    blob = backend.to_str() if backend is not None else sorted(tokenizer.get_vocab().items())
    return stable_hash(blob)


def build_tokenizer_key(spec: TokenizerSpec, texts: list[str]) -> str:
    """Cache (and pin) key of a `build` tokenizer: its spec and its training corpus."""
    return stable_hash({"spec": spec.__dict__, "corpus": stable_hash(texts)})


def load_tokenizer(spec: TokenizerSpec, cache: Path, corpus: Callable[[], list[str]]):
    from transformers import AutoTokenizer

    if spec.source == "build":
        texts = corpus()
        key = build_tokenizer_key(spec, texts)
        folder = cache / "tokenizers" / f"{spec.name}-{key}"
        if (folder / "tokenizer.json").exists():
            return AutoTokenizer.from_pretrained(folder)
        tmp = folder.with_name(folder.name + ".tmp")
        pin = pinned_tokenizer_file(spec.name, key)
        if pin is not None:      # shipped: training Unigram/WordPiece is not reproducible across processes
            load_pinned_tokenizer(pin, spec.family, tmp)
        else:
            train_tokenizer(spec.family, texts, spec.vocab_size, tmp)
        if not folder.exists():  # written to a temp folder first: never a half-saved tokenizer
            tmp.replace(folder)
        return AutoTokenizer.from_pretrained(folder)
    if spec.source == "realtok":
        from ..align.realtok import TokenizerUnavailable, real_tokenizer
        try:
            return real_tokenizer(spec.path)
        except (TokenizerUnavailable, ValueError) as exc:
            raise UsageError(f"tokenizers.{spec.name}: {exc}") from None
    return AutoTokenizer.from_pretrained(resolve_folder(spec, cache))


def arch_spec(spec: ModelSpec, num_labels: int = 0, max_positions: int = 512) -> ArchSpec:
    return ArchSpec(spec.arch, spec.hidden_size, spec.num_layers, spec.num_heads, max_positions, num_labels)


def check_safetensors(folder: Path | str) -> None:
    """Refuse folders whose weights are pickles only (loading a pickle can run arbitrary code)."""
    folder = Path(folder)
    if not folder.is_dir() or any(folder.glob("*.safetensors")) or (folder / "model.safetensors.index.json").exists():
        return
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
    if pickles:
        raise UsageError(f"{folder}: only pickle weights ({', '.join(pickles)}); ctkd-bench loads safetensors only "
                         f"(convert once with transformers: from_pretrained(...).save_pretrained(folder, "
                         f"safe_serialization=True))")


def load_pretrained(folder: Path | str, encoder: bool, trust_remote_code: bool = False, num_labels: int = 0):
    """The one loading path for saved models: safetensors, eager attention, remote code off by default."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    check_safetensors(folder)
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
    import torch

    folder = resolve_folder(spec)
    with torch.random.fork_rng(devices=[]):   # a new head (encoder tracks) starts alike for every method
        torch.manual_seed(seed)
        return load_pretrained(folder, encoder, spec.trust_remote_code, num_labels)
