"""`ctkd_bench.native`: C kernels compiled per process, with the numpy path whenever they cannot be."""
import ctypes
import logging

import numpy as np
import pytest

from ctkd_bench import native

ADD = r"""
#include <stdint.h>
void add_into(int64_t n, const double *a, double *out) { for (int64_t i = 0; i < n; i++) out[i] += a[i]; }
"""
SIGNATURES = {"add_into": (ctypes.c_int64, native.array(np.float64), native.array(np.float64))}


def needs_compiler():
    if native.compiler() is None:
        pytest.skip("no C compiler here")


def test_a_kernel_compiles_runs_and_is_built_once_per_process():
    needs_compiler()
    lib = native.library("add_into", ADD, SIGNATURES)
    out = np.ones(4)
    lib.add_into(4, np.arange(4.0), out)
    assert out.tolist() == [1.0, 2.0, 3.0, 4.0]
    assert native.library("add_into", ADD, SIGNATURES) is lib


def test_arguments_are_checked_against_the_declared_types():
    needs_compiler()
    lib = native.library("add_into", ADD, SIGNATURES)
    with pytest.raises(ctypes.ArgumentError):
        lib.add_into(4, np.arange(4), np.ones(4))                   # int64, not float64
    with pytest.raises(ctypes.ArgumentError):
        lib.add_into(2, np.arange(4.0)[::2], np.ones(2))            # not contiguous


@pytest.mark.parametrize("value", ["0", "false", "off"])
def test_switched_off_by_the_environment(monkeypatch, value):
    monkeypatch.setenv("CTKD_NATIVE", value)
    assert native.library("add_into", ADD, SIGNATURES) is None


def test_no_compiler_means_no_kernel_and_no_error(monkeypatch):
    monkeypatch.setenv("CC", "/nonexistent/cc")
    source = ADD + "/* not built before: no compiler */\n"
    assert native.compiler() is None
    assert native.library("add_into", source, SIGNATURES) is None


def test_a_compile_error_is_logged_and_gives_no_kernel(caplog):
    needs_compiler()
    with caplog.at_level(logging.WARNING, logger="ctkd_bench.native"):
        assert native.library("broken", "void broken( {", {}) is None
    assert "could not compile broken" in caplog.text and "numpy path" in caplog.text


def test_nothing_compiled_is_left_on_disk(tmp_path, monkeypatch):
    needs_compiler()
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)                 # re-read TMPDIR
    assert native.library("add_into", ADD + "/* fresh */\n", SIGNATURES) is not None
    assert list(tmp_path.iterdir()) == []


def test_the_plugin_guide_example_runs_both_ways(monkeypatch):
    from pathlib import Path
    text = (Path(__file__).parents[2] / "docs" / "plugins.md").read_text(encoding="utf-8")
    section = text.split("### Per-step loops in C")[1]
    code = section.split("```python\n")[1].split("```")[0]
    namespace: dict = {}
    exec(compile(code, "docs/plugins.md", "exec"), namespace)
    for switch in ("1", "0"):
        monkeypatch.setenv("CTKD_NATIVE", switch)
        assert namespace["scale"](np.arange(4.0), 2.5).tolist() == [0.0, 2.5, 5.0, 7.5]
