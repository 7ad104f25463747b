"""Versions and machine facts a record carries, so a report can say what produced it."""
from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from typing import Any

# Distributions whose versions change results; the method's own one is added per cell.
TRACKED_DISTRIBUTIONS = ("ctkd-bench", "torch", "transformers", "tokenizers", "lm-eval")


def distribution_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def collect_versions(method_distribution: str | None = None) -> dict[str, str]:
    """Versions of the packages that shape a result, plus python and the compute device."""
    names = list(TRACKED_DISTRIBUTIONS)
    if method_distribution and method_distribution not in names:
        names.append(method_distribution)
    versions = {name: distribution_version(name) for name in names}
    versions["python"] = platform.python_version()
    versions["device"] = _device()
    return versions


def machine_info() -> dict[str, Any]:
    """Coarse machine facts (no host name or user: reports get published)."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
    }
    mem = _memory_gb()
    if mem is not None:
        info["memory_gb"] = mem
    info["device"] = _device()
    torch = sys.modules.get("torch")
    if torch is not None:   # timings depend on both: a busy machine with several threads is far slower
        info["torch_threads"] = torch.get_num_threads()
        # float rounding follows the SIMD kernels too: a teacher trained on AVX2 differs from one on AVX512
        info["cpu_capability"] = _cpu_capability(torch)
    if hasattr(os, "getloadavg"):
        info["load_average_1m"] = round(os.getloadavg()[0], 2)
    return info


def _device() -> str:
    """The accelerator torch would use, without importing torch if nobody has yet."""
    torch = sys.modules.get("torch")
    if torch is None:
        try:
            import torch  # noqa: F401  (heavy, but the runner has it loaded already)
        except ImportError:
            return "cpu"
    try:
        if torch.cuda.is_available():
            return f"cuda:{torch.cuda.get_device_name(0)}"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
    except Exception:  # a broken driver must not stop a record from being written
        return "cpu (accelerator query failed)"
    return "cpu"


def _cpu_capability(torch) -> str:
    try:
        return torch.backends.cpu.get_cpu_capability()
    except Exception:   # older or stripped torch builds
        return "unknown"


def _memory_gb() -> float | None:
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None
    return round(pages * size / 2**30, 1)
