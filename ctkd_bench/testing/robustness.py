"""Robustness checks: padding, degenerate batches, determinism; and the step-time overhead."""
from __future__ import annotations

import dataclasses
import statistics
import time

import torch

from ..method import Needs
from .contract import finite_grads, validate_loss_output
from .harness import Harness, seed_everything
from .padding import to_left_padding
from .results import CheckFailed

CAUSAL_EDGES = ("empty_response", "all_empty_responses", "length1_response", "empty_prompt", "batch_of_1")
ENCODER_EDGES = ("empty_text", "length1_text", "batch_of_1")
EDGE_CHECKS = CAUSAL_EDGES[:-1] + ENCODER_EDGES  # display order, each name once
# A response of exactly one token for both toy tokenizers (checked by the kit's tests).
ONE_TOKEN_RESPONSE = " the"
ONE_TOKEN_TEXT = "a"


def edge_cases(h: Harness) -> dict[str, list[dict]]:
    """Degenerate batches a training run meets sooner or later, by check name."""
    ex = h.examples(2)
    if h.family == "encoder":
        cases = [[ex[0], {**ex[1], "text": ""}],
                 [{**e, "text": ONE_TOKEN_TEXT} for e in ex],
                 ex[:1]]
        return dict(zip(ENCODER_EDGES, cases))
    cases = [[ex[0], {**ex[1], "response": ""}],
             [{**e, "response": ""} for e in ex],
             [{**e, "response": ONE_TOKEN_RESPONSE} for e in ex],
             [{**e, "prompt": ""} for e in ex],
             ex[:1]]
    return dict(zip(CAUSAL_EDGES, cases))


def run_loss_and_backward(h: Harness, method, examples, padding_side: str = "right") -> float:
    h.zero_grad(method)
    step = h.step(examples, padding_side)
    total = validate_loss_output(method.loss(step.batch, step.student, step.teacher))
    total.backward()
    finite_grads(h, method)
    return total.item()


def left_padding_supported(h: Harness) -> bool:
    """False where the core pads on the right only (encoder tracks: the classifier pools position 0)."""
    return h.batch(h.examples(1), "left").student.padding_side == "left"


def check_padding_left(h: Harness, method) -> str:
    value = run_loss_and_backward(h, method, h.examples(4), "left")
    return f"left-padded batch: loss {value:.4g}, finite gradients"


def check_edge(h: Harness, method, examples) -> str:
    value = run_loss_and_backward(h, method, examples)
    return f"loss {value:.4g}, finite gradients"


def check_padding_invariance(h: Harness, method) -> str:
    """Same rows, padding moved right -> left and filled with noise: the loss must not change."""
    examples = h.examples(4)
    step = h.step(examples)
    if bool((step.batch.student.lengths == step.batch.student.lengths[0]).all()):
        raise AssertionError("internal: the invariance batch needs rows of different lengths")
    left = to_left_padding(step, h.batch(examples, "left"), torch.Generator().manual_seed(h.seed))
    modules = method.modules
    was_training = modules.training if isinstance(modules, torch.nn.Module) else False
    if isinstance(modules, torch.nn.Module):
        modules.eval()  # dropout masks follow positions; compare the deterministic function
    try:  # with grad enabled: some losses call autograd themselves (e.g. gradient-magnitude weighting)
        seed_everything(h.seed)
        right_loss = validate_loss_output(method.loss(step.batch, step.student, step.teacher)).detach()
        seed_everything(h.seed)
        left_loss = validate_loss_output(method.loss(left.batch, left.student, left.teacher)).detach()
    finally:
        if isinstance(modules, torch.nn.Module):
            modules.train(was_training)
    if not torch.allclose(right_loss, left_loss, rtol=1e-4, atol=1e-5):
        raise CheckFailed(f"loss {right_loss.item():.6g} with right padding but {left_loss.item():.6g} "
                          "with the same rows left-padded (noise at the student's padding positions)",
                          "select positions with batch.<side>.attention_mask / labels != -100 (never "
                          "by index ranges like [:, :n] or by the padded length), and never let padding "
                          "values enter a sum, mean, max or normalisation")
    how = "either way" if left.batch.student.padding_side == "left" else "with noise at the padding"
    return f"loss {right_loss.item():.6g} {how}"


def _run_once(h: Harness, method, examples):
    h.zero_grad(method)
    seed_everything(h.seed)
    step = h.step(examples)
    total = validate_loss_output(method.loss(step.batch, step.student, step.teacher))
    total.backward()
    grads = {k: None if p.grad is None else p.grad.clone() for k, p in h.trainable(method).items()}
    return total.detach(), grads


def check_determinism(h: Harness) -> str:
    """Two fresh instances, same seed: identical extra modules, loss and gradients."""
    examples = h.examples(4)
    first, second = h.new_method(), h.new_method()
    if isinstance(first.modules, torch.nn.Module):
        a, b = first.modules.state_dict(), second.modules.state_dict()
        diff = [k for k in a if not torch.equal(a[k], b[k])]
        if diff:
            raise CheckFailed(f"setup() built different modules under the same seed ({diff[0]})",
                              "initialise modules inside setup() from torch's seeded generator; "
                              "no time- or hash-based randomness")
    loss_a, grads_a = _run_once(h, first, examples)
    loss_b, grads_b = _run_once(h, second, examples)
    if not torch.equal(loss_a, loss_b):
        raise CheckFailed(f"loss {loss_a.item():.8g} then {loss_b.item():.8g} under the same seed",
                          "draw randomness only from torch (the core calls torch.manual_seed(seed) per "
                          "cell; random/numpy stay unseeded); iterate lists or sorted keys, never sets "
                          "(their order depends on PYTHONHASHSEED)")
    for (name, ga), gb in zip(grads_a.items(), grads_b.values()):
        if (ga is None) != (gb is None) or (ga is not None and not torch.equal(ga, gb)):
            raise CheckFailed(f"gradient of {name} differs between two runs under the same seed",
                              "remove unseeded randomness and set-order dependence from loss()")
    return f"loss {loss_a.item():.6g} and all gradients identical across two runs"


def _median_ms(fn, reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def measure_overhead(h: Harness, method, reps: int = 5) -> str:
    """Step time (student forward + loss + backward, teacher signals precomputed) vs SFT's."""
    batch = h.batch(h.examples(4))
    teacher = h.teacher_signals(batch)
    plain = dataclasses.replace(batch, views={})

    def sft_step():
        h.zero_grad(method)
        h.student_outputs(plain, Needs()).ce.backward()

    def method_step():
        h.zero_grad(method)
        method.loss(batch, h.student_outputs(batch), teacher)["loss"].backward()

    sft_ms, method_ms = _median_ms(sft_step, reps), _median_ms(method_step, reps)
    return (f"{method_ms:.1f} ms/step vs SFT {sft_ms:.1f} ms ({method_ms / sft_ms:.2f}x; toy "
            f"{h.family} pair, batch of 4, {reps} steps, teacher signals precomputed)")
