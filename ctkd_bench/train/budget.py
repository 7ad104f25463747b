"""The budget meter: what each cell consumed, recorded identically for every method."""
from __future__ import annotations

import resource
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch


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
