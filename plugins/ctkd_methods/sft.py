"""SFT: the student trained on the task data alone (no teacher). The reference row.

Loss: the mean next-token cross-entropy over response tokens (causal tracks) or
the mean class cross-entropy (encoder track) — exactly `StudentOutputs.ce`.
"""
from __future__ import annotations

from dataclasses import dataclass

from ctkd_bench import Method, Needs, Paper, hookimpl


class SFT(Method):
    name = "sft"
    category = "baseline"
    summary = "Supervised fine-tuning of the student on the task data, no teacher: the reference every method must beat."
    paper = Paper(title="Supervised fine-tuning baseline (no distillation)", url="", venue="")
    tracks = ("lm", "math", "instruct", "embed")
    needs = Needs()

    @dataclass(frozen=True)
    class Config:
        pass

    def loss(self, batch, student, teacher):
        return {"loss": student.ce, "ce": student.ce}


@hookimpl
def ctkd_register_methods(register):
    register(SFT)
