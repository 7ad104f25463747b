"""SpanKL: exact-match KL at boundary-aligned predictions (the ctkd-bench example plugin).

Where the student and the teacher predict their next token from the same text prefix
(their next tokens start at the same character), the teacher's top-k next-token
distribution is carried into the student's vocabulary through exact string twins (a
teacher and a student token standing for the same text, e.g. GPT-2 "Ġdog" and Llama
"▁dog"), renormalised over the tokens that have a twin, and the student minimises

    loss = CE + kd_weight * mean over aligned predictions with a twin of KL(q || p_S).

Not a published method: docs/plugins.md builds it step by step. It is the
exact-match part that published methods start from (CDM's exact-match map, MinED's
1-to-1 positions), without their edit-distance or dynamic vocabulary maps.
Limitations, on purpose: teacher mass on tokens without a twin is dropped (q is
renormalised over the rest); where the core truncated the two prompts differently the
"same prefix" holds only within the kept text.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ctkd_bench import Method, Needs, Paper, hookimpl

from .align import aligned_predictions
from .loss import exact_match_kl
from .vocab import exact_match_map


class SpanKL(Method):
    name = "spankl"
    category = "probability-distribution alignment"
    summary = ("KL from the teacher's top-k (mapped through exact string twins) to the student, "
               "where both predict from the same text prefix.")
    paper = Paper(title="SpanKL, the ctkd-bench plugin tutorial's example (unpublished)",
                  venue="docs/plugins.md")
    tracks = ("lm", "math", "instruct")
    needs = Needs(topk=20)

    @dataclass(frozen=True)
    class Config:
        kd_weight: float = 0.5

    def prepare(self, ctx):
        self.twins = exact_match_map(ctx.teacher_tokenizer, ctx.student_tokenizer)

    def loss(self, batch, student, teacher):
        rows, s_pos, t_pos = aligned_predictions(batch.student, batch.teacher)
        student_logprobs = torch.log_softmax(student.logits[rows, s_pos].float(), dim=-1)
        twin_ids = self.twins.to(rows.device)[teacher.topk_ids[rows, t_pos]]
        kl, has_twin = exact_match_kl(student_logprobs, teacher.topk_logprobs[rows, t_pos], twin_ids)
        kd = kl.sum() / has_twin.sum().clamp(min=1)
        return {"loss": student.ce + self.config.kd_weight * kd, "ce": student.ce, "kd": kd}


@hookimpl
def ctkd_register_methods(register):
    register(SpanKL)
