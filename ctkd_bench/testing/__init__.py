"""Conformance kit for distillation-method plugins, and its pytest plugin.

The kit runs a method the way the core does (``prepare``, ``setup``, then
``loss`` on collated batches) on toy teacher/student pairs whose tokenizers are
real and different, and reports, per check, what is wrong and how to fix it.
Run it from the command line::

    ctkd-bench check mymethod

from Python::

    from ctkd_bench.testing import check_method
    report = check_method(MyMethod)          # or a registered name: check_method("mymethod")
    print(report.format()); report.assert_ok()

or from pytest, as a plugin::

    pytest_plugins = ["ctkd_bench.testing"]

    def test_conformance(ctkd_check):
        ctkd_check(MyMethod)                  # fails the test with the report

    @pytest.mark.parametrize("case", conformance_cases(MyMethod), ids=str)
    def test_each_check(case):               # one test item per check
        case.run()

Step-time overheads measured by ``ctkd_check`` are printed in pytest's
terminal summary. (PYTEST_DONT_REWRITE: the kit writes its own failure messages,
and test modules import it before pytest would rewrite it.)
"""
from __future__ import annotations

from .harness import GENERATION_KEY, Harness, families
from .results import CheckResult, ConformanceError, ConformanceReport
from .runner import CHECKS, ConformanceCase, check_method, conformance_cases

__all__ = ["CHECKS", "GENERATION_KEY", "CheckResult", "ConformanceCase", "ConformanceError",
           "ConformanceReport", "Harness", "check_method", "conformance_cases", "families"]

_OVERHEADS: list[str] = []  # "method [family]: message", for the terminal summary

try:
    import pytest
except ImportError:  # pragma: no cover - the kit works without pytest
    pytest = None

if pytest is not None:
    @pytest.fixture
    def ctkd_check():
        """``ctkd_check(method, **options) -> ConformanceReport``; fails the test on any failed check.

        Options are those of `check_method` (config, tracks, only, seed, overhead).
        """
        def run(method, **options) -> ConformanceReport:
            report = check_method(method, **options)
            _OVERHEADS.extend(f"{report.method} [{r.family}]: {r.message}"
                              for r in report.by_check("overhead") if r.status == "info")
            report.assert_ok()
            return report
        return run

    @pytest.fixture(scope="session")
    def toy_causal_pair():
        """The kit's causal toy pair (byte-level BPE teacher, Unigram student)."""
        from ..toy import toy_pair
        return toy_pair("instruct")

    @pytest.fixture(scope="session")
    def toy_encoder_pair():
        """The kit's encoder toy pair (Unigram teacher, WordPiece student)."""
        from ..toy import toy_pair
        return toy_pair("embed")

    def pytest_terminal_summary(terminalreporter):
        if _OVERHEADS:
            terminalreporter.write_sep("-", "ctkd-bench step-time overhead vs SFT (not asserted)")
            for line in _OVERHEADS:
                terminalreporter.write_line(line)
