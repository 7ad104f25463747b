"""Contract checks: registration fields, prepare/setup, and one training step.

Each ``check_*`` function returns a short success message or raises
`CheckFailed(problem, fix)`; `run_main_step` turns one loss call into the
results of the loss, gradients, teacher and needs checks.
"""
from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping

import torch

from ..errors import PluginError, UndeclaredSignalError
from ..method import Method, Needs, Paper
from ..plugins import PluginInfo, validate_method_class
from .harness import Harness, Step
from .results import FAIL, INFO, PASS, SKIP, CheckFailed, CheckResult, explain_exception

# TeacherSignals field -> the `Needs` kind that provides it
SIGNAL_KIND = {"logits": "logits", "class_logits": "logits", "topk_logprobs": "topk", "topk_ids": "topk",
               "token_logprobs": "token_logprobs", "hidden_states": "hidden_states",
               "attentions": "attentions", "embeddings": "embeddings", "lm_head": "lm_head",
               "generations": "generations"}


def check_registration(cls, info: PluginInfo) -> str:
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise CheckFailed(f"{cls!r} is not a subclass of ctkd_bench.Method",
                          "derive the class from ctkd_bench.Method")
    try:
        validate_method_class(cls, info)
    except PluginError as exc:
        raise CheckFailed(str(exc), "set the class attribute the message names") from None
    if cls.loss is Method.loss:
        raise CheckFailed("loss() is not implemented", "define loss(self, batch, student, teacher)")
    if not isinstance(cls.summary, str) or not cls.summary.strip():
        raise CheckFailed("summary is empty", "set summary = 'One sentence: the idea.'")
    if not isinstance(cls.paper, Paper) or not cls.paper.title:
        raise CheckFailed(f"paper is {cls.paper!r}", "set paper = Paper(title=..., url=..., venue=...)")
    if not isinstance(cls.needs, Needs):
        raise CheckFailed(f"needs is {cls.needs!r}", "set needs = Needs(...) (ctkd_bench.Needs)")
    if not dataclasses.is_dataclass(cls.Config):
        raise CheckFailed("Config is not a dataclass", "decorate it: @dataclass(frozen=True) class Config: ...")
    try:
        cls.make_config({})
    except Exception as exc:  # noqa: BLE001 - shown to the author
        raise CheckFailed(f"Config() fails without arguments: {exc}", "give every Config field a default") from None
    try:
        json.dumps(cls.describe())
    except (TypeError, ValueError) as exc:
        raise CheckFailed(f"describe() is not JSON-serialisable: {exc}",
                          "use plain values (numbers, strings, bools, tuples) as Config defaults") from None
    if not isinstance(cls.views, Mapping) or not all(callable(f) for f in cls.views.values()):
        raise CheckFailed("views must map names to functions example -> (prompt, response)",
                          "views = {'cot': make_cot_view}")
    return f"{cls.category}; tracks {', '.join(cls.tracks)}; needs {', '.join(cls.needs.teacher_signal_kinds()) or '-'}"


def _storages(tensors) -> dict[int, str]:
    return {t.untyped_storage().data_ptr(): name for name, t in tensors if t is not None}


def check_setup(h: Harness):
    """Build the method like the core; returns (method, message)."""
    method = h.new_method()
    modules = method.modules
    parts = ["prepare() and setup() ran"]
    if modules is not None:
        if not isinstance(modules, torch.nn.Module):
            raise CheckFailed(f"setup() returned {type(modules).__name__}",
                              "return a torch.nn.Module (e.g. nn.ModuleDict({...})) or None")
        named = [(n, p) for n, p in modules.named_parameters() if p.requires_grad]
        if not named:
            raise CheckFailed("setup() returned a module without trainable parameters",
                              "return None when the method trains nothing besides the student")
        head = h.pair.head
        teacher = _storages([("teacher embeddings", head.embeddings), ("teacher lm_head", head.lm_head),
                             ("teacher lm bias", head.lm_bias)] + list(h.pair.teacher.named_parameters()))
        student = _storages(h.pair.student.named_parameters())
        for name, p in named:
            ptr = p.untyped_storage().data_ptr()
            if ptr in teacher:
                raise CheckFailed(f"modules.{name} shares memory with the {teacher[ptr]}: training would "
                                  "change the teacher", "copy it: nn.Parameter(ctx.teacher_embeddings.clone())")
            if ptr in student:
                raise CheckFailed(f"modules.{name} is a student parameter ({student[ptr]}); it would be "
                                  "optimised twice", "read live student weights from StudentOutputs "
                                  "(embedding_weight, lm_head_weight) inside loss()")
        parts.append(f"setup() returned {sum(p.numel() for _, p in named)} trainable parameters")
    lr = method.extra_lr()
    if lr is not None and not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise CheckFailed(f"extra_lr() returned {lr!r}", "return None or a positive learning rate")
    return method, "; ".join(parts)


def validate_loss_output(out) -> torch.Tensor:
    """The total loss, after checking the shape of what loss() returned."""
    if not isinstance(out, Mapping):
        raise CheckFailed(f"loss() returned {type(out).__name__}",
                          "return a dict of named scalar tensors with the total under 'loss'")
    if "loss" not in out:
        raise CheckFailed(f"loss() returned keys {sorted(out)} but no 'loss'",
                          "put the total to minimise under the key 'loss'")
    for key, value in out.items():
        if not isinstance(value, torch.Tensor):
            raise CheckFailed(f"term {key!r} is a {type(value).__name__}, not a tensor",
                              "return torch tensors for every term (torch.as_tensor(x))")
        if value.dim() != 0:
            raise CheckFailed(f"term {key!r} has shape {list(value.shape)}; every term must be 0-dim",
                              "reduce over positions and the batch inside loss(), e.g. per_token[mask].mean()")
        if not torch.isfinite(value.detach()).item():
            raise CheckFailed(f"term {key!r} is {value.item()}",
                              "guard empty selections and logs: divide by count.clamp(min=1), use "
                              "log_softmax, mask before reducing, never mean() over zero elements")
    total = out["loss"]
    if not total.is_floating_point() or not total.requires_grad:
        raise CheckFailed("'loss' is not connected to the student (no grad)",
                          "compute it from the student outputs without .detach(), .item() or torch.no_grad()")
    return total


def finite_grads(h: Harness, method) -> None:
    bad = [k for k, p in h.trainable(method).items() if p.grad is not None and not torch.isfinite(p.grad).all()]
    if bad:
        raise CheckFailed(f"non-finite gradients in {', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''}",
                          "look for log(0), sqrt(0), x/0 or softmax over an all -inf row; masked "
                          "positions need finite values before they are multiplied by zero")


def check_gradients(h: Harness, method) -> str:
    finite_grads(h, method)
    params = h.trainable(method)
    student = [k for k, p in params.items() if k.startswith("student.") and p.grad is not None
               and p.grad.abs().sum() > 0]
    if not student:
        raise CheckFailed("no gradient reaches the student", "compute the loss from student.logits / "
                          "hidden_states, not from detached copies")
    extra = [k for k in params if k.startswith("modules.")]
    missing = [k for k in extra if params[k].grad is None]
    if missing:
        raise CheckFailed(f"no gradient reaches {', '.join(missing[:4])}",
                          "every trainable parameter returned by setup() must take part in loss(); "
                          "drop unused modules (they are counted as cost)")
    return f"student: {len(student)} tensors with gradient; extra modules: {len(extra)}"


def _tensors(step: Step, prefix: str = ""):
    """(name, tensor) for every tensor of the batch and the teacher signals, views included."""
    b = step.batch
    for side_name in ("student", "teacher"):
        side = getattr(b, side_name)
        for f in ("input_ids", "attention_mask", "labels", "offsets"):
            value = getattr(side, f)
            if value is not None:
                yield f"{prefix}batch.{side_name}.{f}", value
    if b.targets is not None:
        yield f"{prefix}batch.targets", b.targets
    for name, value in step.teacher._values.items():
        items = value.items() if isinstance(value, dict) else [("", value)]
        for key, t in items:
            if isinstance(t, torch.Tensor):
                yield f"{prefix}teacher.{name}{f'[{key}]' if key != '' else ''}", t
    for view in b.views:
        yield from _tensors(Step(b.views[view], step.student.views[view], step.teacher.views[view]),
                            f"{prefix}views[{view}].")


def snapshot(step: Step) -> dict[str, torch.Tensor]:
    return {name: t.detach().clone() for name, t in _tensors(step)}


def check_teacher(h: Harness, step: Step, before: dict[str, torch.Tensor]) -> str:
    grads = [n for n, p in h.pair.teacher.named_parameters() if p.grad is not None]
    if grads:
        raise CheckFailed(f"gradient reached the teacher ({grads[0]})", "never use the teacher model in loss()")
    for name, t in _tensors(step):
        if t.requires_grad:
            raise CheckFailed(f"{name} requires grad after loss()", "do not call requires_grad_() on "
                              "teacher signals; they are frozen inputs")
        if not torch.equal(t, before[name]):
            raise CheckFailed(f"loss() modified {name} in place (it is shared with the signal cache)",
                              "use out-of-place ops (x = x.masked_fill(...), not x.masked_fill_(...)) "
                              "or clone() first")
    head = h.pair.head
    if any(t is not None and t.requires_grad for t in (head.embeddings, head.lm_head)):
        raise CheckFailed("the teacher's embedding / lm_head copy requires grad",
                          "copy it before training it: nn.Parameter(ctx.teacher_lm_head.clone())")
    if h.student_mutated():
        raise CheckFailed("the student's weights changed during loss()",
                          "never modify parameters in loss(); the optimiser owns the update")
    return "no gradient or write reaches the teacher, its signals or the batch"


def needs_message(h: Harness, method) -> str:
    declared = set(method.needs.teacher_signal_kinds())
    read = {SIGNAL_KIND[name] for name in h.reads}
    if method.views:
        read.add("generations")
    unread = sorted(declared - read)
    msg = f"read only declared signals ({', '.join(sorted(read)) or 'none'})"
    if unread:
        msg += f"; declared but never read here: {', '.join(unread)} (the core computes and caches them)"
    return msg


def run_main_step(h: Harness, method, family: str) -> list[CheckResult]:
    """One right-padded batch of 4: the loss, gradients, teacher and needs checks."""
    names = ("loss", "gradients", "teacher", "needs")

    def result(name, status, message="", fix=""):
        return CheckResult(name, family, status, message, fix)

    step = h.step(h.examples(4))
    before = snapshot(step)
    h.zero_grad(method)
    try:
        total = validate_loss_output(method.loss(step.batch, step.student, step.teacher))
    except UndeclaredSignalError as exc:
        problem, fix = explain_exception(exc)
        return [result("needs", FAIL, problem, fix)] + [result(n, SKIP, "loss() raised") for n in names[:3]]
    except CheckFailed as exc:
        return [result("loss", FAIL, exc.problem, exc.fix)] + [result(n, SKIP, "no valid loss") for n in names[1:]]
    except Exception as exc:  # noqa: BLE001 - reported to the author
        return [result("loss", FAIL, *explain_exception(exc))] + [result(n, SKIP, "loss() raised") for n in names[1:]]
    out = [result("loss", PASS, f"finite scalar {total.item():.4g}")]
    for name, fn in (("gradients", lambda: (total.backward(), check_gradients(h, method))[1]),
                     ("teacher", lambda: check_teacher(h, step, before))):
        try:
            out.append(result(name, PASS, fn()))
        except CheckFailed as exc:
            out.append(result(name, FAIL, exc.problem, exc.fix))
        except Exception as exc:  # noqa: BLE001
            out.append(result(name, FAIL, *explain_exception(exc)))
    msg = needs_message(h, method)
    out.append(result("needs", INFO if "never read" in msg else PASS, msg))
    return out
