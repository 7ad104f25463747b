"""What a method sees: the batch (both tokenisations), student outputs, teacher signals.

Label convention (one for the whole core, HF style): ``labels[b, t]`` is the
token id at position t on response tokens (EOS included) and -100 on BOS,
prompt and padding; ``logits[b, t]`` predicts ``input_ids[b, t + 1]``, so a
loss shifts by one. Padding is on the right unless ``Side.padding_side`` says
otherwise. Character offsets index into ``PairBatch.texts[b]`` (prompt +
response); special and padding tokens have the empty span (p, p).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from .errors import UndeclaredSignalError
from .method import Needs


@dataclass
class Side:
    """One tokenisation of the batch texts (student's or teacher's)."""
    input_ids: torch.Tensor        # [B, L] long
    attention_mask: torch.Tensor   # [B, L] long, 1 = real token
    labels: torch.Tensor | None    # [B, L] long, HF unshifted, -100 = not a target (None on encoder tracks)
    offsets: torch.Tensor          # [B, L, 2] long character spans into the text; pads (p, p)
    tokens: list[list[str]]        # token strings per row, unpadded (length = number of real tokens)
    padding_side: str = "right"

    @property
    def lengths(self) -> torch.Tensor:
        return self.attention_mask.sum(-1)

    @property
    def position_ids(self) -> torch.Tensor:
        """Positions counted over real tokens only, so left padding does not shift them."""
        return (self.attention_mask.cumsum(-1) - 1).clamp(min=0)

    @property
    def response_mask(self) -> torch.Tensor:
        """[B, L] bool: positions whose token is a training target."""
        if self.labels is None:
            return self.attention_mask.bool()
        return self.labels != -100

    def to(self, device) -> "Side":
        return Side(self.input_ids.to(device), self.attention_mask.to(device),
                    None if self.labels is None else self.labels.to(device),
                    self.offsets.to(device), self.tokens, self.padding_side)


@dataclass
class PairBatch:
    """The same texts tokenised by the student and by the teacher."""
    track: str
    ids: list[str]
    texts: list[str]               # prompt + response (causal) or the sentence (encoder)
    prompt_chars: list[int]        # character length of the prompt part of each text
    student: Side
    teacher: Side
    targets: torch.Tensor | None = None   # encoder tracks: class ids [B]
    views: dict[str, "PairBatch"] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts)

    def to(self, device) -> "PairBatch":
        return PairBatch(self.track, self.ids, self.texts, self.prompt_chars,
                         self.student.to(device), self.teacher.to(device),
                         None if self.targets is None else self.targets.to(device),
                         {k: v.to(device) for k, v in self.views.items()})


@dataclass
class StudentOutputs:
    """The student's forward pass on `batch.student` (computed by the core, with grad)."""
    logits: torch.Tensor                     # [B, L_s, V_s] causal (sliced to the real vocab); [B, C] encoder
    ce: torch.Tensor                         # scalar task loss (mean token CE / mean class CE): the SFT loss
    hidden_states: tuple[torch.Tensor, ...] | None = None   # when needs.student_hidden_states
    attentions: tuple[torch.Tensor, ...] | None = None      # when needs.student_attentions
    embedding_weight: torch.Tensor | None = None            # live student input-embedding table [V_s, d_s]
    lm_head_weight: torch.Tensor | None = None              # live student output projection [V_s, d_s]
    views: dict[str, "StudentOutputs"] = field(default_factory=dict)


SIGNAL_FIELDS = {
    # field -> predicate on Needs that allows reading it
    "logits": lambda n: n.logits,
    "class_logits": lambda n: n.logits,
    "topk_logprobs": lambda n: n.topk > 0,
    "topk_ids": lambda n: n.topk > 0,
    "token_logprobs": lambda n: n.token_logprobs,
    "hidden_states": lambda n: bool(n.hidden_states),
    "attentions": lambda n: bool(n.attentions),
    "embeddings": lambda n: n.embeddings,
    "lm_head": lambda n: n.lm_head,
    "generations": lambda n: n.generations,
}


class TeacherSignals:
    """Read-only teacher signals for one batch; only what the method declared is readable.

    - ``logits``: [B, L_t, V_t] float32 (causal) — row t predicts teacher token t+1.
    - ``class_logits``: [B, C] (encoder tracks), readable with ``needs.logits``.
    - ``topk_logprobs`` / ``topk_ids``: [B, L_t, k], sorted descending.
    - ``token_logprobs``: [B, L_t]; entry t = log p_T(input_ids[t+1] | ..t); 0 where t+1 is padding.
    - ``hidden_states``: {layer: [B, L_t, d_t]} for the declared layers (HF indexing).
    - ``attentions``: {layer: [B, H, L_t, L_t]} for the declared layers.
    - ``embeddings`` / ``lm_head``: [V_t, d_t] frozen copies.
    - ``generations``: list[str], the teacher's generated response per example.
    Padding positions hold zeros. Nothing here requires grad.
    """

    def __init__(self, needs: Needs, values: dict[str, Any],
                 views: dict[str, "TeacherSignals"] | None = None):
        object.__setattr__(self, "_needs", needs)
        object.__setattr__(self, "_values", values)
        object.__setattr__(self, "views", views or {})

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        allowed = SIGNAL_FIELDS.get(name)
        if allowed is None:
            raise AttributeError(f"TeacherSignals has no field {name!r}")
        if not allowed(self._needs):
            raise UndeclaredSignalError(
                f"the method read teacher signal {name!r} without declaring it in `needs`")
        try:
            return self._values[name]
        except KeyError:
            raise UndeclaredSignalError(f"teacher signal {name!r} is not available on this track") from None

    def __setattr__(self, name, value):
        raise AttributeError("TeacherSignals is read-only")

    def available(self) -> list[str]:
        return sorted(self._values)
