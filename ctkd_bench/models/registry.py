"""Model sources by scheme: parse ``from: "<scheme>:<rest>"`` and resolve a spec to a local folder.

Schemes come from the ``ctkd_register_model_sources`` hook (the built-in ones
from `builtin_sources`, through the same door as a plugin's). A resolver only
produces a folder; loading it is `ctkd_bench.models.sources.load_pretrained`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..errors import ConfigError
from ..util import did_you_mean

# Tokenizer-only scheme: a real tokenizer built from a pip package (ctkd_bench/align/realtok.py).
TOKENIZER_ONLY_SCHEMES = ("realtok",)


def _registry() -> dict[str, tuple[Callable, object]]:
    from ..plugins import get_plugin_manager
    return get_plugin_manager().model_sources()


def model_schemes() -> tuple[str, ...]:
    return tuple(_registry())


def tokenizer_schemes() -> tuple[str, ...]:
    return tuple(sorted(set(model_schemes()) | set(TOKENIZER_ONLY_SCHEMES)))


def split_from(value: object, where: str) -> tuple[str, str]:
    """``"hf:Qwen/Qwen1.5-1.8B"`` -> ``("hf", "Qwen/Qwen1.5-1.8B")``; ``"build:"`` -> ``("build", "")``."""
    if not isinstance(value, str) or ":" not in value:
        raise ConfigError(f"{where}: expected '<scheme>:<location>' (e.g. 'hf:org/name', 'local:/folder', "
                          f"'build:'), got {value!r}")
    scheme, _, rest = value.partition(":")
    return scheme.strip(), rest.strip()


def where_of(spec) -> str:
    """``models.<name>`` or ``tokenizers.<name>``: the field prefix of an error about `spec`."""
    from ..specs import TokenizerSpec
    return f"{'tokenizers' if isinstance(spec, TokenizerSpec) else 'models'}.{spec.name}"


def resolve_folder(spec, cache: Path | None = None) -> Path:
    """The local folder of a non-``build`` model or tokenizer spec (``spec.source`` / ``spec.path``)."""
    from ..defaults import cache_root

    registry = _registry()
    if spec.source not in registry:
        raise ConfigError(f"{where_of(spec)}.source: unknown model source {spec.source!r}"
                          f"{did_you_mean(spec.source, registry)}; known: {', '.join(registry)}")
    resolver = registry[spec.source][0]
    return Path(resolver(spec, Path(cache) if cache is not None else cache_root()))
