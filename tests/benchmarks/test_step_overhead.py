"""benchmarks/step_overhead.py on the `test` profile: methods take single steps in turn, on the same
batches a real cell would see, and every timed step is reported."""
import pytest

pytestmark = pytest.mark.slow


def test_methods_step_in_turn_and_every_step_is_timed(step_overhead, isolated_cache, monkeypatch):
    import dataclasses

    from ctkd_bench.cli.run import parse_methods
    from ctkd_bench.defaults import cache_root
    from ctkd_bench.run.environment import SuiteEnvironment
    from ctkd_bench.specs import resolve_suite
    from ctkd_bench.train.budget import BudgetMeter
    from ctkd_bench.train.trainer import Trainer

    suite = resolve_suite("tiny", "test")
    env = SuiteEnvironment(suite, cache_root()).track("math")
    budget = dataclasses.replace(suite.budget, steps=3)
    cells = {}
    for reg in parse_methods("sft,uld"):
        student, method, extra, data, meter = step_overhead.setup_cell(env, suite, reg)
        cells[reg.name] = (student, method, extra, list(data.batches(3, budget.examples_per_step)), meter)
    order = []
    real_step = Trainer.step
    monkeypatch.setattr(Trainer, "step", lambda self, b, t: (order.append(self.method.name), real_step(self, b, t))[1])
    ticks = iter(range(100))
    durations = step_overhead.interleaved_steps(cells, budget, len(env.student_tokenizer), lambda: next(ticks))
    assert order == ["sft", "uld"] * 3   # block 1: single steps in turn
    assert durations == {"sft": [1, 1, 1], "uld": [1, 1, 1]}   # one clock reading before and after each step
    assert all(meter.steps == 3 for *_, meter in cells.values())

    order.clear()
    for name, (student, method, extra, batches, _) in list(cells.items()):
        cells[name] = (student, method, extra, batches * 2, BudgetMeter())
    step_overhead.interleaved_steps(cells, dataclasses.replace(budget, steps=5), len(env.student_tokenizer),
                                    lambda: 0.0, block=2)
    assert order == ["sft", "sft", "uld", "uld"] * 2 + ["sft", "uld"]


def test_main_prints_a_ratio_per_method(step_overhead, isolated_cache, monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["step_overhead.py", "--profile", "test", "--methods", "sft,uld",
                                     "--steps", "2", "--warmup", "1", "--rounds", "1"])
    step_overhead.main()
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split() for line in lines[-2:]}
    assert set(rows) == {"sft", "uld"}
    assert rows["sft"][2] == "1.00" and float(rows["uld"][2]) > 0


def test_paired_spread_is_the_middle_half_of_step_ratios(step_overhead):
    sft = [1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 1.0, 1.0]
    method = [1.5, 1.2, 3.0, 2.0, 1.4, 1.3, 1.6, 1.1]       # ratios 1.5 1.2 1.5 1.0 1.4 1.3 1.6 1.1
    assert step_overhead.paired_spread(method, sft) == "1.12-1.50"
    assert step_overhead.paired_spread(method[:3], sft[:3]) == "-"           # too few steps
    assert step_overhead.paired_spread(method, None) == "-"


def test_same_formats_sft_trains_on_every_view_with_token_weighted_ce(step_overhead):
    from types import SimpleNamespace as NS

    import torch

    from ctkd_bench.cli.run import parse_methods
    reg = step_overhead.same_formats_sft(parse_methods("cot2align")[0])
    cls = reg.cls
    assert reg.name == "sft@cot2align" and set(cls.views) == {"cot"}
    assert cls.needs.teacher_signal_kinds() == ["generations"]   # the view's texts, no logits or states
    example = {"prompt": "Q: 1 + 1?", "response": " 2", "generation": "one and one"}
    assert cls.generation_prompt(example) == parse_methods("cot2align")[0].cls.generation_prompt(example)
    # plain: 3 targets (HF labels, row t predicts t+1), CE 2.0; CoT view: 5 targets, CE 1.0
    plain = NS(student=NS(labels=torch.tensor([[-100, 5, 6, -100], [-100, -100, 7, -100]])))
    cot = NS(student=NS(labels=torch.tensor([[-100, 1, 2, 3, 4], [-100, -100, -100, 5, -100]])))
    batch = NS(student=plain.student, views={"cot": cot})
    student = NS(ce=torch.tensor(2.0, requires_grad=True), views={"cot": NS(ce=torch.tensor(1.0))})
    out = cls(cls.make_config({})).loss(batch, student, None)
    assert out["loss"].item() == pytest.approx((2.0 * 3 + 1.0 * 5) / 8)
    assert out["loss"].requires_grad


def test_a_method_with_views_is_also_timed_against_sft_on_its_formats(step_overhead, isolated_cache,
                                                                       monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["step_overhead.py", "--profile", "test", "--methods", "sft,cot2align",
                                     "--steps", "2", "--warmup", "1", "--rounds", "1"])
    step_overhead.main()
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split() for line in lines[-3:]}
    assert set(rows) == {"sft", "cot2align", "sft@cot2align"}
    assert float(rows["cot2align"][-1]) > 0 and rows["sft"][-1] == "-"
    assert int(rows["sft@cot2align"][3]) == int(rows["cot2align"][3])   # the same student tokens per step
