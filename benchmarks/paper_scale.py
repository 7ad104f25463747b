"""Each method's train-step cost at the papers' scale: real GPT-2 (student) and Qwen (teacher)
vocabularies, 4 examples x 256 tokens, measured side by side with SFT in one run.

    OMP_NUM_THREADS=1 python benchmarks/paper_scale.py                      # all causal methods
    OMP_NUM_THREADS=1 python benchmarks/paper_scale.py --methods sft,uld,dskd --steps 5
    OMP_NUM_THREADS=1 python benchmarks/paper_scale.py --width 256          # wider stand-in models
    python benchmarks/paper_scale.py --length 32 --batch 2 --steps 1 --rounds 1 --methods sft,uld  # smoke

The models are the paper suites' stand-ins (`ctkd_bench.testing.standin`: random Qwen2 and GPT-2
of 2 layers, 16 wide by default, with the real Qwen and GPT-2 tokenizers), built once into
`--standin-dir` (default: $CTKD_CACHE/paper-scale/standin). The training text is documents of the
`lm` track's grammar, joined until every example fills `--length` student tokens. The run goes
through the project's own pipeline (suite file, SuiteEnvironment, CellData, teacher-signal cache,
trainer): a suite file is written into the scratch folder next to the data.

A step is what the trainer times for every cell: student forward, method loss, backward, clipping,
optimiser step. Collating the batch (tokenising, reading the teacher cache, deriving the teacher's
logits from its cached hidden states) is not timed. The method's own cost is its step minus SFT's
step, which is what the official figures measure (one loss forward+backward on given logits).
CoT2Align's own cost includes the student's second, CoT-format pass (tok/step counts every view).

Not timed, but slow the first time: MinED's Qwen -> GPT-2 vocabulary map (151k x 50k edit
distances, ~10 min on one loaded core) is built in its `prepare` and cached under $CTKD_CACHE/artifacts.
The text is the `lm` grammar's plain English, which both tokenizers split mostly into whole words;
alignments are therefore close to 1-to-1 (text with numbers or code would cost the aligners more).
"""
from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("CTKD_PROGRESS", "0")
if str(Path(__file__).resolve().parent) not in sys.path:   # imported as a module (tests)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from step_overhead import _student_tokens, setup_cell  # noqa: E402

# Project guide: official code, one loss fwd+bwd, batch 4x256, GPT-2 x Qwen vocabularies, 2 cores
# (seconds; a plain KL step took ~0.5 s there).
OFFICIAL_S = {"uld": 13.0, "multilevelot": 7.0, "dskd": 23.0, "cdm": 16.0, "cot2align": 21.0}
OFFICIAL_PLAIN_KL_S = 0.5
STANDIN_NAMES = {"teacher": "qwen2-qwen", "student": "gpt2-gpt2"}
TRACK = "long"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default="all", help="comma-separated (default: every causal method)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per method and round")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--rounds", type=int, default=2, help="rounds alternating over the methods")
    parser.add_argument("--length", type=int, default=256, help="student tokens per example")
    parser.add_argument("--batch", type=int, default=4, help="examples per step")
    parser.add_argument("--width", type=int, default=0,
                        help="hidden width of both models (default 0: the stand-ins' own, 16)")
    parser.add_argument("--standin-dir", type=Path, default=None,
                        help="stand-in folder (built on first use; default $CTKD_CACHE/paper-scale/standin)")
    parser.add_argument("--max-new-tokens", type=int, default=8,
                        help="CoT2Align's teacher generations (untimed; a random teacher writes junk anyway)")
    return parser.parse_args(argv)


# --------------------------------------------------------------------------- models and data
def standin_models(root: Path, width: int) -> dict[str, Path]:
    """role -> model folder: the stand-ins, or copies `width` wide (scratch folder next to them)."""
    from ctkd_bench.testing.standin import build_standins

    build_standins(root, tuple(STANDIN_NAMES.values()))
    folders = {role: root / "models" / name for role, name in STANDIN_NAMES.items()}
    if width:
        folders = {role: widened(f, width, root / f"width-{width}" / f.name) for role, f in folders.items()}
    return folders


def widened(src: Path, width: int, out: Path) -> Path:
    """A random model of `src`'s class, layers and tokenizer, `width` wide (skipped when it exists)."""
    import shutil

    import torch
    import transformers as T

    if (out / "config.json").exists():
        return out
    config = T.AutoConfig.from_pretrained(src)
    heads = getattr(config, "num_attention_heads", None) or config.n_head
    if width % heads:
        raise SystemExit(f"--width must be a multiple of the stand-ins' {heads} attention heads, got {width}")
    for key, value in (("n_embd", width), ("hidden_size", width), ("intermediate_size", 2 * width),
                       ("head_dim", width // heads)):
        if key in config.to_dict():
            setattr(config, key, value)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    torch.manual_seed(0)
    T.AutoModelForCausalLM.from_config(config).save_pretrained(tmp, safe_serialization=True)
    for f in src.iterdir():
        if f.name.startswith("tokenizer") or f.name.endswith((".txt", ".model")):
            shutil.copy(f, tmp / f.name)
    tmp.replace(out)
    return out


def write_long_examples(path: Path, tokenizer, n: int, length: int, seed: int = 0) -> None:
    """`n` jsonl rows whose response alone tokenises to at least `length` student tokens."""
    import json

    from ctkd_bench.data.tasks import lm

    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        text = ""
        while len(tokenizer(text, add_special_tokens=False)["input_ids"]) < length:
            text += (" " if text else "") + lm.sample(rng)["response"]
        rows.append({"prompt": "Continue the story.\n", "response": text})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def write_suite(folder: Path, models: dict[str, Path], data: Path, n: int, batch: int, length: int,
                max_new_tokens: int) -> Path:
    """The benchmark's suite file: one instruct-style track of long texts, stand-in Qwen -> GPT-2."""
    t, s = models["teacher"], models["student"]
    text = f"""\
name: paper-scale
description: "benchmarks/paper_scale.py: stand-in Qwen -> GPT-2, {batch} x {length} tokens."
seed: 0
seeds: [0]
tokenizers:
  qwen: {{from: "local:{t}"}}
  gpt2: {{from: "local:{s}"}}
models:
  teacher-qwen: {{from: "local:{t}"}}     # no `train`: the stand-in is used as it is
  student-gpt2: {{from: "local:{s}"}}
pairs:
  qwen_to_gpt2: {{teacher: teacher-qwen, student: student-gpt2}}
tracks:
  {TRACK}:
    task: instruct
    pair: qwen_to_gpt2
    train: {n}
    validation: 0
    test: 1
    max_new_tokens: {max_new_tokens}
    data:
      train: {{from: "local:{data}", fields: {{prompt: prompt, response: response}}}}
      test: {{from: "local:{data}", fields: {{prompt: prompt, response: response}}}}
budget: {{steps: 1, examples_per_step: {batch}, max_length: {length}, eval_batch_size: {batch}}}
"""
    path = folder / "paper-scale.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- timing
def time_method(env, suite, reg, budget, warmup: int) -> tuple[list[float], float]:
    """(seconds of each timed step, student tokens per timed step) of one fresh cell."""
    from ctkd_bench.train.trainer import train

    student, method, extra, data, meter = setup_cell(env, suite, reg)
    fetched, done, tokens = [], [], []

    def batches():   # batches are collated one at a time (a Qwen-vocabulary batch is ~1 GB): untimed
        for batch, signals in data.batches(budget.steps, budget.examples_per_step):
            tokens.append(_student_tokens(batch))
            fetched.append(time.perf_counter())
            yield batch, signals

    train(student, method, batches(), budget, meter, len(env.student_tokenizer), extra,
          progress=lambda step, terms: done.append(time.perf_counter()))
    return [d - f for f, d in zip(fetched, done)][warmup:], statistics.mean(tokens[warmup:])


def measure(args, suite_path: Path) -> tuple[dict, dict]:
    """method -> seconds of every timed step (all rounds); method -> student tokens per step."""
    import dataclasses

    from ctkd_bench.cli.run import parse_methods
    from ctkd_bench.defaults import cache_root
    from ctkd_bench.run.environment import SuiteEnvironment
    from ctkd_bench.specs import resolve_suite

    suite = resolve_suite(str(suite_path))
    env = SuiteEnvironment(suite, cache_root()).track(TRACK)
    regs = [r for r in parse_methods(args.methods) if env.track.task in r.cls.tracks]
    regs.sort(key=lambda r: r.name != "sft")
    budget = dataclasses.replace(suite.budget, steps=args.warmup + args.steps)
    times = {r.name: [] for r in regs}
    tokens = {}
    for _ in range(args.rounds):
        for reg in regs:
            seconds, tokens[reg.name] = time_method(env, suite, reg, budget, args.warmup)
            times[reg.name] += seconds
            gc.collect()
    return times, tokens


# --------------------------------------------------------------------------- report
def table_rows(times: dict, tokens: dict) -> list[dict]:
    """One row per method: the median step (over every timed step of every round: other jobs on the
    machine make single steps slow, and the median ignores them) and its difference to SFT's."""
    base = statistics.median(times["sft"]) if "sft" in times else None
    rows = []
    for name, samples in times.items():
        s = statistics.median(samples)
        own = s - base if base is not None else None
        official = OFFICIAL_S.get(name)
        rows.append({"method": name, "ms": s * 1000, "x_sft": s / base if base else None,
                     "tokens": tokens[name], "own_ms": own * 1000 if own is not None else None,
                     "official_s": official,
                     "speedup": official / own if official and own and own > 0 else None})
    return rows


def format_table(rows: list[dict]) -> str:
    def f(value, spec, width):
        return f"{value:{width}{spec}}" if value is not None else f"{'-':>{width}}"

    lines = [f"{'method':<13} {'ms/step':>9} {'x SFT':>7} {'tok/step':>8} {'own cost (ms)':>13} "
             f"{'official fwd+bwd (s)':>20} {'official/own':>12}"]
    for r in rows:
        lines.append(f"{r['method']:<13} {f(r['ms'], '.1f', 9)} {f(r['x_sft'], '.2f', 7)} {r['tokens']:8.0f} "
                     f"{f(r['own_ms'], '.1f', 13)} {f(r['official_s'], '.1f', 20)} {f(r['speedup'], '.1f', 12)}")
    return "\n".join(lines)


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    from ctkd_bench import _allocator, _huge_pages
    _huge_pages.enable()          # as `ctkd-bench run` does for suites of pretrained models
    _allocator.keep_freed_memory()    # as `ctkd-bench run` does for every suite
    import torch

    from ctkd_bench.defaults import cache_root

    root = args.standin_dir or cache_root() / "paper-scale" / "standin"
    models = standin_models(Path(root), args.width)
    from transformers import AutoTokenizer

    student_tok = AutoTokenizer.from_pretrained(models["student"])
    teacher_tok = AutoTokenizer.from_pretrained(models["teacher"])
    n = args.batch * (args.warmup + args.steps)
    scratch = cache_root() / "paper-scale" / f"run-{n}x{args.length}-w{args.width}"
    data = scratch / "long.jsonl"
    if not data.exists():
        write_long_examples(data, student_tok, n, args.length)
    # max length = --length: every example is cut to exactly that many student tokens (BOS .. EOS)
    suite_path = write_suite(scratch, models, data, n, args.batch, args.length, args.max_new_tokens)
    times, tokens = measure(args, suite_path)
    rows = table_rows(times, tokens)
    width = {role: _width(f) for role, f in models.items()}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"paper scale: {args.batch} examples x {args.length} student tokens; student GPT-2 vocabulary "
          f"{len(student_tok)} (width {width['student']}), teacher Qwen vocabulary {len(teacher_tok)} "
          f"(width {width['teacher']}); torch threads {torch.get_num_threads()}, load {load:.1f}; "
          f"median of {args.rounds} round(s) x {args.steps} timed step(s). Official plain KL step: "
          f"~{OFFICIAL_PLAIN_KL_S} s.")
    print(format_table(rows))
    return rows


def _width(folder: Path) -> int:
    import json
    config = json.loads((folder / "config.json").read_text())
    return config.get("hidden_size") or config.get("n_embd")


if __name__ == "__main__":
    main()
