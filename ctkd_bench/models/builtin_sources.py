"""The built-in model sources, registered through ``ctkd_register_model_sources`` like a plugin's.

| scheme | ``path`` (the part after ``scheme:``) | folder |
|---|---|---|
| ``build`` | empty | none: the suite builds (and, for teachers, trains) the model itself |
| ``local`` | a folder | that folder |
| ``hf`` | ``org/name`` or ``org/name@revision`` | ``huggingface_hub.snapshot_download`` (network) |
| ``pip`` | ``<distribution>/<folder in it>`` | the folder inside the installed distribution |
| ``pip-gguf`` | ``<distribution>/<file>.gguf`` | converted once into ``$CTKD_CACHE/models/`` |
"""
from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError, UsageError
from ..hookspecs import hookimpl
from .pip_files import distribution_folder
from .registry import where_of


def resolve_build(spec, cache: Path) -> Path:
    raise UsageError(f"{where_of(spec)}: a 'build' model has no folder; the suite builds it from its arch fields")


def resolve_local(spec, cache: Path) -> Path:
    folder = Path(spec.path).expanduser()
    if not spec.path or not folder.is_dir():
        raise ConfigError(f"{where_of(spec)}.path: folder {spec.path!r} does not exist")
    return folder


def resolve_hf(spec, cache: Path) -> Path:
    repo, _, revision = spec.path.partition("@")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise UsageError(f"{where_of(spec)}: 'hf:{spec.path}' needs huggingface_hub (pip install huggingface_hub)") from None
    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken"]
    if getattr(spec, "trust_remote_code", False):   # code files only when the suite allows running them
        patterns.append("*.py")
    try:
        return Path(snapshot_download(repo, revision=revision or None, allow_patterns=patterns))
    except Exception as exc:   # offline, unknown repo, gated: all end the same way for the user
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise UsageError(f"{where_of(spec)}: cannot download {repo!r} from the Hugging Face hub ({reason}); "
                         f"without network, save the model to a folder and use 'local:<folder>'") from None


def resolve_pip(spec, cache: Path) -> Path:
    return distribution_folder(spec.path, where_of(spec))


def resolve_pip_gguf(spec, cache: Path) -> Path:
    from .gguf import converted_folder
    return converted_folder(spec.path, where_of(spec), cache)


@hookimpl
def ctkd_register_model_sources(register):
    register("build", resolve_build)
    register("local", resolve_local)
    register("hf", resolve_hf)
    register("pip", resolve_pip)
    register("pip-gguf", resolve_pip_gguf)
