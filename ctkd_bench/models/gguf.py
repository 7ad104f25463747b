"""GGUF files shipped in pip packages, converted once into a safetensors HF folder.

transformers loads a GGUF checkpoint (``from_pretrained(folder, gguf_file=...)``,
dequantised to float32, needs the ``gguf`` package) but refuses to
``save_pretrained`` a GGUF-loaded model, so the conversion rebuilds a fresh
model from the loaded config, loads the state dict into it and saves that,
with the tokenizer the GGUF file carries. The result lives in
``$CTKD_CACHE/models/<name>-<hash of the GGUF bytes>/``, written to a temporary
folder and renamed, so a crash never leaves a half-converted model. From then
on the model is loaded like any local folder (`sources.load_pretrained`).
"""
from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from ..errors import UsageError
from ..util import file_hash, stable_hash
from .pip_files import distribution_file_parts

CONVERT_VERSION = 1     # bump when `convert_gguf` changes: cached folders are rebuilt


def convert_gguf(gguf_file: Path, out: Path) -> None:
    """Write `gguf_file` (a causal LM) as a float32 safetensors folder with its tokenizer into `out`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        import gguf  # noqa: F401  (transformers' GGUF reader)
    except ImportError:
        raise UsageError("reading GGUF files needs the 'gguf' package (pip install gguf, or ctkd-bench[smol])") from None
    gguf_file = Path(gguf_file)
    where = dict(pretrained_model_name_or_path=gguf_file.parent, gguf_file=gguf_file.name)
    tokenizer = AutoTokenizer.from_pretrained(**where)
    if tokenizer.pad_token is None:        # batching needs a pad token; eos is the usual stand-in
        tokenizer.pad_token = tokenizer.eos_token
    loaded = AutoModelForCausalLM.from_pretrained(**where, dtype=torch.float32)
    config = loaded.config
    if getattr(config, "quantization_config", None) is not None:   # the saved weights are plain float32
        del config.quantization_config
    if config.pad_token_id is None:
        config.pad_token_id = tokenizer.pad_token_id
    with torch.device("cpu"):
        fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict(), strict=True)
    fresh.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def _concatenate(parts: list[Path], target: Path) -> Path:
    with target.open("wb") as out:
        for part in parts:
            with part.open("rb") as src:
                shutil.copyfileobj(src, out, length=1 << 20)
    return target


def converted_folder(location: str, where: str, cache: Path) -> Path:
    """The converted folder of ``pip-gguf:<distribution>/<file>``; converts on first use."""
    parts = distribution_file_parts(location, where)
    key = stable_hash({"files": [file_hash(p) for p in parts], "v": CONVERT_VERSION})
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", re.sub(r"\.gguf(\.part\d+)?$", "", parts[0].name))
    folder = Path(cache) / "models" / f"{stem}-{key}"
    if (folder / "config.json").exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        if len(parts) == 1:
            convert_gguf(parts[0], tmp)
        else:
            work = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.gguf."))
            try:
                convert_gguf(_concatenate(parts, work / f"{stem}.gguf"), tmp)
            finally:
                shutil.rmtree(work, ignore_errors=True)
        try:
            tmp.rename(folder)
        except OSError:                    # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder
