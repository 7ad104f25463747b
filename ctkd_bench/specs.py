"""Suite specs: YAML files parsed into frozen, validated, hashable objects.

A suite names its tokenizers, models, teacher-student pairs, tracks (task data
+ metrics), the shared training budget and the seeds. A *cell* is one
(suite, track, pair, method, method config, seed); its content hash is its id.
Profiles (e.g. ``test``) are partial overrides merged over the suite.
"""
from __future__ import annotations

import copy
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

import yaml

from .data.sources import TrackData, expand_env, parse_track_data
from .defaults import ALL_TRACKS, ENCODER_TRACKS
from .errors import ConfigError
from .util import did_you_mean, stable_hash

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
SOURCES = ("build", "local", "hf", "pip", "pip-gguf")   # built in; plugins add more (models/registry.py)
PATH_SOURCES = ("local", "hf", "pip", "pip-gguf", "realtok")  # built-in schemes that need a location
BUILD_FAMILIES = ("bpe", "unigram", "wordpiece")   # tokenizers a `build` source trains
BUILD_ARCHS = ("gpt2", "llama", "bert")            # models a `build` source initialises
SCHEDULES = ("cosine", "linear", "constant")
PRECISIONS = ("fp32", "bf16")                      # bf16: mixed precision through accelerate


@dataclass(frozen=True)
class TokenizerSpec:
    name: str
    family: str = "bpe"            # build: bpe | unigram | wordpiece
    vocab_size: int = 1024
    source: str = "build"          # build | local | hf
    path: str = ""


@dataclass(frozen=True)
class TrainSpec:
    """How a `build` teacher is trained (once, cached)."""
    steps: int = 1000
    batch_size: int = 32
    lr: float = 3e-3
    examples: int = 8000           # training examples per track for the teacher


@dataclass(frozen=True)
class ModelSpec:
    name: str
    source: str = "build"
    arch: str = "llama"
    tokenizer: str = ""
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    path: str = ""                 # local folder / hub id
    trust_remote_code: bool = False
    train: TrainSpec | None = None


@dataclass(frozen=True)
class PairSpec:
    name: str
    teacher: str
    student: str


@dataclass(frozen=True)
class TrackSpec:
    name: str
    task: str = ""
    pair: str = ""
    train: int = 1000
    validation: int = 100
    test: int = 200
    primary_metric: str = ""
    max_new_tokens: int = 64
    data: TrackData | None = None  # None: the built-in generator (hub/local data: data/sources.py)
    generator: str = ""            # another generator of the task's examples (data/tasks: GENERATORS)
    stop: str = ""                 # generation stop: "" the task's default, "eos" only EOS, else a string
    steps: int = 0                 # optimiser steps on this track (every method alike); 0: the budget's
    noise: float = 0.0             # share of the student's training answers corrupted by the task (data/tasks)


@dataclass(frozen=True)
class BudgetSpec:
    steps: int = 200
    examples_per_step: int = 16
    max_length: int = 128
    lr: float = 3e-3
    warmup: float = 0.05
    schedule: str = "cosine"
    eval_batch_size: int = 32
    cell_timeout_s: float = 0.0    # wall-clock limit per cell, 0 = none; a limit, not a result: not hashed
    precision: str = "fp32"        # fp32 | bf16; hashed only when not fp32, so older suites keep their ids


@dataclass(frozen=True)
class SuiteSpec:
    name: str
    description: str
    seed: int
    seeds: tuple[int, ...]
    tokenizers: tuple[TokenizerSpec, ...]
    models: tuple[ModelSpec, ...]
    pairs: tuple[PairSpec, ...]
    tracks: tuple[TrackSpec, ...]
    budget: BudgetSpec
    method_configs: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()
    profile: str = ""
    path: str = field(default="", compare=False)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("path")
        d["method_configs"] = {m: dict(kv) for m, kv in self.method_configs}
        for track in d["tracks"]:  # generated tracks hash as before `data` existed
            if track.get("data") is None:
                track.pop("data", None)
            if not track.get("generator"):
                track.pop("generator", None)
            if not track.get("stop"):
                track.pop("stop", None)
            if not track.get("steps"):                 # suites without per-track steps hash as before
                track.pop("steps", None)
            if not track.get("noise"):                 # nor do suites without noisy student labels
                track.pop("noise", None)
        if d["budget"].get("precision") == "fp32":  # suites from before `precision` hash as before
            d["budget"].pop("precision")
        return d

    @property
    def hash(self) -> str:
        d = self.to_dict()
        d["budget"].pop("cell_timeout_s")   # raising a limit must not orphan the finished cells
        return stable_hash(d)

    def budget_for(self, track: str) -> BudgetSpec:
        """The budget every method gets on `track`: the suite's, with the track's own step count."""
        steps = self.track(track).steps
        return replace(self.budget, steps=steps) if steps else self.budget

    def tokenizer(self, name: str) -> TokenizerSpec:
        return {t.name: t for t in self.tokenizers}[name]

    def model(self, name: str) -> ModelSpec:
        return {m.name: m for m in self.models}[name]

    def pair(self, name: str) -> PairSpec:
        return {p.name: p for p in self.pairs}[name]

    def track(self, name: str) -> TrackSpec:
        return {t.name: t for t in self.tracks}[name]

    def method_config(self, method: str) -> dict[str, Any]:
        return dict(dict(self.method_configs).get(method, ()))


@dataclass(frozen=True)
class CellSpec:
    suite: str
    suite_hash: str
    track: str
    pair: str
    method: str
    method_config: tuple[tuple[str, Any], ...]
    seed: int

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["method_config"] = dict(self.method_config)
        return d

    @property
    def id(self) -> str:
        return stable_hash(self.to_dict())


# --------------------------------------------------------------------------- parsing
def _check_keys(data: Mapping, allowed: set[str], where: str, required: set[str] = frozenset()) -> None:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    for key in data:
        if key not in allowed:
            raise ConfigError(f"{where}.{key}: unknown field{did_you_mean(str(key), allowed)}")
    for key in sorted(required):
        if key not in data:
            raise ConfigError(f"{where}.{key}: required field is missing")


def _typed(value: Any, kind: type, where: str, minimum: float | None = None, maximum: float | None = None):
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigError(f"{where}: expected {kind.__name__}, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{where}: must be >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{where}: must be <= {maximum}, got {value!r}")
    return value


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not NAME_RE.match(value) or ".." in value:
        raise ConfigError(f"{where}: {value!r} is not a valid name (letters, digits, '_', '-', '.'; "
                          "no path separators)")
    return value


def _fields(cls, data: Mapping, where: str, name: str | None = None, limits: Mapping = {}) -> dict:
    defaults = cls(name=name) if name is not None else cls()
    allowed = set(cls.__dataclass_fields__) - {"name"}
    _check_keys(data, allowed, where)
    out = {}
    for key, value in data.items():
        default = getattr(defaults, key)
        kind = type(default) if default is not None else str
        lo, hi = limits.get(key, (None, None))
        out[key] = _typed(value, kind, f"{where}.{key}", lo, hi)
    return out


_BUDGET_LIMITS = {"steps": (1, 10_000_000), "examples_per_step": (1, 65536), "max_length": (8, 131072),
                  "lr": (0.0, 10.0), "warmup": (0.0, 1.0), "eval_batch_size": (1, 4096),
                  "cell_timeout_s": (0.0, 10_000_000.0)}
_TRACK_LIMITS = {"train": (1, 10_000_000), "validation": (0, 10_000_000), "test": (1, 10_000_000),
                 "max_new_tokens": (1, 8192), "steps": (0, 10_000_000), "noise": (0.0, 1.0)}
_MODEL_LIMITS = {"hidden_size": (1, 65536), "num_layers": (1, 1024), "num_heads": (1, 1024)}
_TRAIN_LIMITS = {"steps": (1, 10_000_000), "batch_size": (1, 65536), "lr": (0.0, 10.0),
                 "examples": (1, 100_000_000)}


def _parse_model(name: str, data: Mapping, where: str) -> ModelSpec:
    from .models.registry import model_schemes
    data = _apply_from(dict(data), where, model_schemes())
    train = data.pop("train", None)
    values = _fields(ModelSpec, {k: v for k, v in data.items()}, where, name, _MODEL_LIMITS)
    if "path" in values:
        values["path"] = expand_env(values["path"], f"{where}.path")
    _check_source(values, model_schemes(), where)
    if values.get("source", "build") == "build":
        _one_of(values.get("arch", "llama"), BUILD_ARCHS, f"{where}.arch")
    if train is not None:
        values["train"] = TrainSpec(**_fields(TrainSpec, train, f"{where}.train", limits=_TRAIN_LIMITS))
    return ModelSpec(name=name, **values)


def _check_primary_metric(values: dict, where: str) -> None:
    from .evaluate.metrics import TASK_METRICS
    metric, known = values.get("primary_metric", ""), TASK_METRICS[values["task"]]
    if metric and metric not in known:
        raise ConfigError(f"{where}.primary_metric: {metric!r} is not a metric of task {values['task']!r} "
                          f"(known: {', '.join(known)}){did_you_mean(metric, known)}")


def _apply_from(data: dict, where: str, schemes: tuple[str, ...]) -> dict:
    """``from: "<scheme>:<rest>"`` is shorthand for ``source: <scheme>`` + ``path: <rest>``."""
    if "from" not in data:
        return data
    from .models.registry import split_from
    if "source" in data or "path" in data:
        raise ConfigError(f"{where}.from: give either 'from' or 'source'/'path', not both")
    scheme, rest = split_from(data.pop("from"), f"{where}.from")
    if scheme not in schemes:
        raise ConfigError(f"{where}.from: unknown source {scheme!r}{did_you_mean(scheme, schemes)}; "
                          f"known: {', '.join(schemes)}")
    data["source"] = scheme
    if rest:
        data["path"] = rest
    return data


def _check_source(values: dict, schemes: tuple[str, ...], where: str) -> None:
    """A registered scheme; the built-in schemes that name a location need one."""
    source = values.get("source", "build")
    if source not in schemes:
        raise ConfigError(f"{where}.source: {source!r} is not one of {', '.join(schemes)}"
                          f"{did_you_mean(str(source), schemes)}")
    if source in PATH_SOURCES and not values.get("path"):
        raise ConfigError(f"{where}.path: source {source!r} needs a location ('{source}:<...>')")
    if source in ("pip", "pip-gguf") and "/" not in values["path"].strip("/"):
        raise ConfigError(f"{where}.path: expected '<pip distribution>/<path inside it>', got {values['path']!r}")


def _parse_tokenizer(name: str, data: Mapping, where: str) -> TokenizerSpec:
    from .models.registry import tokenizer_schemes
    data = _apply_from(dict(data), where, tokenizer_schemes())
    values = _fields(TokenizerSpec, data, where, name, {"vocab_size": (8, 10_000_000)})
    if "path" in values:
        values["path"] = expand_env(values["path"], f"{where}.path")
    _check_source(values, tokenizer_schemes(), where)
    if values.get("source") == "realtok":
        from .align.realtok import FAMILIES
        _one_of(values["path"], FAMILIES, f"{where}.path")
    return TokenizerSpec(name=name, **values)


def _check_generator(values: dict, track_data, where: str) -> None:
    from .data.tasks import GENERATORS
    gen = values["generator"]
    if track_data is not None:
        raise ConfigError(f"{where}.generator: give either 'generator' or 'data', not both")
    _one_of(gen, tuple(GENERATORS), f"{where}.generator")
    if GENERATORS[gen].TRACK != values["task"]:
        raise ConfigError(f"{where}.generator: {gen!r} generates {GENERATORS[gen].TRACK!r} examples, "
                          f"not {values['task']!r}")


def _check_noise(values: dict, track_data, where: str) -> None:
    from .data.tasks import noisy_tasks
    if track_data is not None:
        raise ConfigError(f"{where}.noise: noisy labels are made by the generated tasks, not for 'data' tracks")
    task = values.get("generator") or values["task"]
    if task not in noisy_tasks():
        raise ConfigError(f"{where}.noise: {task!r} cannot corrupt its answers; noise works with "
                          f"{', '.join(noisy_tasks())}")


def _one_of(value: str, choices: tuple[str, ...], where: str) -> str:
    if value not in choices:
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(choices)}{did_you_mean(value, choices)}")
    return value


def _named_section(data: Mapping, key: str, where: str) -> dict:
    section = data.get(key)
    if not isinstance(section, Mapping) or not section:
        raise ConfigError(f"{where}.{key}: expected a non-empty mapping of named entries")
    for name in section:
        _name(name, f"{where}.{key}")
    return dict(section)


SUITE_KEYS = {"name", "description", "seed", "seeds", "tokenizers", "models", "pairs", "tracks", "budget",
              "methods", "profiles"}


def parse_suite(data: Any, where: str = "suite", profile: str | None = None, path: str = "") -> SuiteSpec:
    """Validate a suite mapping (already YAML-loaded) into a `SuiteSpec`."""
    _check_keys(data, SUITE_KEYS, where, required={"name", "tokenizers", "models", "pairs", "tracks"})
    data = copy.deepcopy(dict(data))
    profiles = data.pop("profiles", {}) or {}
    if profile:
        if not isinstance(profiles, Mapping) or profile not in profiles:
            raise ConfigError(f"profile {profile!r} is not defined in suite {data.get('name')!r}"
                              f"{did_you_mean(profile, profiles or {})}")
        data = _merge(data, profiles[profile], f"{where}.profiles.{profile}")
    name = _name(data["name"], f"{where}.name")
    toks = _named_section(data, "tokenizers", where)
    tokenizers = tuple(_parse_tokenizer(n, v or {}, f"{where}.tokenizers.{n}") for n, v in toks.items())
    for t in tokenizers:
        if t.source == "build":
            _one_of(t.family, BUILD_FAMILIES, f"{where}.tokenizers.{t.name}.family")
    models = tuple(_parse_model(n, v or {}, f"{where}.models.{n}")
                   for n, v in _named_section(data, "models", where).items())
    for m in models:
        if m.source == "build" and m.tokenizer not in toks:
            raise ConfigError(f"{where}.models.{m.name}.tokenizer: unknown tokenizer {m.tokenizer!r}"
                              f"{did_you_mean(m.tokenizer, toks)}")
    model_names = {m.name for m in models}
    pairs = []
    for n, v in _named_section(data, "pairs", where).items():
        _check_keys(v, {"teacher", "student"}, f"{where}.pairs.{n}", {"teacher", "student"})
        for role in ("teacher", "student"):
            if v[role] not in model_names:
                raise ConfigError(f"{where}.pairs.{n}.{role}: unknown model {v[role]!r}"
                                  f"{did_you_mean(str(v[role]), model_names)}")
        pairs.append(PairSpec(n, v["teacher"], v["student"]))
    pair_names = {p.name for p in pairs}
    tracks = []
    for n, v in _named_section(data, "tracks", where).items():
        tw = f"{where}.tracks.{n}"
        _check_keys(v, set(TrackSpec.__dataclass_fields__) - {"name"}, tw, {"pair"})
        v = dict(v)
        track_data = parse_track_data(v.pop("data"), f"{tw}.data") if v.get("data") is not None else None
        v.pop("data", None)
        values = _fields(TrackSpec, {"task": n, **v}, tw, n, _TRACK_LIMITS)
        if values["task"] not in ALL_TRACKS:
            raise ConfigError(f"{tw}.task: unknown task {values['task']!r}{did_you_mean(values['task'], ALL_TRACKS)}")
        if values["pair"] not in pair_names:
            raise ConfigError(f"{tw}.pair: unknown pair {values['pair']!r}{did_you_mean(values['pair'], pair_names)}")
        _check_primary_metric(values, tw)
        if values.get("generator"):
            _check_generator(values, track_data, tw)
        if values.get("noise"):
            _check_noise(values, track_data, tw)
        tracks.append(TrackSpec(name=n, **values, data=track_data))
    budget = BudgetSpec(**_fields(BudgetSpec, data.get("budget") or {}, f"{where}.budget", limits=_BUDGET_LIMITS))
    _one_of(budget.schedule, SCHEDULES, f"{where}.budget.schedule")
    _one_of(budget.precision, PRECISIONS, f"{where}.budget.precision")
    seeds = data.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool)
                                                           and s >= 0 for s in seeds):
        raise ConfigError(f"{where}.seeds: expected a non-empty list of non-negative integers, got {seeds!r}")
    methods = data.get("methods") or {}
    _check_keys(methods, set(methods), f"{where}.methods")
    method_configs = []
    for m, cfg in sorted(methods.items()):
        if not isinstance(cfg, Mapping):
            raise ConfigError(f"{where}.methods.{m}: expected a mapping of config fields")
        method_configs.append((_name(m, f"{where}.methods"), tuple(sorted(cfg.items()))))
    description = data.get("description", "")
    if not isinstance(description, str):
        raise ConfigError(f"{where}.description: expected a string")
    return SuiteSpec(name=name, description=description,
                     seed=_typed(data.get("seed", 0), int, f"{where}.seed", 0),
                     seeds=tuple(seeds), tokenizers=tokenizers, models=models, pairs=tuple(pairs),
                     tracks=tuple(tracks), budget=budget, method_configs=tuple(method_configs),
                     profile=profile or "", path=path)


def _merge(base: dict, override: Any, where: str) -> dict:
    if not isinstance(override, Mapping):
        raise ConfigError(f"{where}: expected a mapping")
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value, f"{where}.{key}")
        else:
            out[key] = value
    return out


def load_suite(path: Path, profile: str | None = None) -> SuiteSpec:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read suite file {path}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark else ""
        raise ConfigError(f"{path.name}: not valid YAML{at}: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        raise ConfigError(f"{path.name}: the suite file is empty")
    return parse_suite(data, where=path.stem, profile=profile, path=str(path))


def builtin_suite_dir() -> Path:
    """The repository's suites/ (source checkouts, editable installs) or the wheel's installed copy."""
    import sys
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "suites", Path(sys.prefix) / "share" / "ctkd-bench" / "suites"):
        if candidate.is_dir():
            return candidate
    return here.parent / "suites"


def available_suites() -> dict[str, Path]:
    from .plugins import get_plugin_manager
    found = {p.stem: p for p in sorted(builtin_suite_dir().glob("*.yaml"))}
    for name, (path, _info) in get_plugin_manager().suites().items():
        found.setdefault(name, path)
    return found


def resolve_suite(name_or_path: str, profile: str | None = None) -> SuiteSpec:
    """A suite by registered name or by path to a YAML file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.exists():
            raise ConfigError(f"suite file {name_or_path} does not exist")
        return load_suite(path, profile)
    suites = available_suites()
    if name_or_path not in suites:
        raise ConfigError(f"unknown suite {name_or_path!r}{did_you_mean(name_or_path, suites)}; "
                          f"known: {', '.join(sorted(suites)) or 'none'}")
    return load_suite(suites[name_or_path], profile)


def is_encoder_track(track: TrackSpec) -> bool:
    return track.task in ENCODER_TRACKS
