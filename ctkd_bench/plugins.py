"""Plugin manager: entry-point discovery, selection, and validated registries.

Built-in methods and third-party ones both arrive through the ``ctkd_bench``
entry-point group. ``CTKD_LOAD_PLUGINS`` (comma list of entry-point or
distribution names; empty string = none) restricts what is loaded,
``CTKD_DISABLED_PLUGINS`` removes names from it.
"""
from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import pluggy

from . import hookspecs
from .defaults import API_VERSION, CATEGORIES, ENTRY_POINT_GROUP, ALL_TRACKS
from .errors import PluginError

BUILTIN_DISTRIBUTION = "ctkd-bench"
SCHEME_RE = re.compile(r"^[a-z][a-z0-9-]*$")


@dataclass(frozen=True)
class PluginInfo:
    name: str  # entry-point name
    distribution: str
    version: str
    module: str


@dataclass(frozen=True)
class RegisteredMethod:
    cls: type
    plugin: PluginInfo

    @property
    def name(self) -> str:
        return self.cls.name


def _env_list(var: str) -> set[str] | None:
    raw = os.environ.get(var)
    if raw is None:
        return None
    return {item.strip() for item in raw.split(",") if item.strip()}


def _selected(ep: metadata.EntryPoint, dist_name: str) -> bool:
    wanted = _env_list("CTKD_LOAD_PLUGINS")
    disabled = _env_list("CTKD_DISABLED_PLUGINS") or set()
    names = {ep.name, dist_name}
    if names & disabled:
        return False
    return wanted is None or bool(names & wanted)


def _entry_points():
    seen = set()
    for dist in metadata.distributions():
        dist_name = dist.metadata["Name"] or "?"
        for ep in dist.entry_points:
            if ep.group != ENTRY_POINT_GROUP or (dist_name, ep.name) in seen:
                continue
            seen.add((dist_name, ep.name))
            yield ep, dist_name, dist.version


class PluginManager:
    """A pluggy manager plus the validated method and suite registries."""

    def __init__(self, load_entry_points: bool = True):
        self.pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[object, PluginInfo] = {}
        self._add_builtin_executors()
        self._add_builtin_sources()
        if load_entry_points:
            self._load_entry_points()

    def _add_builtin_executors(self) -> None:
        # core, not optional: registered even when CTKD_LOAD_PLUGINS selects no plugins, and kept
        # out of `self.plugins` so plugin listings and run.json show only entry-point plugins
        from . import __version__
        from .run import executors
        self.pm.register(executors, name="ctkd-bench:executors")
        self._builtin = {executors: PluginInfo("executors", BUILTIN_DISTRIBUTION, __version__, executors.__name__)}

    def _add_builtin_sources(self) -> None:
        # build/local/hf/pip/pip-gguf come through the same hook as a plugin's sources; core, like executors
        from . import __version__
        from .models import builtin_sources
        self.pm.register(builtin_sources, name="ctkd-bench:model-sources")
        self._builtin[builtin_sources] = PluginInfo("model-sources", BUILTIN_DISTRIBUTION, __version__,
                                                    builtin_sources.__name__)

    def _load_entry_points(self) -> None:
        for ep, dist_name, version in sorted(_entry_points(), key=lambda t: (t[1], t[0].name)):
            if not _selected(ep, dist_name):
                continue
            try:
                module = ep.load()
            except Exception as exc:  # a broken plugin must not take the tool down
                print(f"ctkd-bench: warning: plugin {ep.name!r} from {dist_name} failed to load: {exc}",
                      file=sys.stderr)
                continue
            self.add(module, PluginInfo(ep.name, dist_name, version, ep.value))

    def add(self, module: object, info: PluginInfo | None = None) -> None:
        """Register a plugin object directly (used by tests and by entry-point loading)."""
        info = info or PluginInfo(getattr(module, "__name__", repr(module)), "<direct>", "0", "")
        if self.pm.is_registered(module):
            return
        self.pm.register(module, name=f"{info.distribution}:{info.name}")
        self.plugins[module] = info

    def _info_for(self, plugin: object) -> PluginInfo:
        return self.plugins.get(plugin) or self._builtin.get(plugin) or PluginInfo(repr(plugin), "<direct>", "0", "")

    def _collect(self, hook_name: str, what: str, entry) -> dict:
        """Call every implementation of a ``register``-style hook; ``entry(info, *args)`` validates one
        registration and returns ``(key, value)``; a key registered twice names both distributions."""
        found: dict = {}
        owners: dict = {}
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            info = self._info_for(impl.plugin)

            def register(*args, _info=info):
                key, value = entry(_info, *args)
                if key in found:
                    other = owners[key]
                    raise PluginError(f"{what} {key!r} is registered twice: by {other.distribution} "
                                      f"({other.module}) and by {_info.distribution} ({_info.module})")
                found[key], owners[key] = value, _info
            impl.function(register=register)
        return dict(sorted(found.items()))

    @lru_cache(maxsize=None)
    def methods(self) -> dict[str, RegisteredMethod]:
        def entry(info, cls):
            validate_method_class(cls, info)
            return cls.name.lower(), RegisteredMethod(cls, info)
        return self._collect("ctkd_register_methods", "method name", entry)

    @lru_cache(maxsize=None)
    def suites(self) -> dict[str, tuple[Path, PluginInfo]]:
        def entry(info, path):
            return Path(path).stem, (Path(path), info)
        return self._collect("ctkd_register_suites", "suite", entry)

    @lru_cache(maxsize=None)
    def executors(self) -> dict[str, tuple[type, PluginInfo]]:
        def entry(info, cls):
            name = getattr(cls, "name", "")
            if not isinstance(cls, type) or not name or not callable(getattr(cls, "map", None)):
                raise PluginError(f"executor from {info.distribution} ({info.module}): register() takes "
                                  f"an Executor subclass with a name, got {cls!r}")
            return name, (cls, info)
        return self._collect("ctkd_register_executors", "executor name", entry)

    def executor(self, name: str) -> type:
        from .errors import UsageError
        from .util import did_you_mean
        executors = self.executors()
        if name not in executors:
            raise UsageError(f"--executor: unknown executor {name!r}{did_you_mean(name, executors)}; "
                             f"known: {', '.join(executors)}")
        return executors[name][0]

    @lru_cache(maxsize=None)
    def model_sources(self) -> dict[str, tuple[object, PluginInfo]]:
        """``{scheme: (resolver, plugin)}`` from every ``ctkd_register_model_sources``."""
        def entry(info, scheme, resolver):
            if not isinstance(scheme, str) or not SCHEME_RE.match(scheme) or not callable(resolver):
                raise PluginError(f"model source from {info.distribution} ({info.module}): register() "
                                  f"takes a scheme (lower-case letters, digits, '-') and a callable, "
                                  f"got {scheme!r}, {resolver!r}")
            return scheme, (resolver, info)
        return self._collect("ctkd_register_model_sources", "model source", entry)

    def register_commands(self, cli) -> None:
        self.pm.hook.ctkd_register_commands(cli=cli)

    def method(self, name: str) -> RegisteredMethod:
        from .errors import UsageError
        from .util import did_you_mean
        methods = self.methods()
        key = name.lower()
        key = ALIASES.get(key, key)
        if key not in methods:
            raise UsageError(f"unknown method {name!r}{did_you_mean(name, methods)}")
        return methods[key]


# CDM is called "CMD" in the survey table.
ALIASES = {"cmd": "cdm"}

REQUIRED_ATTRIBUTES = ("name", "category", "summary", "paper", "tracks", "needs", "Config", "loss")


def validate_method_class(cls, info: PluginInfo) -> None:
    where = f"method from {info.distribution} ({info.module})"
    if not isinstance(cls, type):
        raise PluginError(f"{where}: register() takes a Method class, got {cls!r}")
    for attr in REQUIRED_ATTRIBUTES:
        if not hasattr(cls, attr):
            raise PluginError(f"{where}: {cls.__name__} lacks required attribute {attr!r}")
    name = cls.name
    if not isinstance(name, str) or not name or not name.replace("-", "").replace("_", "").isalnum():
        raise PluginError(f"{where}: name {name!r} must be a non-empty identifier (letters, digits, - and _)")
    api = getattr(cls, "api_version", None)
    if api != API_VERSION:
        raise PluginError(f"{where}: method {name!r} targets API version {api}, this ctkd-bench "
                          f"speaks version {API_VERSION}")
    if cls.category not in CATEGORIES:
        raise PluginError(f"{where}: method {name!r} has category {cls.category!r}; "
                          f"expected one of {', '.join(CATEGORIES)}")
    unknown = set(cls.tracks) - set(ALL_TRACKS)
    if unknown or not cls.tracks:
        raise PluginError(f"{where}: method {name!r} declares unknown or no tracks {sorted(unknown)}")


@lru_cache(maxsize=None)
def get_plugin_manager() -> PluginManager:
    return PluginManager()


def reset_plugin_manager() -> None:
    """Forget the cached manager (after installing a plugin or changing env vars)."""
    get_plugin_manager.cache_clear()
    metadata_cache_clear = getattr(metadata, "_cache_clear", None)
    if metadata_cache_clear:
        metadata_cache_clear()
