"""glibc's malloc thresholds: fixed for the run (freed memory reused, not returned), a user's setting kept."""
import os
import subprocess
import sys

import pytest

from ctkd_bench import _allocator

# bytes of a fresh 1 MB tensor that glibc put in its own mmap (mallinfo2's hblkhd), after the call or not
PROBE = """
import ctypes, os, sys, torch
from ctkd_bench import _allocator
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
done = _allocator.keep_freed_memory() if sys.argv[1] == "keep" else None
before = libc.mallinfo2().hblkhd
x = torch.ones(1 << 18)
print(done, libc.mallinfo2().hblkhd - before, os.environ.get("MALLOC_TRIM_THRESHOLD_"))
"""

GLIBC = sys.platform == "linux" and hasattr(__import__("ctypes").CDLL(None), "mallinfo2")


def probe(arg, **preset):
    env = {k: v for k, v in os.environ.items() if k not in _allocator.ENV and k != "GLIBC_TUNABLES"}
    env.update(preset)
    out = subprocess.run([sys.executable, "-c", PROBE, arg], env=env, capture_output=True, text=True, check=True)
    return out.stdout.split()


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc (mallinfo2) only")
def test_a_megabyte_tensor_comes_from_the_heap_once_set():
    done, mapped, trim = probe("no")
    assert int(mapped) >= 1 << 20 and trim == "None"                  # glibc's default: its own mmap
    done, mapped, trim = probe("keep")
    assert done == "True" and mapped == "0" and trim == str(_allocator.TRIM_THRESHOLD)   # children too


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc (mallinfo2) only")
@pytest.mark.parametrize("preset", [{"MALLOC_TRIM_THRESHOLD_": "131072"}, {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=131072"}])
def test_a_users_malloc_setting_is_kept(preset):
    done, mapped, trim = probe("keep", **preset)
    assert done == "False" and int(mapped) >= 1 << 20
    assert trim == preset.get("MALLOC_TRIM_THRESHOLD_", "None")


def test_the_run_command_sets_them_before_the_cells(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from ctkd_bench.cli.run import command
    calls = []
    monkeypatch.setattr(_allocator, "keep_freed_memory", lambda: calls.append("malloc"))
    monkeypatch.setattr("ctkd_bench.run.runner.Runner.run", lambda self: calls.append("cells"))
    result = CliRunner().invoke(command, ["tiny", "--methods", "sft", "--seeds", "0", "--out",
                                          str(tmp_path / "run"), "--no-report"])
    assert result.exit_code == 0, result.output
    assert calls == ["malloc", "cells"]
