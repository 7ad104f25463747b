"""benchmarks/native_kernels.py: every kernel is compared with its fallback on equal outputs."""
import pytest

from ctkd_bench import native


def test_each_kernel_line_reports_equal_outputs(native_kernels, capsys):
    if native.compiler() is None:
        pytest.skip("no C compiler here")
    native_kernels.main(["--batch", "3", "--steps", "6", "--top-k", "5", "--repeat", "2"])
    lines = [line for line in capsys.readouterr().out.splitlines() if "ratio" in line]
    assert len(lines) == 4 and all(line.endswith("equal: True") for line in lines)


def test_without_a_compiler_it_says_so(native_kernels, capsys, monkeypatch):
    monkeypatch.setenv("CTKD_NATIVE", "0")
    native_kernels.main(["--repeat", "1"])
    assert "nothing to compare" in capsys.readouterr().out
