"""Large CPU tensors on transparent huge pages (PyTorch's ``THP_MEM_ALLOC_ENABLE``).

A KD step allocates its [tokens x vocabulary] temporaries afresh every time: at 4 x 256 tokens
with Qwen's 151k entries each is 0.6 GB, and the kernel faults it in 4 KB page by 4 KB page, so
such a step spends more time in the kernel than in arithmetic. With ``THP_MEM_ALLOC_ENABLE=1``
PyTorch aligns CPU allocations of 2 MB and more to 2 MB and asks for huge pages
(``madvise(MADV_HUGEPAGE)``): 512 times fewer faults. Measured with
``benchmarks/paper_scale.py`` (1 thread, 2026-11-29): the SFT step 1.44 s -> 0.55 s, ULD's
22.8 s -> 12.3 s (before its row pieces). It changes no value. Kernels with transparent huge
pages off (``/sys/kernel/mm/transparent_hugepage/enabled`` = never) simply ignore the request.

PyTorch reads the variable at its first large CPU allocation, so ``ctkd_bench`` sets it when
imported (the CLI, the benchmarks and the tests all import it before allocating). A value the
user set, e.g. ``THP_MEM_ALLOC_ENABLE=0``, is kept.
"""
import os

ENV = "THP_MEM_ALLOC_ENABLE"


def enable() -> None:
    os.environ.setdefault(ENV, "1")
