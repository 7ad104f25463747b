"""Huge pages for large CPU tensors: on for suites of pretrained models, a user's value kept."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ctkd_bench import _huge_pages
from ctkd_bench.specs import resolve_suite

THP_MODE = Path("/sys/kernel/mm/transparent_hugepage/enabled")

# page faults while filling a fresh 64 MB tensor, after `enable()` (or not)
FAULTS = """
import resource, sys, torch
from ctkd_bench import _huge_pages
if sys.argv[1] == "enable":
    _huge_pages.enable()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
x = torch.ones(16 << 20)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def run(args, preset=None) -> str:
    env = {k: v for k, v in os.environ.items() if k != _huge_pages.ENV}
    if preset is not None:
        env[_huge_pages.ENV] = preset
    return subprocess.run([sys.executable, "-c", FAULTS, *args], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_wanted_for_pretrained_models_only():
    assert not _huge_pages.wanted(resolve_suite("tiny"))            # models built by the suite
    assert _huge_pages.wanted(resolve_suite("paper-dskd-qwen-gpt2"))   # hub models


@pytest.mark.parametrize("preset,expected", [(None, "1"), ("0", "0"), ("1", "1")])
def test_enable_keeps_a_user_value(monkeypatch, preset, expected):
    monkeypatch.setenv(_huge_pages.ENV, "unset")     # recorded, so what enable() sets is undone after
    monkeypatch.delenv(_huge_pages.ENV)
    if preset is not None:
        monkeypatch.setenv(_huge_pages.ENV, preset)
    _huge_pages.enable()
    assert os.environ[_huge_pages.ENV] == expected


def test_importing_ctkd_bench_leaves_it_alone():
    probe = "import os, ctkd_bench; print(os.environ.get('THP_MEM_ALLOC_ENABLE'))"
    env = {k: v for k, v in os.environ.items() if k != _huge_pages.ENV}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "None"


@pytest.mark.skipif(not THP_MODE.exists() or "[madvise]" not in THP_MODE.read_text(),
                    reason="needs transparent huge pages in madvise mode (off: no effect; always: on anyway)")
def test_a_large_tensor_takes_far_fewer_page_faults_once_enabled():
    with_thp, without = int(run(["enable"])), int(run(["no"]))
    assert without > 10_000                     # 64 MB in 4 KB pages
    assert with_thp < without / 4
    assert int(run(["enable"], preset="0")) > 10_000    # the user's 0 wins


@pytest.mark.parametrize("suite,expected", [("tiny", None), ("paper-dskd-qwen-gpt2", "1")])
def test_the_run_command_enables_them_before_the_cells_for_pretrained_models(tmp_path, monkeypatch,
                                                                             suite, expected):
    from click.testing import CliRunner

    from ctkd_bench.cli.run import command
    monkeypatch.setenv(_huge_pages.ENV, "unset")     # recorded, so what the command sets is undone after
    monkeypatch.delenv(_huge_pages.ENV)
    seen = []
    monkeypatch.setattr("ctkd_bench.run.runner.Runner.run", lambda self: seen.append(os.environ.get(_huge_pages.ENV)))
    result = CliRunner().invoke(command, [suite, "--methods", "sft", "--seeds", "0", "--out",
                                          str(tmp_path / "run"), "--no-report"])
    assert result.exit_code == 0, result.output
    assert seen == [expected]
