"""Train-step cost of each method relative to SFT, measured side by side in one run.

    python benchmarks/step_overhead.py                       # tiny suite, all methods, causal track 'math'
    python benchmarks/step_overhead.py --track embed --steps 20
    python benchmarks/step_overhead.py --profile test --methods sft,uld
    OMP_NUM_THREADS=1 python benchmarks/step_overhead.py --clock cpu  # while something else runs

Each method trains `--steps` steps (after `--warmup` untimed steps, by default one epoch) on the same
cached teacher signals. The methods take turns of `--block` steps (SFT, ALM, ..., SFT, ALM, ...), so
a slowdown of the machine hits all of them alike, and each method's figure is the median of its
single steps over all rounds (each round starts every method afresh).
Batches are collated before the clock starts, so the step is forward + loss + backward + optimizer;
collation, teacher-signal lookup included, is not in it (on tiny `math`, 2 threads: about 1.6 ms
per step for SFT and 4-5 ms for a method reading teacher logits). Prints ms/step, the ratio to SFT (target: <= 1.5x), student tokens per step
(every view included), the ratio per student token (how much of the cost is not explained by
the student simply running more tokens, e.g. CoT2Align's second, CoT format of every example), and
the middle half of the step-by-step ratios (`paired_spread`: the noise behind each median).

A method whose step also trains the student on other formats of each example (``views``, e.g.
CoT2Align's CoT record) gets a second reference, ``sft@<method>``: SFT on exactly the same
formats (the token-weighted CE of every format, nothing else; the same teacher generations).
``x own SFT`` is the method's step over that one: what the method's loss costs on top of the
student work its training data requires.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time

os.environ.setdefault("CTKD_PROGRESS", "0")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", default="tiny")
    parser.add_argument("--profile", default=None)
    parser.add_argument("--track", default="math")
    parser.add_argument("--methods", default="all")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed steps first (default: one epoch of the track's training data, so "
                             "per-example memos are warm, as they are for most steps of a real cell)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--block", type=int, default=4, help="steps each method takes per turn")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: this process's CPU seconds (all its threads), which other load on "
                             "the machine disturbs far less than wall time")
    args = parser.parse_args()
    clock = time.perf_counter if args.clock == "wall" else time.process_time

    from ctkd_bench import _allocator
    from ctkd_bench.cli.run import parse_methods
    _allocator.keep_freed_memory()    # as `ctkd-bench run` does before its cells
    from ctkd_bench.defaults import cache_root
    from ctkd_bench.run.environment import SuiteEnvironment
    from ctkd_bench.specs import resolve_suite

    suite = resolve_suite(args.suite, args.profile)
    env = SuiteEnvironment(suite, cache_root()).track(args.track)
    regs = [r for r in parse_methods(args.methods) if env.track.task in r.cls.tracks]
    regs.sort(key=lambda r: r.name != "sft")
    regs += [same_formats_sft(r) for r in regs if getattr(r.cls, "views", None)]
    if args.warmup is None:
        args.warmup = max(2, -(-len(env.train) // suite.budget.examples_per_step))
    budget = dataclasses.replace(suite.budget, steps=args.warmup + args.steps)
    vocab = None if env.encoder else len(env.student_tokenizer)
    times: dict[str, list[float]] = {r.name: [] for r in regs}
    tokens: dict[str, float] = {}   # student tokens per timed step, every view included
    for _ in range(args.rounds):
        cells = {}
        for reg in regs:
            student, method, extra, data, meter = setup_cell(env, suite, reg)
            batches = list(data.batches(budget.steps, budget.examples_per_step))  # collation is not timed
            tokens[reg.name] = statistics.mean(_student_tokens(b) for b, _ in batches[args.warmup:])
            cells[reg.name] = (student, method, extra, batches, meter)
        for name, steps in interleaved_steps(cells, budget, vocab, clock, args.block).items():
            times[name].extend(steps[args.warmup:])
    base = statistics.median(times["sft"]) if "sft" in times else None
    print(f"suite {suite.name}{'/' + suite.profile if suite.profile else ''} track {args.track}: "
          f"{budget.examples_per_step} examples/step, max length {budget.max_length}, torch threads "
          f"{__import__('torch').get_num_threads()}, {args.clock} clock")
    # per token: (time / student tokens) relative to SFT's, i.e. the cost not explained by a method
    # training the student on more tokens per step (e.g. CoT2Align's extra CoT view)
    print(f"{'method':<14} {'ms/step':>9} {'x SFT':>7} {'tok/step':>9} {'x SFT/tok':>10} {'paired 25-75%':>14} "
          f"{'x own SFT':>10}")
    for name, samples in times.items():
        own = times.get(f"sft@{name}")
        own_ratio = f"{statistics.median(samples) / statistics.median(own):10.2f}" if own else "         -"
        ms = statistics.median(samples) * 1000
        ratio = f"{statistics.median(samples) / base:7.2f}" if base else "      -"
        per_tok = (f"{statistics.median(samples) / tokens[name] / (base / tokens['sft']):10.2f}"
                   if base and tokens.get(name) and tokens.get("sft") else "         -")
        print(f"{name:<14} {ms:9.1f} {ratio} {tokens.get(name, 0):9.0f} {per_tok} {paired_spread(samples, times.get('sft')):>14} {own_ratio}")


def paired_spread(samples: list[float], sft: list[float] | None) -> str:
    """The middle half of step-by-step ratios to SFT: step i of a method over SFT's step i (the same
    batch position, a turn apart). How far one step's ratio wanders: the noise behind the median."""
    if not sft or len(sft) != len(samples) or len(samples) < 4:
        return "-"
    quartiles = statistics.quantiles([m / s for m, s in zip(samples, sft)], n=4)
    return f"{quartiles[0]:.2f}-{quartiles[2]:.2f}"


def interleaved_steps(cells: dict, budget, vocab, clock, block: int = 1) -> dict[str, list[float]]:
    """Train every cell `block` optimiser steps at a time, in turn (SFT, method 1, ..., SFT, ...),
    so a slowdown of the machine that lasts longer than one rotation hits every method alike.
    Returns each cell's step durations (`Trainer.step`: the step `train` takes, batch already
    collated). The first step of a block runs on caches the other methods filled; with blocks of
    a few steps the median is a step in its own warm caches, as in a real cell."""
    from ctkd_bench.train.trainer import Trainer

    trainers = {name: Trainer(student, method, budget, meter, vocab, extra)
                for name, (student, method, extra, _, meter) in cells.items()}
    durations: dict[str, list[float]] = {name: [] for name in cells}
    for first in range(0, budget.steps, block):
        for name, trainer in trainers.items():
            for i in range(first, min(first + block, budget.steps)):
                batch, teacher = cells[name][3][i]
                began = clock()
                trainer.step(batch, teacher)
                durations[name].append(clock() - began)
    return durations


def setup_cell(env, suite, reg, seed: int = 0):
    """One method cell made ready to train, as `run_cell` does (also used by benchmarks/paper_scale.py):
    returns (student, method, extra modules, CellData, meter)."""
    from ctkd_bench.defaults import cache_root
    from ctkd_bench.models.sources import fresh_student
    from ctkd_bench.run.cell import CellData, method_context, teacher_generations
    from ctkd_bench.train.budget import BudgetMeter

    method = reg.cls(reg.cls.make_config(suite.method_config(reg.name)))
    student = fresh_student(env.student_spec, env.student_tokenizer, seed, env.encoder, env.num_labels)
    meter = BudgetMeter()
    ctx = method_context(env, method, seed, student, meter, cache_root() / "artifacts" / reg.name / env.teacher_key)
    gens = teacher_generations(env, method, meter) if method.needs.generations else None
    method.prepare(ctx)
    extra = method.setup(ctx)
    method.modules = extra
    return student, method, extra, CellData(env, method, seed, gens), meter


def same_formats_sft(reg):
    """A registration of SFT on ``reg``'s formats: its views (and the teacher generations they are
    made from), trained with the CE of every format weighted by its target tokens, as CoT2Align
    weights its own CE. Named ``sft@<method>``; it reads no teacher signal."""
    from ctkd_bench import Method, Needs
    from ctkd_bench.plugins import RegisteredMethod

    base = reg.cls
    prompt = getattr(base, "generation_prompt", None)

    def loss(self, batch, student, teacher):
        parts = [(student.ce, _targets(batch))] + [(student.views[k].ce, _targets(v)) for k, v in batch.views.items()]
        n = sum(count for _, count in parts)
        ce = sum(ce * count for ce, count in parts) / max(n, 1)
        return {"loss": ce, "ce": ce.detach()}

    cls = type("SameFormatsSFT", (Method,), {
        "name": f"sft@{base.name}", "category": "baseline", "paper": base.paper, "tracks": base.tracks,
        "summary": f"SFT on the formats {base.name} trains on", "views": dict(base.views),
        "needs": Needs(generations=base.needs.generations),
        "generation_prompt": staticmethod(prompt) if prompt else None,
        "generation_settings": dict(getattr(base, "generation_settings", {}) or {}),
        "Config": dataclasses.make_dataclass("Config", [], frozen=True), "loss": loss})
    return RegisteredMethod(cls, reg.plugin)


def _targets(batch) -> int:
    """Response tokens the student is scored on (HF labels: row t predicts t+1)."""
    return int((batch.student.labels[:, 1:] != -100).sum())


def _student_tokens(batch) -> int:
    """Student tokens the step runs through the student, views included (as ``BudgetMeter`` counts them)."""
    return sum(int(b.student.attention_mask.sum()) for b in [batch] + list(batch.views.values()))


if __name__ == "__main__":
    main()
