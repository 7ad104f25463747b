"""Outcomes of conformance checks and how they are shown to a method author."""
from __future__ import annotations

import json
import os
import traceback
from dataclasses import asdict, dataclass, field

PASS, FAIL, SKIP, INFO = "pass", "fail", "skip", "info"


class CheckFailed(Exception):
    """Raised inside a check: what is wrong and what the author should do about it."""

    def __init__(self, problem: str, fix: str):
        super().__init__(problem)
        self.problem = problem
        self.fix = fix


@dataclass
class CheckResult:
    check: str        # e.g. "loss"
    family: str       # "causal", "encoder" or "-" (family independent)
    status: str       # pass | fail | skip | info
    message: str = ""
    fix: str = ""

    def line(self) -> str:
        text = f"  {self.status.upper():<5} {self.family:<8} {self.check:<20} {self.message}".rstrip()
        if self.fix:
            text += f"\n{'':<17}fix: {self.fix}"
        return text


@dataclass
class ConformanceReport:
    method: str
    origin: str                     # "ctkd-spankl 0.1.0" or "<class ...>"
    results: list[CheckResult] = field(default_factory=list)

    @property
    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if r.status == FAIL]

    @property
    def ok(self) -> bool:
        return not self.failures

    def by_check(self, check: str, family: str | None = None) -> list[CheckResult]:
        return [r for r in self.results if r.check == check and family in (None, r.family)]

    def format(self) -> str:
        counts = {s: sum(r.status == s for r in self.results) for s in (PASS, FAIL, SKIP)}
        lines = [f"ctkd-bench check {self.method} ({self.origin})"]
        lines += [r.line() for r in self.results]
        lines.append(f"  {counts[PASS]} passed, {counts[FAIL]} failed, {counts[SKIP]} skipped")
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {"method": self.method, "origin": self.origin, "ok": self.ok,
                "results": [asdict(r) for r in self.results]}

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2)

    def assert_ok(self) -> None:
        if not self.ok:
            raise ConformanceError(self)


class ConformanceError(AssertionError):
    """A method failed the conformance kit; the message is the full report."""

    def __init__(self, report: ConformanceReport):
        super().__init__("\n" + report.format())
        self.report = report


def explain_exception(exc: BaseException) -> tuple[str, str]:
    """(problem, fix) for an exception raised by a method's code."""
    from ..errors import UndeclaredSignalError

    where = _user_frame(exc)
    text = f"{type(exc).__name__}: {exc}" + (f" (at {where})" if where else "")
    if isinstance(exc, UndeclaredSignalError):
        return text, ("declare every teacher signal loss() reads in the class attribute `needs`, "
                      "e.g. needs = Needs(topk=20, hidden_states=(-1,)); the core computes and caches "
                      "only what is declared")
    if isinstance(exc, NotImplementedError):
        return text, "implement loss(self, batch, student, teacher) returning {'loss': scalar tensor, ...}"
    msg = str(exc)
    if "NoneType" in msg and any(k in msg for k in ("hidden_states", "attentions", "subscriptable")):
        return text, ("student hidden states / attentions are None unless declared: set "
                      "Needs(student_hidden_states=True) / Needs(student_attentions=True)")
    return text, "the method raised on a toy batch; the location above points at the line"


def _user_frame(exc: BaseException) -> str:
    """The innermost traceback frame outside torch and this kit: where the method went wrong."""
    frames = traceback.extract_tb(exc.__traceback__)
    kit = os.path.dirname(__file__)
    for frame in reversed(frames):
        path = frame.filename
        if f"{os.sep}torch{os.sep}" in path or path.startswith(kit):
            continue
        return f"{path}:{frame.lineno} in {frame.name}"
    return ""
