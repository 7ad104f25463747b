"""Faulty methods fail their own cell, with the reason, in the records and in the report;
the other cells of the run complete, and a teacher a method wrote into is restored for them."""
from __future__ import annotations

import time
from dataclasses import dataclass

import pytest
import torch

from ctkd_bench import Method, Needs, Paper, hookimpl
from ctkd_bench.plugins import PluginManager, get_plugin_manager
from ctkd_bench.report.render import render_report
from ctkd_bench.run.runner import Runner
from ctkd_bench.specs import resolve_suite
from rel_suite import write_suite

pytestmark = pytest.mark.slow


class Faulty(Method):
    category = "baseline"
    summary = "Breaks one rule on purpose."
    paper = Paper("none")
    tracks = ("lm",)

    @dataclass(frozen=True)
    class Config:
        pass


def faulty(name: str, loss=None, prepare=None, needs: Needs = Needs()) -> type:
    attrs = {"name": name, "needs": needs}
    if loss:
        attrs["loss"] = lambda self, batch, student, teacher: loss(self, batch, student, teacher)
    if prepare:
        attrs["prepare"] = lambda self, ctx: prepare(ctx)
    return type(name.title().replace("-", ""), (Faulty,), attrs)


def _write_teacher_head(self, batch, student, teacher):
    teacher.lm_head.mul_(0.5)   # the shared frozen copy every later cell reads
    return {"loss": student.ce}


def _train_outside_budget(self, batch, student, teacher):
    with torch.no_grad():
        student.embedding_weight.add_(0.01)   # an extra update no optimiser step accounts for
    return {"loss": student.ce}


def _hide_steps(ctx):
    ctx.meter.steps -= 1


def _hang(self, batch, student, teacher):
    time.sleep(60)
    return {"loss": student.ce}


# method name -> the text its failure reason must contain
FAULTS = {
    "f-raises": (faulty("f-raises", loss=lambda *a: (_ for _ in ()).throw(RuntimeError("boom in loss"))),
                 "RuntimeError: boom in loss"),
    "f-nan": (faulty("f-nan", loss=lambda s, b, st, t: {"loss": st.ce * float("nan")}), "non-finite loss (nan)"),
    "f-inf": (faulty("f-inf", loss=lambda s, b, st, t: {"loss": st.ce * float("inf")}), "non-finite loss (inf)"),
    "f-vector": (faulty("f-vector", loss=lambda s, b, st, t: {"loss": st.logits.mean(-1)}), "non-scalar total loss"),
    "f-float": (faulty("f-float", loss=lambda s, b, st, t: {"loss": 1.0}), "returned a float as 'loss'"),
    "f-nodict": (faulty("f-nodict", loss=lambda s, b, st, t: st.ce), "must return a dict with a 'loss' entry"),
    "f-detached": (faulty("f-detached", loss=lambda s, b, st, t: {"loss": st.ce.detach()}), "no gradient path"),
    "f-leaf": (faulty("f-leaf", loss=lambda s, b, st, t: {"loss": torch.zeros((), requires_grad=True) * 1}),
               "no gradient reached the student"),
    "f-teacher": (faulty("f-teacher", loss=_write_teacher_head, needs=Needs(lm_head=True)),
                  "the method modified the teacher (teacher head.lm_head)"),
    "f-outside": (faulty("f-outside", loss=_train_outside_budget), "changed the student's weights itself"),
    "f-meter": (faulty("f-meter", prepare=_hide_steps), "budget meter is read-only"),
}
HANG = faulty("f-hang", loss=_hang)


class Plugin:
    @staticmethod
    @hookimpl
    def ctkd_register_methods(register):
        for cls, _ in FAULTS.values():
            register(cls)
        register(HANG)


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory, rel_cache):
    folder = tmp_path_factory.mktemp("faulty")
    pm = PluginManager(load_entry_points=False)
    pm.add(Plugin)
    builtin = get_plugin_manager().methods()
    # f-teacher runs before uld, which reads logits through the head f-teacher wrote into
    regs = [builtin["sft"]] + [pm.methods()[name] for name in FAULTS] + [builtin["uld"]]
    out = folder / "run"
    suite = resolve_suite(str(write_suite(folder / "rel.yaml")))
    runner = Runner(suite, out, regs, [0], echo=lambda *_: None)
    runner.run()
    # the same suite with a 2 s cell limit: the limit is not hashed, so the cells are the same cells
    limited = resolve_suite(str(write_suite(folder / "rel.yaml", **{"budget.cell_timeout_s": 2})))
    assert limited.hash == suite.hash
    started = time.monotonic()
    Runner(limited, out, [pm.methods()["f-hang"]], [0], echo=lambda *_: None).run()
    hang_s = time.monotonic() - started
    records = {r.method: r for r in runner.store.records()}
    paths = render_report([out], out / "report")
    return runner, records, (out / "report" / "leaderboard.md").read_text(), hang_s, paths


@pytest.mark.parametrize("name", list(FAULTS))
def test_faulty_method_fails_its_cell_with_the_reason(faulty_run, name):
    _, records, markdown, _, _ = faulty_run
    record = records[name]
    assert record.status == "failed"
    assert FAULTS[name][1] in record.reason, record.reason
    assert FAULTS[name][1][:60] in markdown.replace("\\", "")


def test_other_cells_complete(faulty_run):
    runner, records, _, _, _ = faulty_run
    for name in ("teacher", "untrained", "sft", "uld"):
        assert records[name].status == "ok", records[name].reason
    assert records["sft"].costs["steps"] == 4 and records["sft"].costs["examples"] == 16


def test_a_teacher_written_into_is_reloaded_for_later_cells(faulty_run):
    runner, records, _, _, _ = faulty_run
    env = runner.env.track("lm")
    head = env.cache.head.lm_head
    live = env.teacher.get_output_embeddings().weight[:head.shape[0]]
    assert torch.equal(head, live)   # not halved: the env was rebuilt from the on-disk teacher
    assert records["uld"].status == "ok"


def test_hanging_method_times_out_and_the_handler_is_restored(faulty_run):
    import signal
    _, records, markdown, hang_s, _ = faulty_run
    assert records["f-hang"].status == "failed"
    assert "timed out after 2 s" in records["f-hang"].reason
    assert "timed out after 2 s" in markdown
    assert hang_s < 55   # the method sleeps 60 s
    assert signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, signal.default_int_handler, None)
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_meter_refuses_steps_past_the_budget():
    from ctkd_bench.train.budget import BudgetExceeded, BudgetMeter

    class Batch:
        texts = ["ab"]
        views = {}
        student = teacher = type("S", (), {"attention_mask": torch.ones(1, 2)})()

        def __len__(self):
            return 1

    meter = BudgetMeter(max_steps=2, max_examples=2)
    meter.count_step(Batch(), False)
    meter.count_step(Batch(), False)
    with pytest.raises(BudgetExceeded, match="step 3 of a 2-step budget"):
        meter.count_step(Batch(), False)
    assert meter.steps == 2


def test_time_limit_restores_an_outer_timer():
    import signal
    from ctkd_bench.run.timeout import CellTimeout, time_limit
    with time_limit(0.2), pytest.raises(CellTimeout, match="timed out after 0.2 s"):
        time.sleep(5)
    signal.setitimer(signal.ITIMER_REAL, 50)
    previous = signal.signal(signal.SIGALRM, lambda *_: None)
    try:
        with time_limit(10):
            pass
        left, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 40 < left <= 50
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
