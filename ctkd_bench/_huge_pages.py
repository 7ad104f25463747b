"""Large CPU tensors on transparent huge pages (PyTorch's ``THP_MEM_ALLOC_ENABLE``).

A KD step at the papers' vocabularies allocates its [tokens x vocabulary] temporaries afresh
every time: at 4 x 256 tokens with Qwen's 151k entries each is 0.6 GB, and the kernel faults it
in 4 KB page by 4 KB page, so such a step spends more time in the kernel than in arithmetic.
With ``THP_MEM_ALLOC_ENABLE=1`` PyTorch aligns CPU allocations of 2 MB and more to 2 MB and asks
for huge pages (``madvise(MADV_HUGEPAGE)``): 512 times fewer faults. Measured with
``benchmarks/paper_scale.py`` (1 thread, 2026-11-29): the SFT step 1.44 s -> 0.55 s, ULD's
22.8 s -> 12.3 s (before its row pieces). It changes no value.

``ctkd-bench run`` turns it on for suites with pretrained models (`wanted`), whose vocabularies
are tens of thousands of entries, and `benchmarks/paper_scale.py` for its runs. Not for suites
whose models the suite builds (``tiny``): there the tensors are a few MB, a huge page is zeroed
whole on first touch, and it made the SFT step faster (69 -> 58 ms, 1 thread) but no method's
step (CDM 93.5 vs 93.9 ms) -- no gain for a benchmark run, and it would shift the step-cost
ratios. A value the user set, e.g. ``THP_MEM_ALLOC_ENABLE=0`` or ``=1``, is always kept.
PyTorch reads the variable at its first large CPU allocation, so it must be set before any model
or tensor of 2 MB is made. Kernels with transparent huge pages off ignore the request.
"""
import os

ENV = "THP_MEM_ALLOC_ENABLE"


def wanted(suite) -> bool:
    """True when some model of ``suite`` (a `SuiteSpec`) is pretrained, not built by the suite."""
    return any(model.source != "build" for model in suite.models)


def enable() -> None:
    os.environ.setdefault(ENV, "1")
