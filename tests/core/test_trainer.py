"""The equal-budget trainer: exact step counts, loss checks, fault detection, data order."""
import copy
from dataclasses import dataclass

import pytest
import torch

from ctkd_bench import Method, Needs, Paper
from ctkd_bench.errors import CellFailure
from ctkd_bench.run.cell import data_order
from ctkd_bench.specs import BudgetSpec
from ctkd_bench.teacher.signals import live_teacher_signals
from ctkd_bench.toy import toy_batch, toy_pair
from ctkd_bench.train.budget import BudgetMeter
from ctkd_bench.train.trainer import lr_factor, train


class Probe(Method):
    name = "probe"
    category = "baseline"
    summary = "test method"
    paper = Paper("t")
    tracks = ("instruct",)
    needs = Needs(topk=2)

    @dataclass(frozen=True)
    class Config:
        mode: str = "ok"

    def loss(self, batch, student, teacher):
        mode = self.config.mode
        if mode == "nan":
            return {"loss": student.ce * float("nan")}
        if mode == "vector":
            return {"loss": student.logits.mean(-1)}
        if mode == "detached":
            return {"loss": student.ce.detach() + 0 * teacher.topk_logprobs.sum()}
        if mode == "raise":
            raise ValueError("boom")
        return {"loss": student.ce, "ce": student.ce}


def batches(pair, n=4):
    while True:
        for start in (0, 8, 16):
            batch = toy_batch(pair, examples=pair.examples[start:start + n])
            yield batch, live_teacher_signals(pair.teacher, batch.teacher, Probe.needs, pair.head, False)


def test_lr_schedule_warms_up_and_decays():
    f = [lr_factor(s, 100, 0.1, "cosine") for s in range(100)]
    assert f[0] == pytest.approx(0.1) and max(f) == pytest.approx(1.0)
    assert f[-1] < 0.01 and all(a >= b for a, b in zip(f[10:], f[11:]))
    assert lr_factor(50, 100, 0.0, "constant") == 1.0


def test_sft_trains_exact_steps_and_counts_budget():
    pair = toy_pair("instruct")
    student = copy.deepcopy(pair.student)
    meter = BudgetMeter()
    log = train(student, Probe(), batches(pair), BudgetSpec(steps=12, lr=1e-2), meter, len(pair.student_tokenizer))
    assert meter.steps == 12 and len(log) == 12
    assert meter.examples == 48 and meter.bytes > 0 and meter.teacher_tokens > 0
    assert log[-1]["loss"] < log[0]["loss"]
    assert all(p.grad is None for p in pair.teacher.parameters())


@pytest.mark.parametrize("mode, message", [
    ("nan", "non-finite loss"), ("vector", "non-scalar"), ("detached", "no gradient path"), ("raise", "boom")])
def test_faulty_methods_fail_clearly(mode, message):
    pair = toy_pair("instruct")
    method = Probe(Probe.Config(mode=mode))
    with pytest.raises((CellFailure, ValueError), match=message):
        train(copy.deepcopy(pair.student), method, batches(pair), BudgetSpec(steps=2), BudgetMeter(),
              len(pair.student_tokenizer))


def test_data_order_depends_on_seed_only():
    a, b = data_order(10, 0, 25), data_order(10, 0, 25)
    assert a == b and data_order(10, 1, 25) != a
    assert sorted(a[:10]) == list(range(10)) and sorted(a[10:20]) == list(range(10))  # whole epochs
