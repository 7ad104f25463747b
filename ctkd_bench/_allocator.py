"""Freed heap memory stays in the process (glibc ``malloc`` thresholds), so a training step reuses
the previous step's memory instead of faulting fresh pages in.

glibc hands a block of more than ``M_MMAP_THRESHOLD`` bytes to its own ``mmap`` and gives it back
to the kernel when it is freed; it also trims free memory above ``M_TRIM_THRESHOLD`` off the top
of the heap. Both thresholds start at 128 KB and adapt to the sizes freed, but a step that frees
many differently sized tensors (a KD loss's temporaries, then the backward's gradients) keeps
resetting them, and every large tensor of the next step is faulted in again, 4 KB at a time.
Measured on ``tiny`` (2 threads, 2026-11-30, steps taken in turns): CDM's backward was 3-10 ms
slower than SFT's although its own part of the backward costs about 2 ms; with the thresholds
fixed at 32 MB (glibc's largest mmap threshold on 64-bit) and 1 GB, CDM 73 -> 66 ms a step,
DSKD 62 -> 58 ms, SFT 44 -> 43 ms. It changes no value; the cost is that the process keeps its
peak heap instead of returning it.

``ctkd-bench run`` and the step-cost benchmarks call `keep_freed_memory` before the cells: it
sets the two thresholds in this process (``mallopt``) and in the environment (glibc reads
``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` when a process starts, so cells run in
worker processes get them too). A malloc setting the user made (those variables, or malloc
tunables in ``GLIBC_TUNABLES``) is left alone; so is any C library without ``mallopt``.
"""
from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3          # glibc's mallopt parameter numbers
MMAP_THRESHOLD = 32 << 20                            # glibc refuses more on 64-bit
TRIM_THRESHOLD = 1 << 30
ENV = {"MALLOC_MMAP_THRESHOLD_": MMAP_THRESHOLD, "MALLOC_TRIM_THRESHOLD_": TRIM_THRESHOLD}


def user_set() -> bool:
    """True when the environment already chooses malloc's behaviour."""
    return any(name in os.environ for name in ENV) or "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", "")


def keep_freed_memory() -> bool:
    """Fix glibc's mmap and trim thresholds for this process and its children; True if done."""
    if sys.platform != "linux" or user_set():
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) != 1 or mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) != 1:
        return False                                 # not glibc's malloc (musl's mallopt refuses)
    os.environ.update({name: str(value) for name, value in ENV.items()})
    return True
