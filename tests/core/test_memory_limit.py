"""run/memory.py: past the limit an allocation raises in the process (a failed cell), instead of
the kernel's OOM killer ending the whole run; after the failing cell's tensors go, work goes on."""
import json
import subprocess
import sys
import textwrap

import pytest

from ctkd_bench.run.memory import limit_memory, machine_memory_bytes

GROW = textwrap.dedent("""
    import json, os, sys
    vm = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmSize:"))
    os.environ["CTKD_MEMORY_LIMIT_GB"] = str((vm + 1.5 * 2**30) / 2**30)   # 1.5 GB above what it has
    from ctkd_bench.run.memory import limit_memory
    import torch
    limit = limit_memory()
    held, error = [], None
    try:
        for _ in range(16):                       # a cell growing by 256 MB at a time, up to 4 GB
            held.append(torch.ones(64 * 2**20))
    except RuntimeError as exc:
        error = str(exc)
    grown = len(held) * 256
    held.clear()                                  # the failed cell's tensors are freed ...
    after = float(torch.ones(64 * 2**20).sum())   # ... and the next cell can allocate again
    print(json.dumps({"limit": limit, "grown_mb": grown, "error": error, "after": after}))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_growing_past_the_limit_raises_and_the_process_goes_on():
    out = subprocess.run([sys.executable, "-c", GROW], capture_output=True, text=True, check=True,
                         env={"OMP_NUM_THREADS": "1", "PATH": ""})
    result = json.loads(out.stdout)
    assert result["limit"] is not None
    assert result["error"] and "memory" in result["error"].lower()
    assert 256 <= result["grown_mb"] < 4096
    assert result["after"] == 64 * 2**20


def test_turned_off_or_under_cuda_no_limit(monkeypatch):
    assert limit_memory(environ={"CTKD_MEMORY_LIMIT_GB": "0"}) is None
    monkeypatch.setattr("ctkd_bench.run.memory._cuda_in_use", lambda: True)
    assert limit_memory(environ={}) is None


def test_machine_memory_is_ram_plus_swap(tmp_path):
    info = tmp_path / "meminfo"
    info.write_text("MemTotal:       24000000 kB\nMemFree:  1 kB\nSwapTotal:       1000000 kB\n")
    assert machine_memory_bytes(str(info)) == 25000000 * 1024
    assert machine_memory_bytes(str(tmp_path / "missing")) is None


def test_the_cli_restores_the_previous_limit(tmp_path, monkeypatch):
    """`ctkd-bench run` in a process that goes on (tests, notebooks) leaves no limit behind for
    its later children (a browser, say, reserves far more address space than it uses)."""
    import resource

    from click.testing import CliRunner

    from ctkd_bench.cli.run import command
    before = resource.getrlimit(resource.RLIMIT_AS)
    seen = []
    monkeypatch.setattr("ctkd_bench.run.runner.Runner.run",
                        lambda self: seen.append(resource.getrlimit(resource.RLIMIT_AS)))
    result = CliRunner().invoke(command, ["tiny", "--profile", "test", "--methods", "sft", "--out",
                                          str(tmp_path / "run"), "--no-report"])
    assert result.exit_code == 0, result.output
    assert seen and seen[0][0] != before[0]          # capped while the cells ran
    assert resource.getrlimit(resource.RLIMIT_AS) == before
