"""The equal-budget trainer: identical steps, data order, optimiser and schedule for every method.

A method never touches this loop: it only returns loss terms. The trainer
checks every step's loss (finite scalar with a gradient path), that gradients
reach the student, and that only the optimiser changes the student's weights
(a method updating them itself would train outside the budget).
"""
from __future__ import annotations

import math
from typing import Callable, Iterable, Iterator

import torch

from ..batch import PairBatch, StudentOutputs, TeacherSignals
from ..defaults import GRAD_CLIP, WEIGHT_DECAY
from ..errors import CellFailure
from ..run.faults import checkpoint
from ..specs import BudgetSpec
from .accel import PlainBackend
from .budget import BudgetMeter
from .forward import student_forward


def lr_factor(step: int, total: int, warmup: float, schedule: str) -> float:
    warm = max(1, int(round(warmup * total)))
    if step < warm:
        return (step + 1) / warm
    if schedule == "constant":
        return 1.0
    progress = (step - warm) / max(1, total - warm)
    if schedule == "linear":
        return max(0.0, 1.0 - progress)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(student: torch.nn.Module, extra: torch.nn.Module | None, lr: float,
                   extra_lr: float | None) -> torch.optim.Optimizer:
    groups = [{"params": [p for p in student.parameters() if p.requires_grad], "lr": lr}]
    if extra is not None:
        params = [p for p in extra.parameters() if p.requires_grad]
        if params:
            groups.append({"params": params, "lr": extra_lr or lr})
    for g in groups:
        g["base_lr"] = g["lr"]
    return torch.optim.AdamW(groups, weight_decay=WEIGHT_DECAY, foreach=True)


def forward_student(student, batch: PairBatch, needs, vocab_size: int | None) -> StudentOutputs:
    out = student_forward(student, batch.student, needs, vocab_size, batch.targets)
    for name, view in batch.views.items():
        out.views[name] = student_forward(student, view.student, needs, vocab_size, view.targets)
    return out


def check_loss(terms: dict, step: int) -> torch.Tensor:
    if not isinstance(terms, dict) or "loss" not in terms:
        got = type(terms).__name__ if not isinstance(terms, dict) else f"keys {sorted(map(str, terms))}"
        raise CellFailure(f"method.loss must return a dict with a 'loss' entry (got {got}) at step {step}")
    loss = terms["loss"]
    if not isinstance(loss, torch.Tensor):
        raise CellFailure(f"method.loss returned a {type(loss).__name__} as 'loss', not a 0-dim tensor "
                          f"(step {step})")
    if loss.dim() != 0:
        raise CellFailure(f"method.loss returned a non-scalar total loss (shape {tuple(loss.shape)}) "
                          f"at step {step}")
    if not torch.isfinite(loss):
        raise CellFailure(f"non-finite loss ({loss.item()}) at step {step}")
    if not loss.requires_grad or loss.grad_fn is None:
        raise CellFailure(f"the loss has no gradient path to the student (step {step})")
    return loss


def check_weights_untouched(params: list[torch.Tensor], versions: list[int], step: int) -> None:
    """In-place writes bump a tensor's version; between optimiser steps none may reach the student."""
    if any(p._version != v for p, v in zip(params, versions)):
        raise CellFailure(f"the method changed the student's weights itself at step {step}; only the "
                          "trainer's optimiser may update them (training outside the budget)")


class Trainer:
    """One cell's optimiser and checks; `step` takes one optimiser step on one batch.

    `backend` (train/accel.py) places tensors and takes the step: plain PyTorch by default,
    or accelerate (bf16, DDP/FSDP/DeepSpeed) for the same loop."""

    def __init__(self, student: torch.nn.Module, method, budget: BudgetSpec, meter: BudgetMeter,
                 vocab_size: int | None, extra: torch.nn.Module | None = None,
                 backend: PlainBackend | None = None):
        student.train()
        if extra is not None:
            extra.train()
        opt = make_optimizer(student, extra, budget.lr, method.extra_lr())
        self.backend = backend or PlainBackend()
        self.student, self.extra, self.opt = self.backend.prepare(student, extra, opt)
        self.method, self.budget, self.meter, self.vocab_size = method, budget, meter, vocab_size
        self.params = [p for g in self.opt.param_groups for p in g["params"]]
        self.student_params = list(self.student.parameters())
        self.reads_teacher = bool(method.needs.teacher_signal_kinds())
        # sharding backends (FSDP, ZeRO) rewrite parameter storage themselves: only plain PyTorch is watched
        self.watch_weights = type(self.backend) is PlainBackend
        self.steps_done = 0

    def step(self, batch: PairBatch, teacher: TeacherSignals) -> dict:
        """One optimiser step; returns the logged (scalar) loss terms."""
        step, backend, opt = self.steps_done, self.backend, self.opt
        batch, teacher = backend.to_device(batch, teacher)
        factor = lr_factor(step, self.budget.steps, self.budget.warmup, self.budget.schedule)
        for g in opt.param_groups:
            g["lr"] = g["base_lr"] * factor
        versions = [p._version for p in self.student_params] if self.watch_weights else None
        out = forward_student(self.student, batch, self.method.needs, self.vocab_size)
        terms = self.method.loss(batch, out, teacher)
        loss = check_loss(terms, step)
        opt.zero_grad(set_to_none=True)
        backend.backward(loss)
        if self.watch_weights:
            check_weights_untouched(self.student_params, versions, step)
        if step == 0 and not any(p.grad is not None for p in self.student_params):
            raise CellFailure("no gradient reached the student's parameters")
        norm = backend.clip(self.params, GRAD_CLIP)
        if not torch.isfinite(norm):
            raise CellFailure(f"non-finite gradient norm at step {step}")
        opt.step()
        self.meter.count_step(batch, self.reads_teacher)
        checkpoint("train-step")
        self.steps_done += 1
        return {k: float(v.detach()) for k, v in terms.items() if isinstance(v, torch.Tensor) and v.dim() == 0}

    def finish(self) -> None:
        self.student.eval()


def train(student: torch.nn.Module, method, batches: Iterable[tuple[PairBatch, TeacherSignals]],
          budget: BudgetSpec, meter: BudgetMeter, vocab_size: int | None,
          extra: torch.nn.Module | None = None, progress: Callable[[int, dict], None] | None = None,
          backend: PlainBackend | None = None) -> list[dict]:
    """Run exactly `budget.steps` optimiser steps; return per-step logged loss terms."""
    trainer = Trainer(student, method, budget, meter, vocab_size, extra, backend)
    log = []
    iterator: Iterator = iter(batches)
    for step in range(budget.steps):
        logged = trainer.step(*next(iterator))
        log.append(logged)
        if progress:
            progress(step, logged)
    trainer.finish()
    return log
