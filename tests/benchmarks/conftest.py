"""The scripts under benchmarks/ are not a package: their tests get them as fixtures, loaded by path."""
import importlib.util
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def step_overhead():
    return _load("step_overhead")


@pytest.fixture(scope="module")
def paper_scale():
    return _load("paper_scale")


@pytest.fixture(scope="module")
def native_kernels():
    return _load("native_kernels")
