"""A toy teacher-student pair built in seconds: for tests, the conformance kit and examples.

Two real tokenizer families trained locally (teacher byte-level BPE, student
SentencePiece-style Unigram on causal tracks; teacher Unigram, student
WordPiece on the encoder track) and tiny randomly initialised models.
"""
from __future__ import annotations

import random
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from .batch import PairBatch, StudentOutputs, TeacherSignals
from .data.collate import collate_pair
from .defaults import ENCODER_TRACKS
from .method import MethodContext, ModelDims
from .models.build import ArchSpec, build_model
from .models.tokenizers import train_tokenizer
from .teacher.signals import TeacherHead, live_teacher_signals
from .train.forward import student_forward

_WORDS = ("the cat dog sat ran on under mat red blue green big small one two three four five "
          "plus minus equals reverse sort count words letters answer is café naïve 東京 😀 über").split()


def toy_examples(n: int = 64, seed: int = 0, track: str = "instruct") -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(1, 6))]
        if track in ENCODER_TRACKS:
            out.append({"id": f"toy-{i}", "text": " ".join(words), "label": len(words) % 3})
        else:
            out.append({"id": f"toy-{i}", "prompt": f"Reverse: {' '.join(words)}\nAnswer:",
                        "response": " " + " ".join(reversed(words))})
    return out


@dataclass
class ToyPair:
    track: str
    student_tokenizer: object
    teacher_tokenizer: object
    student: torch.nn.Module
    teacher: torch.nn.Module
    head: TeacherHead
    examples: list[dict]

    @property
    def encoder(self) -> bool:
        return self.track in ENCODER_TRACKS


def _dims(model, tokenizer) -> ModelDims:
    c = model.config
    return ModelDims(len(tokenizer), c.hidden_size, c.num_hidden_layers, c.num_attention_heads)


@lru_cache(maxsize=None)
def toy_pair(track: str = "instruct", seed: int = 0) -> ToyPair:
    """A teacher/student pair with different tokenizers (cached per process)."""
    corpus = [ex.get("text") or ex["prompt"] + ex["response"] for ex in toy_examples(400, seed + 1, track)]
    corpus += ["".join(chr(c) for c in range(33, 127)), "Ünïcödé ‰ € — “quotes”"]
    root = Path(tempfile.mkdtemp(prefix="ctkd-toy-"))
    if track in ENCODER_TRACKS:
        t_tok = train_tokenizer("unigram", corpus, 400, root / "teacher")
        s_tok = train_tokenizer("wordpiece", corpus, 200, root / "student")
        t_spec, s_spec = ArchSpec("bert", 32, 2, 4, num_labels=3), ArchSpec("bert", 24, 2, 2, num_labels=3)
    else:
        t_tok = train_tokenizer("bpe", corpus, 400, root / "teacher")
        s_tok = train_tokenizer("unigram", corpus, 350, root / "student")
        t_spec, s_spec = ArchSpec("gpt2", 32, 2, 4), ArchSpec("llama", 24, 2, 2)
    teacher = build_model(t_spec, t_tok, seed=seed + 100).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    student = build_model(s_spec, s_tok, seed=seed)
    return ToyPair(track, s_tok, t_tok, student, teacher, TeacherHead.from_model(teacher, len(t_tok)),
                   toy_examples(64, seed, track))


def toy_batch(pair: ToyPair, n: int = 4, padding_side: str = "right", max_len: int = 48,
              examples: list[dict] | None = None) -> PairBatch:
    return collate_pair(examples or pair.examples[:n], pair.track, pair.student_tokenizer,
                        pair.teacher_tokenizer, max_len, padding_side)


def toy_context(pair: ToyPair, artifact_dir: Path | None = None, seed: int = 0) -> MethodContext:
    return MethodContext(
        track=pair.track, seed=seed,
        student_tokenizer=pair.student_tokenizer, teacher_tokenizer=pair.teacher_tokenizer,
        student_dims=_dims(pair.student, pair.student_tokenizer),
        teacher_dims=_dims(pair.teacher, pair.teacher_tokenizer),
        artifact_dir=Path(artifact_dir or tempfile.mkdtemp(prefix="ctkd-artifacts-")),
        train_examples=list(pair.examples),
        teacher_embeddings=pair.head.embeddings, teacher_lm_head=pair.head.lm_head,
    )


def toy_forward(pair: ToyPair, method, batch: PairBatch,
                generations: list[str] | None = None) -> tuple[StudentOutputs, TeacherSignals]:
    """Student outputs (with grad) and the declared teacher signals for `batch`."""
    needs = method.needs
    vocab = None if pair.encoder else len(pair.student_tokenizer)
    student = student_forward(pair.student, batch.student, needs, vocab, batch.targets)
    teacher = live_teacher_signals(pair.teacher, batch.teacher, needs, pair.head, pair.encoder, generations)
    return student, teacher
