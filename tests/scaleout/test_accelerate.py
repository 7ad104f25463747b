"""Training through accelerate: the same loop as plain PyTorch in fp32; bf16 really autocasts."""
import copy
from dataclasses import dataclass, replace

import pytest
import torch

from ctkd_bench import Method, Needs, Paper
from ctkd_bench.errors import ConfigError
from ctkd_bench.specs import BudgetSpec, parse_suite, resolve_suite
from ctkd_bench.teacher.signals import live_teacher_signals
from ctkd_bench.toy import toy_batch, toy_pair
from ctkd_bench.train.accel import backend_for, signals_to
from ctkd_bench.train.budget import BudgetMeter
from ctkd_bench.train.trainer import train

from scaleout_helpers import embed_suite, records, run


@pytest.fixture(autouse=True, scope="module")
def fresh_accelerate_state():
    """accelerate's state is process-wide: leave none behind for the tests after these."""
    yield
    from accelerate.state import AcceleratorState

    from ctkd_bench.train import accel
    accel._CURRENT.clear()
    AcceleratorState._reset_state()


class Distill(Method):
    """CE plus a top-k term, so the teacher's cached signals take part in the loss."""
    name = "distill-probe"
    category = "baseline"
    summary = "test method"
    paper = Paper("t")
    tracks = ("instruct",)
    needs = Needs(topk=2)

    @dataclass(frozen=True)
    class Config:
        pass

    def loss(self, batch, student, teacher):
        return {"loss": student.ce + 1e-3 * student.logits.float().pow(2).mean()
                + 0.0 * teacher.topk_logprobs.sum()}


def batches(pair, n=4):
    while True:
        for start in (0, 8, 16):
            batch = toy_batch(pair, examples=pair.examples[start:start + n])
            yield batch, live_teacher_signals(pair.teacher, batch.teacher, Distill.needs, pair.head, False)


def train_toy(backend, steps=6):
    pair = toy_pair("instruct")
    student = copy.deepcopy(pair.student)
    meter = BudgetMeter()
    log = train(student, Distill(), batches(pair), BudgetSpec(steps=steps, lr=1e-2), meter,
                len(pair.student_tokenizer), backend=backend)
    return [step["loss"] for step in log], student, meter


def test_accelerate_fp32_takes_the_same_steps_as_plain_pytorch(monkeypatch):
    plain, plain_student, plain_meter = train_toy(None)
    monkeypatch.setenv("CTKD_ACCELERATE", "1")
    backend = backend_for("fp32")
    assert type(backend).__name__ == "AccelerateBackend" and backend.world == 1
    accel, accel_student, accel_meter = train_toy(backend)
    assert accel == pytest.approx(plain, rel=1e-6, abs=1e-7)
    for a, b in zip(accel_student.parameters(), plain_student.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert accel_meter.examples == plain_meter.examples == 24


def test_bf16_autocasts_the_student_and_evaluation_returns_to_fp32():
    backend = backend_for("bf16")
    seen = []
    pair = toy_pair("instruct")
    student = copy.deepcopy(pair.student)
    first = next(m for m in student.modules() if isinstance(m, torch.nn.Linear))
    hook = first.register_forward_hook(lambda mod, inp, out: seen.append(out.dtype))
    log = train(student, Distill(), batches(pair), BudgetSpec(steps=4, lr=1e-2), BudgetMeter(),
                len(pair.student_tokenizer), backend=backend)
    assert set(seen) == {torch.bfloat16}
    fp32, _, _ = train_toy(None, steps=4)
    bf16 = [step["loss"] for step in log]
    assert bf16 == pytest.approx(fp32, rel=5e-2) and bf16 != fp32  # same run, lower precision
    backend.finish(student, BudgetMeter())
    seen.clear()
    with torch.no_grad():
        student(input_ids=torch.tensor([[1, 2, 3]]))
    hook.remove()
    assert seen == [torch.float32]
    assert backend_for("fp32").__class__.__name__ == "PlainBackend"  # fp32 without a launch: no accelerate


def test_signals_move_with_their_nested_tensors():
    pair = toy_pair("instruct")
    batch = toy_batch(pair)
    needs = Needs(topk=2, hidden_states=(-1,))
    signals = live_teacher_signals(pair.teacher, batch.teacher, needs, pair.head, False)
    moved = signals_to(signals, torch.device("meta"))
    assert moved.topk_logprobs.device.type == "meta"
    assert all(t.device.type == "meta" for t in moved.hidden_states.values())


def test_precision_is_validated_and_hashed_only_when_not_fp32():
    suite = resolve_suite("tiny", "test")
    assert "precision" not in suite.to_dict()["budget"]   # suites from before keep their cell ids
    data = {"name": "p", "tokenizers": {"t": {}}, "models": {"m": {"tokenizer": "t"}},
            "pairs": {"p": {"teacher": "m", "student": "m"}}, "tracks": {"lm": {"pair": "p"}}}
    fp32 = parse_suite(data)
    bf16 = parse_suite({**data, "budget": {"precision": "bf16"}})
    assert bf16.budget.precision == "bf16" and bf16.hash != fp32.hash
    with pytest.raises(ConfigError, match=r"budget\.precision: 'fp16' is not one of fp32, bf16"):
        parse_suite({**data, "budget": {"precision": "fp16"}})


def test_a_bf16_suite_runs_its_cells_in_bf16_and_says_so(baseline, tmp_path):
    suite = embed_suite()
    suite = replace(suite, budget=replace(suite.budget, precision="bf16"))
    runner = run(tmp_path / "run", names=("sft",), suite=suite)
    assert runner.counts["ok"] == 3, runner.counts
    got = records(tmp_path / "run")
    assert not set(got) & set(baseline)                   # bf16 cells are other cells than fp32 ones
    sft = next(r for r in got.values() if r["method"] == "sft")
    assert sft["machine"]["precision"] == "bf16" and sft["machine"]["processes"] == 1
    assert sft["costs"]["steps"] == 6 and sft["costs"]["examples"] == 24
    assert all(r["machine"]["precision"] == "fp32" for r in baseline.values())
