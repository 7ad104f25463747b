"""The appendix: what produced these numbers (suite hashes, cells, versions, plugins, machine)."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from .load import Loaded


@dataclass
class Provenance:
    runs: list[dict[str, Any]]                       # path, suite, suite hash, created_at
    versions: list[tuple[str, str]]                  # name, value(s) over runs and records
    mixed_versions: list[str]                        # names seen with more than one value
    plugins: list[dict[str, str]]                    # name, distribution, version
    machines: list[tuple[str, list[tuple[str, str]]]]  # (where from, key/values), distinct
    cells: list[dict[str, Any]]                      # one row per cell
    diagnostics: dict[str, dict[str, str]] = field(default_factory=dict)  # pair -> key -> text

    @property
    def diagnostic_keys(self) -> list[str]:
        keys: list[str] = []
        for items in self.diagnostics.values():
            keys.extend(k for k in items if k not in keys)
        return keys


def build_provenance(loaded: Loaded) -> Provenance:
    runs = [{"path": str(r.path), "suite": r.info.get("suite", "?"),
             "suite_hash": r.info.get("suite_hash", "?"), "created_at": r.info.get("created_at", "")}
            for r in loaded.runs]
    seen: dict[str, set[str]] = defaultdict(set)
    for info in (r.info for r in loaded.runs):
        for k, v in (info.get("versions") or {}).items():
            seen[k].add(str(v))
    for rec in loaded.records:
        for k, v in rec.versions.items():
            seen[k].add(str(v))
        if rec.distribution:
            seen[rec.distribution].add(str(rec.distribution_version))
    versions = [(k, ", ".join(sorted(v))) for k, v in sorted(seen.items())]
    plugins = _plugins(loaded)
    machines: list[tuple[str, list[tuple[str, str]]]] = []
    sources = [(f"run.json of {r.path}", r.info.get("machine") or {}) for r in loaded.runs]
    sources += [("as recorded by cell records", rec.machine) for rec in loaded.records]
    for source, machine in sources:
        flat = flatten(machine)
        if flat and flat not in [m for _, m in machines]:
            machines.append((source, flat))
    cells = [{"cell_id": r.cell_id, "suite": r.suite, "track": r.track, "pair": r.pair,
              "method": r.method, "seed": r.seed, "status": r.status,
              "run_dir": str(loaded.sources.get(r.cell_id, ""))}
             for r in sorted(loaded.records, key=lambda r: (r.suite, r.track, r.method, r.seed))]
    return Provenance(runs, versions, sorted(k for k, v in seen.items() if len(v) > 1), plugins,
                      machines, cells, _diagnostics(loaded))


def _plugins(loaded: Loaded) -> list[dict[str, str]]:
    found: dict[tuple[str, str, str], dict[str, str]] = {}
    for info in (r.info for r in loaded.runs):
        for p in info.get("plugins") or []:
            if isinstance(p, dict):
                row = {k: str(p.get(k, "")) for k in ("name", "distribution", "version")}
                found[(row["name"], row["distribution"], row["version"])] = row
    return sorted(found.values(), key=lambda p: (p["distribution"], p["name"]))


def _diagnostics(loaded: Loaded) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for info in (r.info for r in loaded.runs):
        for pair, diag in (info.get("pair_diagnostics") or {}).items():
            out.setdefault(str(pair), dict(flatten(diag if isinstance(diag, dict) else {"value": diag})))
    return dict(sorted(out.items()))


def flatten(obj: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested dicts -> (dotted key, short text) pairs; lists and numbers shown compactly."""
    out: list[tuple[str, str]] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, dict) and v:
                out.extend(flatten(v, key))
            else:
                out.append((key, _short(v)))
    elif prefix:
        out.append((prefix, _short(obj)))
    return out


def _short(value: Any, limit: int = 200) -> str:
    if isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, (list, tuple)):
        text = "[" + ", ".join(_short(v, 40) for v in value[:12]) + (", …]" if len(value) > 12 else "]")
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
