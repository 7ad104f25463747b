"""`check_method`: run every conformance check on each track family a method declares."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ..plugins import PluginInfo, get_plugin_manager
from . import contract, robustness
from .harness import Harness, families
from .results import FAIL, INFO, PASS, SKIP, CheckFailed, CheckResult, ConformanceReport, explain_exception

CAUSAL_EDGES, ENCODER_EDGES = robustness.CAUSAL_EDGES, robustness.ENCODER_EDGES
# name -> what it asserts (shown by `ctkd-bench check --list` and in the docs)
CHECKS = {
    "registration": "class attributes valid: name, category, summary, paper, tracks, needs, Config, views",
    "setup": "prepare(ctx) and setup(ctx) run; extra modules are trainable and alias neither model",
    "loss": "loss() returns a dict of finite 0-dim tensors with a 'loss' that has grad",
    "gradients": "gradients reach the student and every extra-module parameter; all finite",
    "teacher": "no gradient or in-place write reaches the teacher, its signals, the batch or student weights",
    "needs": "loss() reads only declared teacher signals (declared-but-unread ones are reported)",
    "padding_left": "a left-padded batch gives a finite loss and finite gradients",
    "padding_invariance": "moving padding right -> left and filling it with noise leaves the loss unchanged",
    **{name: f"degenerate batch ({name.replace('_', ' ')}): finite loss and gradients"
       for name in robustness.EDGE_CHECKS},
    "determinism": "two fresh instances under one seed give identical modules, loss and gradients",
    "overhead": "step time vs SFT, measured and reported (never fails)",
}
# Checks a method may exempt itself from, with a reason, via a class attribute
# `conformance_exempt = {"padding_invariance": "official code normalises by padded length"}`.
EXEMPTABLE = {"padding_invariance", "determinism", *CAUSAL_EDGES, *ENCODER_EDGES}


def resolve(method) -> tuple[type, PluginInfo]:
    """A Method class and where it comes from, from a class or a registered name."""
    if isinstance(method, str):
        registered = get_plugin_manager().method(method)
        return registered.cls, registered.plugin
    module = getattr(method, "__module__", "?")
    return method, PluginInfo(getattr(method, "__name__", repr(method)), "<direct>", "0", module)


def make_config(cls, config) -> Any:
    if config is None or isinstance(config, Mapping):
        return cls.make_config(config or {})
    return config


def check_method(method, *, config=None, tracks=None, only=None, seed: int = 0,
                 overhead: bool = True) -> ConformanceReport:
    """Run the conformance kit on `method` (a Method subclass or a registered name).

    config: a Config instance or a mapping of overrides (default: the defaults);
    tracks: limit to these tracks or families ("causal", "encoder"); only: check names.
    """
    cls, info = resolve(method)
    origin = f"{info.distribution} {info.version}" if info.distribution != "<direct>" else f"class {info.module}.{info.name}"
    report = ConformanceReport(getattr(cls, "name", repr(cls)), origin)
    wanted = set(only) if only else set(CHECKS)
    unknown = wanted - set(CHECKS)
    if unknown:
        raise ValueError(f"unknown checks {sorted(unknown)}; known: {', '.join(CHECKS)}")
    if "registration" in wanted:
        report.results.append(_attempt("registration", "-", lambda: contract.check_registration(cls, info)))
    try:
        config = make_config(cls, config)
    except Exception as exc:  # noqa: BLE001
        if report.failures:  # registration already says why (e.g. a Config field without default)
            report.results.append(CheckResult("setup", "-", SKIP, "no config (see registration)"))
        else:
            report.results.append(CheckResult("setup", "-", FAIL, *explain_exception(exc)))
        return report
    exempt = dict(getattr(cls, "conformance_exempt", {}) or {})
    for family, track in families(getattr(cls, "tracks", ()), tracks):
        harness = Harness(cls, config, track, seed)
        try:
            report.results += _run_family(harness, family, wanted, exempt, overhead)
        finally:
            harness.close()
    return report


def _attempt(name: str, family: str, fn) -> CheckResult:
    try:
        return CheckResult(name, family, PASS, fn())
    except CheckFailed as exc:
        return CheckResult(name, family, FAIL, exc.problem, exc.fix)
    except Exception as exc:  # noqa: BLE001 - reported to the author
        return CheckResult(name, family, FAIL, *explain_exception(exc))


def _run_family(h: Harness, family: str, wanted: set, exempt: dict, overhead: bool) -> list[CheckResult]:
    results = []
    built = {}

    def setup():
        built["method"], message = contract.check_setup(h)
        return message

    results.append(_attempt("setup", family, setup))
    method = built.get("method")
    later = [n for n in CHECKS if n not in ("registration", "setup") and n in wanted]
    if method is None:
        return results + [CheckResult(n, family, SKIP, "setup failed") for n in later]
    if wanted & {"loss", "gradients", "teacher", "needs"}:
        results += [r for r in contract.run_main_step(h, method, family) if r.check in wanted]
    edges = robustness.edge_cases(h)
    runners = {
        "padding_left": lambda: robustness.check_padding_left(h, method),
        "padding_invariance": lambda: robustness.check_padding_invariance(h, method),
        **{name: (lambda ex=ex: robustness.check_edge(h, method, ex)) for name, ex in edges.items()},
        "determinism": lambda: robustness.check_determinism(h),
    }
    for name in later:
        if name == "padding_left" and not robustness.left_padding_supported(h):
            results.append(CheckResult(name, family, SKIP, f"the core never left-pads {family} batches"))
        elif name in runners and name in exempt and name in EXEMPTABLE:
            results.append(CheckResult(name, family, SKIP, f"exempted by the method: {exempt[name]}"))
        elif name in runners:
            results.append(_attempt(name, family, runners[name]))
    if overhead and "overhead" in wanted:
        result = _attempt("overhead", family, lambda: robustness.measure_overhead(h, method))
        result.status = INFO if result.status == PASS else SKIP
        results.append(result)
    return results


@dataclasses.dataclass(frozen=True)
class ConformanceCase:
    """One (method, family, check) for pytest parametrisation; see `conformance_cases`."""
    method: Any
    family: str
    track: str
    check: str

    def __str__(self) -> str:
        return self.check if self.family == "-" else f"{self.family}-{self.check}"

    def run(self) -> CheckResult:
        report = _cached_family_report(self.method, self.track)
        results = report.by_check(self.check, None if self.check == "registration" else self.family)
        failed = [r for r in results if r.status == FAIL]
        if failed:
            raise AssertionError("\n" + "\n".join(r.line() for r in failed))
        return results[0] if results else CheckResult(self.check, self.family, SKIP, "not run")


_REPORTS: dict = {}


def _cached_family_report(method, track) -> ConformanceReport:
    key = (method, track)
    if key not in _REPORTS:
        _REPORTS[key] = check_method(method, tracks=[track], overhead=False)
    return _REPORTS[key]


def conformance_cases(method) -> list[ConformanceCase]:
    """Every (family, check) of `method` as separate cases (the kit runs once per family)."""
    cls, _ = resolve(method)
    cases = [ConformanceCase(method, "-", "", "registration")]  # track "": no family runs
    for family, track in families(cls.tracks):
        edges = CAUSAL_EDGES if family == "causal" else ENCODER_EDGES
        for check in CHECKS:
            if check in ("registration", "overhead") or (check in robustness.EDGE_CHECKS and check not in edges):
                continue
            cases.append(ConformanceCase(method, family, track, check))
    return cases
