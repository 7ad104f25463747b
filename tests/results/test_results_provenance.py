"""Versions and machine facts recorded with every cell."""
from __future__ import annotations

from ctkd_bench.results import collect_versions, machine_info


def test_versions_name_the_packages_that_shape_a_result_and_the_method_distribution():
    versions = collect_versions("pytest")
    for key in ("ctkd-bench", "torch", "transformers", "lm-eval", "python", "device", "pytest"):
        assert versions[key], key
    assert versions["ctkd-bench"] != "not installed"
    assert collect_versions("no-such-dist-xyz")["no-such-dist-xyz"] == "not installed"


def test_machine_info_is_coarse_and_names_no_host():
    info = machine_info()
    assert info["cpu_count"] >= 1 and info["device"]
    import socket
    host = socket.gethostname()
    assert len(host) < 4 or host not in str(list(info.values()))


def test_machine_info_names_the_threads_and_simd_kernels_that_shape_float_rounding():
    import torch
    info = machine_info()
    assert info["torch_threads"] == torch.get_num_threads()
    assert info["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert isinstance(info["cpu_capability"], str) and info["cpu_capability"]
