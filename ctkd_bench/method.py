"""The method contract: what a distillation method plugin provides.

A method only computes a loss. The core owns the data, the optimiser, the
training loop, the budget and evaluation; the method sees a `PairBatch`, the
student's outputs and the teacher signals it declared in `needs`.

Minimal plugin::

    from dataclasses import dataclass
    from ctkd_bench import Method, Needs, Paper, hookimpl

    class MyKD(Method):
        name = "mykd"
        category = "probability-distribution alignment"
        summary = "One sentence: the idea."
        paper = Paper(title="...", url="https://...", venue="...")
        tracks = ("lm", "math", "instruct")
        needs = Needs(topk=20)

        @dataclass(frozen=True)
        class Config:
            weight: float = 0.5

        def loss(self, batch, student, teacher):
            ce = student.ce
            return {"loss": ce, "ce": ce}

    @hookimpl
    def ctkd_register_methods(register):
        register(MyKD)
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping

from .defaults import API_VERSION, ALL_TRACKS
from .errors import ConfigError
from .util import did_you_mean

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from .batch import PairBatch, StudentOutputs, TeacherSignals


@dataclass(frozen=True)
class Paper:
    title: str
    url: str = ""
    venue: str = ""


@dataclass(frozen=True)
class Needs:
    """The teacher (and student) signals a method reads. The core provides exactly these.

    Layer indices follow HF ``hidden_states``/``attentions`` order: for hidden
    states 0 is the embedding output and -1 the last (post-final-norm) state.
    """
    logits: bool = False            # full teacher logits [B, L_t, V_t] (real vocabulary only)
    topk: int = 0                   # top-k teacher log-probs and ids [B, L_t, k]
    token_logprobs: bool = False    # teacher log-prob of its own next token [B, L_t]
    hidden_states: tuple[int, ...] = ()
    attentions: tuple[int, ...] = ()
    embeddings: bool = False        # teacher input-embedding table [V_t, d_t] (frozen copy)
    lm_head: bool = False           # teacher output-projection weight [V_t, d_t] (frozen copy)
    generations: bool = False       # teacher-generated responses for the training prompts
    student_hidden_states: bool = False
    student_attentions: bool = False

    def teacher_signal_kinds(self) -> list[str]:
        kinds = [k for k in ("logits", "token_logprobs", "embeddings", "lm_head", "generations")
                 if getattr(self, k)]
        if self.topk:
            kinds.append("topk")
        if self.hidden_states:
            kinds.append("hidden_states")
        if self.attentions:
            kinds.append("attentions")
        return kinds

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ModelDims:
    vocab_size: int        # real tokenizer vocabulary (logits are sliced to it)
    hidden_size: int
    num_layers: int
    num_heads: int


@dataclass
class MethodContext:
    """What `prepare` and `setup` may use. Built by the core for each cell."""
    track: str
    seed: int
    student_tokenizer: Any
    teacher_tokenizer: Any
    student_dims: ModelDims
    teacher_dims: ModelDims
    artifact_dir: Any                          # pathlib.Path, per (method, tokenizer pair)
    train_examples: list[dict] = field(default_factory=list)
    teacher_embeddings: "torch.Tensor | None" = None   # only when needs.embeddings
    teacher_lm_head: "torch.Tensor | None" = None      # only when needs.lm_head
    meter: Any = None
    state: dict[str, Any] = field(default_factory=dict)  # method's own prepared data


class Method:
    """Base class of every distillation method (built-in or third-party)."""

    api_version: ClassVar[int] = API_VERSION
    name: ClassVar[str]
    category: ClassVar[str]
    summary: ClassVar[str]
    paper: ClassVar[Paper]
    tracks: ClassVar[tuple[str, ...]] = ALL_TRACKS
    needs: ClassVar[Needs] = Needs()
    # Extra formats of each training example the teacher and student should also see,
    # e.g. CoT2Align's chain-of-thought view: name -> f(example) -> (prompt, response).
    views: ClassVar[Mapping[str, Callable[[dict], tuple[str, str]]]] = {}
    variant: ClassVar[str] = "official"  # which code path the defaults reproduce
    # With needs.generations: the prompt the teacher continues for each training example
    # (None: the example's own prompt) and the `generate` settings (empty: greedy).
    generation_prompt: ClassVar[Callable[[dict], str] | None] = None
    generation_settings: ClassVar[Mapping[str, Any]] = {}

    @dataclass(frozen=True)
    class Config:
        pass

    def __init__(self, config: Any | None = None):
        self.config = config if config is not None else self.Config()
        self.modules = None  # set by the core to what `setup` returned

    # -- optional one-off work ------------------------------------------------
    def prepare(self, ctx: MethodContext) -> None:
        """One-off work (vocabulary maps, ...). Its time is metered as the prepare phase."""

    def setup(self, ctx: MethodContext) -> "torch.nn.Module | None":
        """Return extra trainable modules (projectors); they are counted as cost."""
        return None

    def extra_lr(self) -> float | None:
        """Learning rate for the modules from `setup` (None: the student's)."""
        return getattr(self.config, "projector_lr", None)

    def loss(self, batch: "PairBatch", student: "StudentOutputs",
             teacher: "TeacherSignals") -> dict[str, "torch.Tensor"]:
        """Return named loss terms; the key ``"loss"`` is the total that is minimised."""
        raise NotImplementedError

    # -- helpers ----------------------------------------------------------------
    @classmethod
    def make_config(cls, overrides: Mapping[str, Any] | None = None, where: str = "") -> Any:
        return build_config(cls.Config, overrides or {}, where or f"methods.{cls.name}")

    @classmethod
    def describe(cls) -> dict[str, Any]:
        return {
            "name": cls.name,
            "category": cls.category,
            "summary": cls.summary,
            "paper": dataclasses.asdict(cls.paper),
            "tracks": list(cls.tracks),
            "needs": cls.needs.teacher_signal_kinds(),
            "variant": cls.variant,
            "config": config_as_dict(cls.Config()),
        }


def config_as_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(vars(config))


def build_config(config_cls: type, overrides: Mapping[str, Any], where: str) -> Any:
    """Instantiate a dataclass config from user overrides, naming the bad field on error."""
    if not isinstance(overrides, Mapping):
        raise ConfigError(f"{where}: expected a mapping of config fields, got {type(overrides).__name__}")
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    defaults = config_cls()
    values = {}
    for key, value in overrides.items():
        if key not in fields:
            raise ConfigError(f"{where}.{key}: unknown config field{did_you_mean(str(key), fields)}")
        default = getattr(defaults, key)
        if default is None and value is not None:  # `x: float | None = None`: check against the annotation
            default = _optional_kind_example(config_cls, key)
        values[key] = _coerce(value, default, f"{where}.{key}")
    try:
        return dataclasses.replace(defaults, **values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _optional_kind_example(config_cls: type, key: str) -> Any:
    """A value of the non-None type of an Optional field (bool/int/float/str), else None (no check)."""
    import typing
    try:
        hint = typing.get_type_hints(config_cls).get(key)
    except Exception:  # an annotation that does not resolve: accept the value as before
        return None
    kinds = [k for k in typing.get_args(hint) if k is not type(None)]
    if len(kinds) == 1 and kinds[0] in (bool, int, float, str):
        return kinds[0]()
    return None


def _coerce(value: Any, default: Any, where: str) -> Any:
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if isinstance(default, int) and not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return type(default)(value)
    if isinstance(default, str) and not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return tuple(value)
    return value
