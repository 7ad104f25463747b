"""Small methods, good and deliberately broken, that the conformance kit's tests run.

Each broken one breaks exactly one rule, so a test can assert which check
catches it and that the failure says how to fix it.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from ctkd_bench import Method, Needs, Paper


class Good(Method):
    name = "kit-good"
    category = "baseline"
    summary = "CE plus a response-masked hidden-state match through a projector."
    paper = Paper(title="test")
    tracks = ("instruct", "embed")
    needs = Needs(hidden_states=(-1,), student_hidden_states=True)

    @dataclass(frozen=True)
    class Config:
        weight: float = 0.1

    def setup(self, ctx):
        return torch.nn.Linear(ctx.student_dims.hidden_size, ctx.teacher_dims.hidden_size)

    def loss(self, batch, student, teacher):
        # mean-pooled real-token states of both sides, compared per row
        s_mask = batch.student.attention_mask.unsqueeze(-1).float()
        t_mask = batch.teacher.attention_mask.unsqueeze(-1).float()
        s_pool = (student.hidden_states[-1] * s_mask).sum(1) / s_mask.sum(1).clamp(min=1)
        t_pool = (teacher.hidden_states[-1] * t_mask).sum(1) / t_mask.sum(1).clamp(min=1)
        match = (self.modules(s_pool) - t_pool).pow(2).mean()
        return {"loss": student.ce + self.config.weight * match, "ce": student.ce, "match": match}


class WithViews(Method):
    """Needs generations; its view puts the generation in the prompt (checks the plumbing)."""
    name = "kit-views"
    category = "reasoning alignment"
    summary = "CE on the plain and on a generation-conditioned view."
    paper = Paper(title="test")
    tracks = ("instruct",)
    needs = Needs(generations=True, token_logprobs=True)
    seen_examples: list = []
    views = {"gen": lambda ex: (WithViews.seen_examples.append(ex) or ex["prompt"] + " Hint:" + ex["generation"],
                                ex["response"])}

    def loss(self, batch, student, teacher):
        assert len(teacher.generations) == len(batch)
        assert teacher.views["gen"].token_logprobs.shape == batch.views["gen"].teacher.input_ids.shape
        return {"loss": student.ce + student.views["gen"].ce}


def _variant(name: str, **attrs) -> type:
    return type(name, (Good,), {"name": f"kit-{name.lower()}", **attrs})


def _loss_with(fn):
    def loss(self, batch, student, teacher):
        out = Good.loss(self, batch, student, teacher)
        return fn(self, out, batch, student, teacher)
    return loss


class NoDefault(Good):
    name = "kit-nodefault"

    @dataclass(frozen=True)
    class Config:
        weight: float


BadCategory = _variant("BadCategory", category="distillation")
SetupReturnsDict = _variant("SetupReturnsDict", setup=lambda self, ctx: {"proj": torch.nn.Linear(2, 2)})
AliasesTeacher = _variant("AliasesTeacher", needs=Needs(lm_head=True), setup=lambda self, ctx: torch.nn.ParameterDict(
    {"head": torch.nn.Parameter(ctx.teacher_lm_head)}), loss=lambda self, b, s, t: {"loss": s.ce})
UnusedModule = _variant("UnusedModule", loss=lambda self, b, s, t: {"loss": s.ce})
VectorLoss = _variant("VectorLoss", loss=_loss_with(lambda self, out, b, s, t: {**out, "loss": out["loss"].repeat(len(b))}))
Detached = _variant("Detached", loss=_loss_with(lambda self, out, b, s, t: {**out, "loss": out["loss"].detach()}))
Undeclared = _variant("Undeclared", loss=_loss_with(
    lambda self, out, b, s, t: {**out, "loss": out["loss"] + 0 * t.topk_logprobs.sum()}))
NoStudentStates = _variant("NoStudentStates", needs=Needs(hidden_states=(-1,)))
InPlace = _variant("InPlace", loss=_loss_with(
    lambda self, out, b, s, t: (t.hidden_states[-1].mul_(2), out)[1]))
PadSensitive = _variant("PadSensitive", loss=_loss_with(
    lambda self, out, b, s, t: {**out, "loss": out["loss"] + s.hidden_states[-1].mean()}))
Nondeterministic = _variant("Nondeterministic", loss=_loss_with(
    lambda self, out, b, s, t: {**out, "loss": out["loss"] * (1 + 1e-3 * random.Random().random())}))


def _nan_without_response_words(self, out, batch, student, teacher):
    # mean over response tokens other than EOS: empty when every response is empty
    labels = batch.student.labels
    words = (labels != -100) & (labels != self._eos)
    per_token = torch.log_softmax(student.logits, -1).amax(-1)
    return {**out, "loss": out["loss"] + 0.01 * per_token[words].mean()}


class NanOnEmpty(Good):
    name = "kit-nanonempty"
    tracks = ("instruct",)
    loss = _loss_with(_nan_without_response_words)

    def prepare(self, ctx):
        self._eos = ctx.student_tokenizer.eos_token_id
