"""Render a ready-to-install method plugin distribution (``ctkd-bench new-method``).

The templates in ``templates/`` use `string.Template` placeholders: ``${name}`` (the
method name), ``${package}`` (its import package) and ``${cls}`` (its class).
"""
from __future__ import annotations

import re
from pathlib import Path
from string import Template

from ..errors import UsageError

TEMPLATES = Path(__file__).parent / "templates"
NAME_PATTERN = re.compile(r"[a-z][a-z0-9_-]*")
# template file -> path in the distribution ({package} filled in)
LAYOUT = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "init.py.tmpl": "{package}/__init__.py",
    "method.py.tmpl": "{package}/method.py",
    "test_method.py.tmpl": "tests/test_{package}.py",
}


def names_for(name: str) -> dict[str, str]:
    """The template values for method `name`, which must be lower-case letters, digits, - and _."""
    if not NAME_PATTERN.fullmatch(name):
        raise UsageError(f"method name {name!r}: use lower-case letters, digits, '-' and '_', "
                         "starting with a letter (e.g. 'mykd')")
    parts = re.split(r"[-_]", name)
    return {"name": name, "package": "ctkd_" + name.replace("-", "_"),
            "cls": "".join(p[:1].upper() + p[1:] for p in parts if p)}


def render(name: str) -> dict[str, str]:
    """Relative path -> file text of the distribution for method `name`."""
    values = names_for(name)
    return {path.format(**values): Template((TEMPLATES / tmpl).read_text(encoding="utf-8")).substitute(values)
            for tmpl, path in LAYOUT.items()}


def write(name: str, root: Path, force: bool = False) -> Path:
    """Write the distribution into `root`/ctkd-`name`; returns that folder."""
    target = Path(root) / f"ctkd-{name}"
    files = render(name)
    if target.exists() and any(target.iterdir()) and not force:
        raise UsageError(f"{target} exists and is not empty (pass --force to overwrite the scaffold's files)")
    for rel, text in files.items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return target
