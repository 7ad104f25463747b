"""Shared fixtures for the scale-out tests: one teacher cache and one in-process reference run."""
import os
from contextlib import contextmanager
from pathlib import Path

import pytest

from scaleout_helpers import records, run


@contextmanager
def cache_env(path: Path):
    old = os.environ.get("CTKD_CACHE")
    os.environ["CTKD_CACHE"] = str(path)
    try:
        yield path
    finally:
        if old is None:
            os.environ.pop("CTKD_CACHE", None)
        else:
            os.environ["CTKD_CACHE"] = old


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    """One $CTKD_CACHE for all scale-out tests: the tiny embed teacher trains once."""
    return tmp_path_factory.mktemp("scaleout-cache")


@pytest.fixture(scope="module", autouse=True)
def cache(cache_dir):
    with cache_env(cache_dir):
        yield cache_dir


@pytest.fixture(scope="session")
def baseline(cache_dir, tmp_path_factory):
    """The default path: every cell in this process."""
    out = tmp_path_factory.mktemp("local") / "run"
    with cache_env(cache_dir):
        runner = run(out)
    assert runner.counts["ok"] == 4, runner.counts
    return records(out)
