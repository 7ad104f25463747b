"""Run one cell (track x method x seed) under the suite's budget and return its record fields."""
from __future__ import annotations

import random
from typing import Iterator

import torch

from ..batch import PairBatch, TeacherSignals
from ..data.collate import pad_side
from ..evaluate.encoder import evaluate_encoder
from ..evaluate.lmeval import evaluate_causal
from ..method import MethodContext
from ..models.sources import fresh_student
from ..teacher.generate import cached_generations
from ..train.budget import BudgetMeter, ReadOnlyMeter
from ..train.accel import backend_for
from ..train.trainer import train
from .environment import TrackEnv
from .faults import checkpoint
from .progress import bar


def data_order(n: int, seed: int, needed: int) -> list[int]:
    """The example order for a seed: the same for every method (shuffled epochs, cycled)."""
    rng = random.Random(seed * 1_000_003 + 17)
    order: list[int] = []
    while len(order) < needed:
        epoch = list(range(n))
        rng.shuffle(epoch)
        order += epoch
    return order[:needed]


class CellData:
    """Batches (PairBatch + the declared TeacherSignals) for one cell, in the seed's order."""

    def __init__(self, env: TrackEnv, method, seed: int, generations: list[str] | None):
        self.env, self.method, self.seed = env, method, seed
        self.needs = method.needs
        self.generations = generations
        self.examples = env.train
        self.enc_s = env.encode(self.examples, "student", "train")
        self.enc_t = env.encode(self.examples, "teacher", "train")
        self.ekey = env.cache.ensure(self.enc_t, self.needs)
        self.views = {}
        for name, fn in getattr(method, "views", {}).items():
            view_examples = []
            for i, ex in enumerate(self.examples):
                ex = dict(ex, generation=generations[i] if generations else ex.get("response", ""))
                prompt, response = fn(ex)
                view_examples.append(dict(ex, prompt=prompt, response=response))
            key = f"view:{name}:{id(fn)}"
            enc_s = env.encode(view_examples, "student", key)
            enc_t = env.encode(view_examples, "teacher", key)
            self.views[name] = (view_examples, enc_s, enc_t, env.cache.ensure(enc_t, self.needs))

    def _pair(self, idx: list[int], examples, enc_s, enc_t, ekey, gens) -> tuple[PairBatch, TeacherSignals]:
        env = self.env
        student = pad_side([enc_s[i] for i in idx], env.student_tokenizer)
        teacher = pad_side([enc_t[i] for i in idx], env.teacher_tokenizer)
        exs = [examples[i] for i in idx]
        encoder = env.encoder
        batch = PairBatch(
            track=env.track.task, ids=[str(e.get("id", i)) for e, i in zip(exs, idx)],
            texts=[e["text"] if encoder else e["prompt"] + e["response"] for e in exs],
            prompt_chars=[0 if encoder else len(e["prompt"]) for e in exs],
            student=student, teacher=teacher,
            targets=torch.tensor([int(e["label"]) for e in exs]) if encoder else None)
        signals = env.cache.signals(ekey, idx, teacher, self.needs,
                                    [gens[i] for i in idx] if gens is not None else None)
        return batch, signals

    def batches(self, steps: int, per_step: int, shard=None) -> Iterator[tuple[PairBatch, TeacherSignals]]:
        """`shard` picks this process's rows of each step (several processes train one cell)."""
        order = data_order(len(self.examples), self.seed, steps * per_step)
        for s in range(steps):
            idx = order[s * per_step:(s + 1) * per_step]
            idx = shard(idx) if shard else idx
            batch, signals = self._pair(idx, self.examples, self.enc_s, self.enc_t, self.ekey, self.generations)
            views = {}
            for name, (vex, vs, vt, vkey) in self.views.items():
                vb, vsig = self._pair(idx, vex, vs, vt, vkey, self.generations)
                batch.views[name] = vb
                views[name] = vsig
            if views:
                signals = TeacherSignals(signals._needs, signals._values, views)
            yield batch, signals


def evaluate_model(env: TrackEnv, model, tokenizer) -> tuple[dict, dict]:
    checkpoint("eval")
    if env.test_sets:  # several named evaluation sets: per-set metrics and their mean
        from ..evaluate.sets import evaluate_sets
        return evaluate_sets(lambda examples: evaluate_examples(env, model, tokenizer, examples), env.test_sets)
    return evaluate_examples(env, model, tokenizer, env.test)


def evaluate_examples(env: TrackEnv, model, tokenizer, examples: list[dict]) -> tuple[dict, dict]:
    budget = env.budget
    if env.encoder:
        return evaluate_encoder(model, tokenizer, examples, budget.max_length, budget.eval_batch_size), {}
    return evaluate_causal(model, tokenizer, env.track.task, examples, env.track.max_new_tokens,
                           budget.eval_batch_size, max(budget.max_length, 256) + env.track.max_new_tokens,
                           stop=env.track.stop)


def method_context(env: TrackEnv, method, seed: int, student, meter, artifact_dir) -> MethodContext:
    needs = method.needs
    return MethodContext(
        track=env.track.task, seed=seed,
        student_tokenizer=env.student_tokenizer, teacher_tokenizer=env.teacher_tokenizer,
        student_dims=env.dims(student, env.student_tokenizer), teacher_dims=env.teacher_dims,
        artifact_dir=artifact_dir, train_examples=list(env.train),
        teacher_embeddings=env.head.embeddings if needs.embeddings else None,
        teacher_lm_head=env.head.lm_head if needs.lm_head else None,
        meter=ReadOnlyMeter(meter))


def teacher_generations(env: TrackEnv, method, meter: BudgetMeter) -> list[str]:
    """The teacher's generations for the training prompts (cached; charged to every cell that uses them)."""
    make_prompt = method.generation_prompt or (lambda example: example["prompt"])
    prompts = [make_prompt(e) for e in env.train]
    with bar(total=len(prompts), desc="teacher generations") as pb:
        texts, tokens, _ = cached_generations(env.cache.root, env.teacher_key, env.teacher, env.teacher_tokenizer,
                                              prompts, env.track.max_new_tokens, progress=pb.update,
                                              settings=dict(method.generation_settings))
    meter.generated_tokens += tokens
    return texts


def run_cell(env: TrackEnv, method, seed: int, artifact_dir, progress_desc: str = "") -> tuple[dict, dict, dict]:
    """Train and evaluate one method cell; returns (metrics, costs, lm_eval meta). Raises on failure."""
    budget = env.budget
    meter = BudgetMeter(max_steps=budget.steps, max_examples=budget.steps * budget.examples_per_step)
    torch.manual_seed(seed)
    student = fresh_student(env.student_spec, env.student_tokenizer, seed, env.encoder, env.num_labels)
    with meter.phase("prepare"):
        ctx = method_context(env, method, seed, student, meter, artifact_dir)
        generations = teacher_generations(env, method, meter) if method.needs.generations else None
        if generations is not None:
            ctx.state["generations"] = generations
        method.prepare(ctx)
        extra = method.setup(ctx)
        method.modules = extra
        meter.extra_params = sum(p.numel() for p in extra.parameters()) if extra is not None else 0
        data = CellData(env, method, seed, generations)
    vocab = None if env.encoder else len(env.student_tokenizer)
    backend = backend_for(budget.precision)  # plain PyTorch, or accelerate for bf16 / several processes
    with meter.phase("train"), bar(total=budget.steps, desc=progress_desc or "train") as pb:
        batches = data.batches(budget.steps, budget.examples_per_step, shard=backend.shard)
        train(student, method, batches, budget, meter, vocab, extra, backend=backend,
              progress=lambda step, terms: (pb.update(1), pb.set_postfix(loss=f"{terms.get('loss', 0):.3f}")))
        backend.finish(student, meter)
    with meter.phase("eval"):
        metrics, meta = evaluate_model(env, student, env.student_tokenizer)
    return metrics, meter.as_dict(), meta
