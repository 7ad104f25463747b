"""Shared fixtures: one synthetic run directory and its rendered report per test session."""
from __future__ import annotations

import pytest

from ctkd_bench.report.render import render_report
from ctkd_bench.results.synthetic import write_synthetic_run


@pytest.fixture(scope="session")
def synthetic_run(tmp_path_factory):
    return write_synthetic_run(tmp_path_factory.mktemp("run") / "tiny-run")


@pytest.fixture(scope="session")
def rendered(synthetic_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return render_report([synthetic_run], out)
