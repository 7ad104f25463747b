"""Make running out of memory an error in the cell that caused it, not the end of the run.

Cells run in the runner's process. When a method's step outgrows the machine, the kernel's
OOM killer ends that process: every cell after it is lost (seen on `smol`, session 5). With
an address-space limit (``RLIMIT_AS``) a bit under what the machine has, the allocation that
would cross it fails instead: torch raises, the cell is recorded as failed with the reason,
its tensors are freed, and the run goes on.

``CTKD_MEMORY_LIMIT_GB`` sets the limit (``0`` turns it off); the default is the machine's RAM
plus swap. Not applied when CUDA is in use: its driver reserves far more address space than
it backs, which such a limit would break.
"""
from __future__ import annotations

import os
import resource
from contextlib import contextmanager

GB = 1 << 30


def machine_memory_bytes(meminfo: str = "/proc/meminfo") -> int | None:
    """RAM + swap in bytes (Linux), else None."""
    try:
        fields = dict(line.split(":", 1) for line in open(meminfo).read().splitlines() if ":" in line)
        return sum(int(fields[k].split()[0]) * 1024 for k in ("MemTotal", "SwapTotal") if k in fields)
    except (OSError, ValueError, KeyError):
        return None


def limit_memory(workers: int = 1, environ=os.environ) -> int | None:
    """Cap this process's address space (its share of the machine for `workers` processes).

    Returns the limit in bytes, or None when none was set (turned off, CUDA, unknown machine).
    """
    text = environ.get("CTKD_MEMORY_LIMIT_GB", "").strip()
    if text in ("0", "off"):
        return None
    if _cuda_in_use():
        return None
    total = float(text) * GB if text else machine_memory_bytes()
    if not total:
        return None
    limit = int(total / max(1, workers))
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    if soft != resource.RLIM_INFINITY and soft <= limit:
        return soft                       # someone set a tighter one already: keep it
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    return limit


def _cuda_in_use() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except Exception:  # torch missing or broken: no CUDA to protect
        return False


@contextmanager
def limited_memory(workers: int = 1, environ=os.environ):
    """`limit_memory` for the duration of a block, then the previous limit again (so that an
    in-process caller, e.g. a test running the CLI, and its later children are not left capped)."""
    before = resource.getrlimit(resource.RLIMIT_AS)
    limit_memory(workers, environ)
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, before)
