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
