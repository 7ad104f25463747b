"""Importing ctkd_bench asks PyTorch for huge pages on large CPU tensors, unless the user said otherwise."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = "import os, ctkd_bench; print(os.environ.get('THP_MEM_ALLOC_ENABLE'))"
THP_MODE = Path("/sys/kernel/mm/transparent_hugepage/enabled")

# page faults while filling a fresh 64 MB tensor, after importing ctkd_bench
FAULTS = """
import resource, ctkd_bench, torch
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
x = torch.ones(16 << 20)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def run(code: str, preset: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    if preset is not None:
        env["THP_MEM_ALLOC_ENABLE"] = preset
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.mark.parametrize("preset,expected", [(None, "1"), ("0", "0"), ("1", "1")])
def test_import_sets_the_variable_and_keeps_a_user_value(preset, expected):
    assert run(PROBE, preset) == expected


@pytest.mark.skipif(not THP_MODE.exists() or re.search(r"\[never\]", THP_MODE.read_text()) is not None,
                    reason="transparent huge pages are off on this kernel")
def test_a_large_tensor_takes_far_fewer_page_faults():
    with_thp, without = int(run(FAULTS, None)), int(run(FAULTS, "0"))
    assert without > 10_000                     # 64 MB in 4 KB pages
    assert with_thp < without / 4
