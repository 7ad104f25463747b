"""Per-track environment shared by every cell of a run: data, tokenizers, teacher, signal cache.

Everything here is built once per process and cached on disk by content hash
($CTKD_CACHE): tokenizers, the trained teacher, teacher signals, generations.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from ..data.collate import Encoded, encode_causal, encode_encoder
from ..method import ModelDims
from ..models.registry import resolve_folder
from ..models.sources import build_tokenizer_key, load_pretrained, load_tokenizer, tokenizer_hash
from ..specs import ModelSpec, SuiteSpec, TokenizerSpec, TrackSpec, is_encoder_track
from ..teacher.cache import TeacherCache
from ..teacher.signals import TeacherHead
from ..teacher.train_teacher import teacher_folder, train_teacher
from ..util import stable_hash
from .faults import checkpoint
from .progress import bar


def _example_text(e: dict) -> str:
    return e["text"] if "text" in e else e["prompt"] + e["response"]


@dataclass
class TrackEnv:
    suite: SuiteSpec
    track: TrackSpec
    student_spec: ModelSpec
    teacher_spec: ModelSpec
    student_tokenizer: object
    teacher_tokenizer: object
    teacher: object
    teacher_key: str
    train: list[dict]
    test: list[dict]
    cache: TeacherCache
    num_labels: int = 0
    test_sets: dict = field(default_factory=dict)   # name -> examples when a track has several sets
    _enc: dict = field(default_factory=dict)

    @property
    def encoder(self) -> bool:
        return is_encoder_track(self.track)

    @property
    def budget(self):
        """This track's budget (the suite's, with the track's own step count when it sets one)."""
        return self.suite.budget_for(self.track.name)

    @cached_property
    def head(self) -> TeacherHead:
        return self.cache.head

    def dims(self, model, tokenizer) -> ModelDims:
        c = model.config
        return ModelDims(len(tokenizer), c.hidden_size, c.num_hidden_layers, c.num_attention_heads)

    @cached_property
    def teacher_dims(self) -> ModelDims:
        return self.dims(self.teacher, self.teacher_tokenizer)

    def encode(self, examples: list[dict], side: str, key: str) -> list[Encoded]:
        """Encodings of `examples` for 'student' or 'teacher', memoised under `key`."""
        memo = (side, key)
        if memo not in self._enc:
            tok = self.student_tokenizer if side == "student" else self.teacher_tokenizer
            L = self.suite.budget.max_length
            if self.encoder:
                self._enc[memo] = [encode_encoder(tok, e["text"], L) for e in examples]
            else:
                self._enc[memo] = [encode_causal(tok, e["prompt"], e["response"], L) for e in examples]
        return self._enc[memo]


class SuiteEnvironment:
    """Builds and memoises `TrackEnv`s for a suite."""

    def __init__(self, suite: SuiteSpec, cache_root: Path):
        self.suite, self.cache_root = suite, Path(cache_root)
        self._splits: dict[str, dict[str, list[dict]]] = {}
        self._test_sets: dict[str, dict[str, list[dict]]] = {}
        self._tokenizers: dict[str, object] = {}
        self._folders: dict[str, Path] = {}
        self._teachers: dict[str, tuple[object, str]] = {}
        self._tracks: dict[str, TrackEnv] = {}

    def teacher_examples(self, track: TrackSpec) -> int:
        pair = self.suite.pair(track.pair)
        spec = self.suite.model(pair.teacher)
        return max(track.train, spec.train.examples if spec.train else 0)

    def splits(self, track: TrackSpec) -> dict[str, list[dict]]:
        if track.name not in self._splits and track.data is not None:
            from ..data.sources import load_track_data
            sizes = {"train": track.train, "validation": track.validation, "test": track.test}
            self._splits[track.name], self._test_sets[track.name] = load_track_data(
                track.data, track.name, is_encoder_track(track), sizes, f"{self.suite.name}.tracks.{track.name}.data")
        if track.name not in self._splits:
            from ..data.tasks import make_splits
            sizes = {"train": self.teacher_examples(track), "validation": track.validation, "test": track.test}
            raw = make_splits(track.generator or track.task, sizes, self.suite.seed)
            self._splits[track.name] = {k: [dict(r) for r in v] for k, v in raw.items()}
        return self._splits[track.name]

    def student_train(self, track: TrackSpec) -> list[dict]:
        """The student's training examples: the first ``track.train`` of the teacher's, a ``track.noise``
        share of them with the task's wrong answer (the teacher learnt the clean ones)."""
        train = self.splits(track)["train"][:track.train]
        if not track.noise:
            return train
        from ..data.tasks import corrupt_share
        return corrupt_share(track.generator or track.task, train, track.noise, self.suite.seed)

    def tokenizer_corpus(self, tokenizer_name: str) -> list[str]:
        """Training text of the `build` tokenizer `tokenizer_name`: the train splits of every track it serves."""
        texts = []
        for track in self.suite.tracks:
            pair = self.suite.pair(track.pair)
            users = {self.suite.model(pair.teacher).tokenizer, self.suite.model(pair.student).tokenizer}
            if tokenizer_name in users:
                texts += [_example_text(e) for e in self.splits(track)["train"]]
        return texts

    def build_tokenizer_key(self, name: str) -> str:
        """Cache and pin key of the suite's `build` tokenizer `name` (generates its corpus; trains nothing)."""
        return build_tokenizer_key(self.suite.tokenizer(name), self.tokenizer_corpus(name))

    def tokenizer(self, model: ModelSpec):
        name = model.tokenizer if model.source == "build" else f"model:{model.name}"
        if name not in self._tokenizers:
            if model.source == "build":
                spec = self.suite.tokenizer(model.tokenizer)
            else:  # a pretrained model brings its own tokenizer
                spec = TokenizerSpec(name=model.name, source="local", path=str(self.model_folder(model)))
            self._tokenizers[name] = load_tokenizer(spec, self.cache_root, lambda: self.tokenizer_corpus(spec.name))
        return self._tokenizers[name]

    def model_folder(self, spec: ModelSpec) -> Path:
        """The local folder of a pretrained model (downloaded or converted on first use)."""
        if spec.name not in self._folders:
            self._folders[spec.name] = resolve_folder(spec, self.cache_root)
        return self._folders[spec.name]

    def teacher(self, spec: ModelSpec, encoder: bool, num_labels: int):
        """The teacher model and its cache key (trained on first use for `build`)."""
        if spec.name in self._teachers:
            return self._teachers[spec.name]
        tok = self.tokenizer(spec)
        pretrained = self.model_folder(spec) if spec.source != "build" else None
        if pretrained is not None and spec.train is None:
            model = load_pretrained(pretrained, encoder, spec.trust_remote_code, num_labels)
            key = {"path": str(spec.path), "name": spec.name}
            if spec.source not in ("local", "hf"):      # e.g. pip-gguf: the folder name carries the content hash
                key["folder"] = pretrained.name
            key = stable_hash(key)
        else:      # built by the suite, or a pretrained model fine-tuned once on the suite's data (`train`)
            tracks = [t for t in self.suite.tracks if self.suite.pair(t.pair).teacher == spec.name]
            examples = [e for t in tracks for e in self.splits(t)["train"]]
            L = self.suite.budget.max_length
            folder = teacher_folder(self.cache_root, spec, tokenizer_hash(tok), examples, L, num_labels)
            if (folder / "config.json").exists():
                model = load_pretrained(folder, encoder, spec.trust_remote_code, num_labels=num_labels)
            else:
                steps = spec.train.steps if spec.train else 1000
                with bar(total=steps, desc=f"train teacher {spec.name}") as pb:
                    model = train_teacher(spec, tok, examples, encoder, num_labels, L, folder, self.suite.seed,
                                          progress=lambda n, loss: (pb.update(n), pb.set_postfix(loss=f"{loss:.3f}")),
                                          init_folder=pretrained)
            key = folder.name
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        self._teachers[spec.name] = (model, key)
        return self._teachers[spec.name]

    def track(self, name: str) -> TrackEnv:
        if name in self._tracks:
            return self._tracks[name]
        track = self.suite.track(name)
        pair = self.suite.pair(track.pair)
        t_spec, s_spec = self.suite.model(pair.teacher), self.suite.model(pair.student)
        splits = self.splits(track)
        encoder = is_encoder_track(track)
        num_labels = 1 + max(int(e["label"]) for e in splits["train"]) if encoder else 0
        teacher, key = self.teacher(t_spec, encoder, num_labels)
        t_tok = self.tokenizer(t_spec)
        head = TeacherHead.from_model(teacher, len(t_tok))
        cache = TeacherCache(self.cache_root / "signals", teacher, key, head, encoder, t_tok,
                             self.suite.budget.eval_batch_size)
        env = TrackEnv(self.suite, track, s_spec, t_spec, self.tokenizer(s_spec), t_tok, teacher, key,
                       self.student_train(track), splits["test"], cache, num_labels,
                       self._test_sets.get(name, {}))
        self._tracks[name] = env
        checkpoint("prepare")
        return env
