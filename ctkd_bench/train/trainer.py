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


def train(student: torch.nn.Module, method, batches: Iterable[tuple[PairBatch, TeacherSignals]],
          budget: BudgetSpec, meter: BudgetMeter, vocab_size: int | None,
          extra: torch.nn.Module | None = None, progress: Callable[[int, dict], None] | None = None,
          backend: PlainBackend | None = None) -> list[dict]:
    """Run exactly `budget.steps` optimiser steps; return per-step logged loss terms.

    `backend` (train/accel.py) places tensors and takes the step: plain PyTorch by default,
    or accelerate (bf16, DDP/FSDP/DeepSpeed) for the same loop."""
    student.train()
    if extra is not None:
        extra.train()
    opt = make_optimizer(student, extra, budget.lr, method.extra_lr())
    backend = backend or PlainBackend()
    student, extra, opt = backend.prepare(student, extra, opt)
    params = [p for g in opt.param_groups for p in g["params"]]
    student_params = list(student.parameters())
    reads_teacher = bool(method.needs.teacher_signal_kinds())
    # sharding backends (FSDP, ZeRO) rewrite parameter storage themselves: only plain PyTorch is watched
    watch_weights = type(backend) is PlainBackend
    log = []
    iterator: Iterator = iter(batches)
    for step in range(budget.steps):
        batch, teacher = backend.to_device(*next(iterator))
        factor = lr_factor(step, budget.steps, budget.warmup, budget.schedule)
        for g in opt.param_groups:
            g["lr"] = g["base_lr"] * factor
        versions = [p._version for p in student_params] if watch_weights else None
        out = forward_student(student, batch, method.needs, vocab_size)
        terms = method.loss(batch, out, teacher)
        loss = check_loss(terms, step)
        opt.zero_grad(set_to_none=True)
        backend.backward(loss)
        if watch_weights:
            check_weights_untouched(student_params, versions, step)
        if step == 0 and not any(p.grad is not None for p in student_params):
            raise CellFailure("no gradient reached the student's parameters")
        norm = backend.clip(params, GRAD_CLIP)
        if not torch.isfinite(norm):
            raise CellFailure(f"non-finite gradient norm at step {step}")
        opt.step()
        meter.count_step(batch, reads_teacher)
        checkpoint("train-step")
        logged = {k: float(v.detach()) for k, v in terms.items() if isinstance(v, torch.Tensor) and v.dim() == 0}
        log.append(logged)
        if progress:
            progress(step, logged)
    student.eval()
    return log
