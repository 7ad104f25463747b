"""The budget meter: what each cell consumed, recorded identically for every method.

Only the core counts. A method sees the meter through `ReadOnlyMeter` (writes
are refused), and the meter refuses to count past the suite's budget, so a
cell that tries to take more steps or examples than the others fails.
"""
from __future__ import annotations

import resource
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from ..errors import CellFailure


class BudgetExceeded(CellFailure):
    """A cell tried to consume more than the suite's budget, or to change what was counted."""


def peak_memory_mb() -> float:
    """Peak resident memory of this process (CPU) or peak allocated memory (CUDA)."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


@dataclass
class BudgetMeter:
    steps: int = 0
    examples: int = 0
    bytes: int = 0
    student_tokens: int = 0
    teacher_tokens: int = 0        # teacher-signal tokens the method read
    generated_tokens: int = 0      # teacher tokens generated in prepare (CoT)
    extra_params: int = 0
    phases: dict[str, float] = field(default_factory=dict)
    peak_mem_mb: float = 0.0
    max_steps: int | None = None       # the budget: None = not enforced
    max_examples: int | None = None

    def count_step(self, batch, reads_teacher: bool) -> None:
        """Count one optimiser step on `batch`; refuse to go past the budget."""
        if self.max_steps is not None and self.steps + 1 > self.max_steps:
            raise BudgetExceeded(f"budget exceeded: step {self.steps + 1} of a {self.max_steps}-step budget")
        self.steps += 1
        self.count_batch(batch, reads_teacher)
        if self.max_examples is not None and self.examples > self.max_examples:
            raise BudgetExceeded(f"budget exceeded: {self.examples} training examples, "
                                 f"the budget allows {self.max_examples}")

    @contextmanager
    def phase(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.phases[name] = self.phases.get(name, 0.0) + time.perf_counter() - start
            self.peak_mem_mb = max(self.peak_mem_mb, peak_memory_mb())

    def count_batch(self, batch, reads_teacher: bool) -> None:
        self.examples += len(batch)
        self.bytes += sum(len(t.encode("utf-8")) for t in batch.texts)
        self.student_tokens += int(batch.student.attention_mask.sum())
        if reads_teacher:
            self.teacher_tokens += int(batch.teacher.attention_mask.sum())
        for view in batch.views.values():
            self.count_batch(view, reads_teacher)
            self.examples -= len(view)  # a view is the same example in another format

    def as_dict(self) -> dict:
        d = {k: getattr(self, k) for k in ("steps", "examples", "bytes", "student_tokens", "teacher_tokens",
                                           "generated_tokens", "extra_params", "peak_mem_mb")}
        for name in ("prepare", "train", "eval"):
            d[f"wall_{name}_s"] = round(self.phases.get(name, 0.0), 3)
        return d


class ReadOnlyMeter:
    """What a method may see of the meter (``ctx.meter``): every count, no way to change one."""

    def __init__(self, meter: BudgetMeter):
        object.__setattr__(self, "_meter", meter)

    def __getattr__(self, name: str):
        if name.startswith("_") or name in ("phase", "count_step", "count_batch"):
            raise AttributeError(f"ctx.meter.{name} is not available to methods (the core meters)")
        value = getattr(self._meter, name)
        return dict(value) if isinstance(value, dict) else value

    def __setattr__(self, name: str, value) -> None:
        raise BudgetExceeded(f"a method tried to set ctx.meter.{name}; the budget meter is read-only "
                             "for methods")

    def __delattr__(self, name: str) -> None:
        raise BudgetExceeded(f"a method tried to delete ctx.meter.{name}; the budget meter is read-only "
                             "for methods")
