"""Run a method the way the core does, on the toy pair of one track family.

The harness mirrors the trainer's calls: ``prepare(ctx)``, ``setup(ctx)`` (its
result becomes ``method.modules``), then per step a `PairBatch` from
`collate_pair`, the student forward with grad, the declared teacher signals and
``method.loss``. Toy models stand in for real ones: the causal family uses
``toy_pair("instruct")`` (byte-level BPE teacher, Unigram student), the encoder
family ``toy_pair("embed")`` (Unigram teacher, WordPiece student).

Teacher generations (``needs.generations``) are faked with the gold response:
the toy teacher is untrained, and the kit tests plumbing, not quality. As in the
core, each example handed to a view function carries the generation under
`GENERATION_KEY` (the gold response when the method declares no generations).
"""
from __future__ import annotations

import dataclasses
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from ..batch import PairBatch, StudentOutputs, TeacherSignals
from ..data.collate import collate_pair
from ..defaults import CAUSAL_TRACKS, ENCODER_TRACKS
from ..teacher.signals import live_teacher_signals
from ..toy import ToyPair, toy_context, toy_pair
from ..train.budget import BudgetMeter
from ..train.trainer import forward_student

GENERATION_KEY = "generation"
MAX_LEN = 48
FAMILY_PAIR = {"causal": "instruct", "encoder": "embed"}  # family -> toy pair track


def family_of(track: str) -> str:
    return "encoder" if track in ENCODER_TRACKS else "causal"


def families(declared_tracks, wanted=None) -> list[tuple[str, str]]:
    """(family, representative track) for each track family the method declares.

    `wanted` narrows it down: track names or family names ("causal", "encoder").
    """
    out = []
    for family, pool in (("causal", CAUSAL_TRACKS), ("encoder", ENCODER_TRACKS)):
        tracks = [t for t in declared_tracks if t in pool]
        if wanted and family not in wanted:
            tracks = [t for t in tracks if t in wanted]
        if tracks:
            out.append((family, tracks[0]))
    return out


def seed_everything(seed: int) -> None:
    """Seed what the core seeds (``torch.manual_seed`` per cell): other generators stay unseeded."""
    torch.manual_seed(seed)


@dataclass
class Step:
    """Everything one ``method.loss`` call receives."""
    batch: PairBatch
    student: StudentOutputs
    teacher: TeacherSignals


class RecordingSignals(TeacherSignals):
    """`TeacherSignals` that remembers which fields the method read."""

    def __init__(self, needs, values, views, reads: set):
        super().__init__(needs, values, views)
        object.__setattr__(self, "_reads", reads)

    def __getattr__(self, name):
        value = super().__getattr__(name)
        self._reads.add(name)
        return value


class Harness:
    """One method class, one config, one track family, on the toy pair."""

    def __init__(self, method_cls, config, track: str, seed: int = 0):
        self.method_cls = method_cls
        self.config = config
        self.track = track
        self.family = family_of(track)
        self.seed = seed
        self.pair: ToyPair = toy_pair(FAMILY_PAIR[self.family])
        self.artifact_dir = Path(tempfile.mkdtemp(prefix="ctkd-check-"))
        # as the core builds it: teacher tensors only when declared, a fresh budget meter
        self.ctx = dataclasses.replace(
            toy_context(self.pair, self.artifact_dir, seed), track=track, meter=BudgetMeter(),
            teacher_embeddings=self.pair.head.embeddings if self.needs.embeddings else None,
            teacher_lm_head=self.pair.head.lm_head if self.needs.lm_head else None)
        if self.needs.generations:  # the core hands prepare() the generations too (gold, here)
            self.ctx.state["generations"] = [ex.get("response", "") for ex in self.ctx.train_examples]
        self.reads: set[str] = set()
        self._student_state = {k: v.detach().clone() for k, v in self.pair.student.state_dict().items()}

    @property
    def needs(self):
        return self.method_cls.needs

    def close(self) -> None:
        """Undo anything a method did to the shared toy student; drop the artifacts."""
        self.pair.student.load_state_dict(self._student_state)
        self.pair.student.zero_grad(set_to_none=True)
        shutil.rmtree(self.artifact_dir, ignore_errors=True)

    def student_mutated(self) -> bool:
        now = self.pair.student.state_dict()
        return any(not torch.equal(now[k], v) for k, v in self._student_state.items())

    # -- the method, as the core builds it ------------------------------------------
    def new_method(self):
        seed_everything(self.seed)
        method = self.method_cls(self.config)
        method.prepare(self.ctx)
        method.modules = method.setup(self.ctx)
        return method

    # -- data -----------------------------------------------------------------------
    def with_generation(self, example: dict) -> dict:
        return {**example, GENERATION_KEY: example.get("response", "")}

    def examples(self, n: int = 4, start: int = 0) -> list[dict]:
        return [dict(ex) for ex in self.pair.examples[start:start + n]]

    def batch(self, examples: list[dict], padding_side: str = "right") -> PairBatch:
        batch = self._collate(examples, padding_side)
        for name, view in self.method_cls.views.items():
            view_examples = []
            for ex in examples:
                prompt, response = view(self.with_generation(ex))
                view_examples.append(dict(ex, prompt=prompt, response=response))
            batch.views[name] = self._collate(view_examples, padding_side)
        return batch

    def _collate(self, examples, padding_side) -> PairBatch:
        batch = collate_pair(examples, self.track, self.pair.student_tokenizer,
                             self.pair.teacher_tokenizer, MAX_LEN, padding_side)
        batch.track = self.track
        return batch

    # -- forward passes ---------------------------------------------------------------
    def student_outputs(self, batch: PairBatch, needs=None) -> StudentOutputs:
        vocab = None if self.pair.encoder else len(self.pair.student_tokenizer)
        return forward_student(self.pair.student, batch, needs or self.needs, vocab)

    def teacher_signals(self, batch: PairBatch, generations: list[str] | None = None) -> TeacherSignals:
        """The declared signals on `batch` and on each of its views (faked generations: gold)."""
        if generations is None and self.needs.generations and not self.pair.encoder:
            generations = [text[start:] for text, start in zip(batch.texts, batch.prompt_chars)]
        main = live_teacher_signals(self.pair.teacher, batch.teacher, self.needs, self.pair.head,
                                    self.pair.encoder, generations)
        views = {name: self.teacher_signals(view, generations) for name, view in batch.views.items()}
        return RecordingSignals(self.needs, main._values, views, self.reads)

    def step(self, examples: list[dict], padding_side: str = "right") -> Step:
        batch = self.batch(examples, padding_side)
        return Step(batch, self.student_outputs(batch), self.teacher_signals(batch))

    def trainable(self, method) -> dict[str, torch.Tensor]:
        """Student and extra-module parameters, named, in a stable order."""
        named = {f"student.{k}": p for k, p in self.pair.student.named_parameters() if p.requires_grad}
        if isinstance(method.modules, torch.nn.Module):
            named.update({f"modules.{k}": p for k, p in method.modules.named_parameters() if p.requires_grad})
        return named

    def zero_grad(self, method) -> None:
        for p in self.trainable(method).values():
            p.grad = None
