"""VocAgnoLM: vocabulary-agnostic teacher-guided language modelling (re-implemented from the paper).

Paper: H. Shin, L. Ji, X. Liu, Y. Gong, "Overcoming Vocabulary Mismatch: Vocabulary-agnostic Teacher
Guided Language Modeling", ICML 2025, arXiv:2503.19123. Sec. 3: Algorithm 1 (token-level lexical
alignment by character offsets) and the Teacher Guided Loss (a Rho-1-style excess-loss token
selection); ablations in Table 3 (max aggregation and keeping unmapped tokens work best).

There is NO public code (see /work/shared/methods/vocagnolm.md), so this is a re-implementation from
third-party summaries of the paper; every detail below that the summaries leave open is an
interpretation, exposed as a config option, and marked [UNVERIFIED].

Algorithm (per batch):
1. Alignment: each student token i gets the contiguous teacher range R(i) = [lo, hi) of teacher tokens
   whose character spans overlap its span (`ctkd_bench.align.groups.covering_ranges` on
   ``Side.offsets``; a later byte-piece of a character shares its first piece's range). lo == hi:
   unmapped (BOS/EOS and other special tokens, text the teacher lost to truncation).
2. Per-token losses: l_S(i) = -log p_S(x_i | x_<i) (the loss of *predicting* student token i, logit row
   i-1); l_T(j) = -log p_T(y_j | y_<j) = -token_logprobs[j-1] (HF convention of `TeacherSignals`).
   The alignment is therefore computed on the spans of the predicted tokens (interpretation of the
   "off-by-one" open point in the notes).
3. Aggregation: agg_T(i) = max_{j in R(i)} l_T(j)  (``aggregation``: max | mean | min).
4. Score: l_S(i) - agg_T(i)  (``score="difference"``, Rho-1 excess loss) or l_S(i) / agg_T(i)
   (``"ratio"``). The score only ranks tokens; it carries no gradient.
5. Selection: the top ``top_ratio`` = 40% of the mapped target tokens by score, k = ceil(ratio * n) so a
   scope with one mapped token still trains on it; ties go to the earlier token (stable sort). Scope:
   the whole batch (``scope="batch"``, Rho-1 ranks the tokens of a batch) or each sequence.
   Unmapped target tokens are always kept (``include_unmapped=True``).
6. Loss: student CE over the kept tokens, averaged over the kept tokens (``normalize="selected"``,
   Rho-1's 1/(N*k%)) or over all target tokens (``"all"``).

Interpretations ([UNVERIFIED], all options): score form, selection scope, CE normalisation, hard
selection (no soft weighting offered: nothing in the sources specifies one), ceil for k, stable
tie-break, "target tokens" = our response labels (prompt tokens are never trained, as in SFT),
teacher tokens without a defined loss (the first real token, padding) are left out of every range.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ctkd_bench import Method, Needs, Paper, hookimpl
from ctkd_bench.defaults import IGNORE_INDEX

from ctkd_bench.align.groups import covering_ranges

AGGREGATIONS = ("max", "mean", "min")
SCORES = ("difference", "ratio")
SCOPES = ("batch", "sequence")
NORMALIZATIONS = ("selected", "all")


# -- pure functions on tensors ---------------------------------------------------------------------

def student_token_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-token CE at the column of the *predicted* token.

    logits [B, L, V] raw (row t predicts token t+1); labels [B, L] HF unshifted, -100 = not a target.
    Returns [B, L] float32: entry i = -log softmax(logits[i-1])[labels[i]], 0 where labels[i] == -100
    and in column 0.
    """
    B, L, V = logits.shape
    target = labels[:, 1:]
    ce = F.cross_entropy(logits[:, :-1].reshape(-1, V).float(), target.reshape(-1).clamp_min(0),
                         reduction="none").view(B, L - 1)
    ce = ce.masked_fill(target == IGNORE_INDEX, 0.0)
    return torch.cat([ce.new_zeros(B, 1), ce], dim=1)


def teacher_token_losses(token_logprobs: torch.Tensor,
                         attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher per-token loss at the column of the predicted teacher token, and where it is defined.

    token_logprobs [B, T]: entry t = log p_T(input_ids[t+1] | ..t) (HF convention; any padding side).
    Returns (loss [B, T], valid [B, T] bool): loss[j] = -token_logprobs[j-1], valid where tokens j-1 and
    j are both real (the first real token and padding have no defined loss).
    """
    real = attention_mask.bool()
    loss = torch.cat([token_logprobs.new_zeros(token_logprobs.shape[0], 1), -token_logprobs[:, :-1]], dim=1)
    valid = torch.zeros_like(real)
    valid[:, 1:] = real[:, 1:] & real[:, :-1]
    return loss.float(), valid


def aggregate_over_ranges(values: torch.Tensor, valid: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor,
                          how: str = "max") -> tuple[torch.Tensor, torch.Tensor]:
    """Aggregate teacher values over each student token's teacher range.

    values, valid [B, T]; lo, hi [B, S] long, range [lo, hi). Returns (agg [B, S], mapped [B, S] bool);
    mapped is False where the range holds no valid teacher entry (agg is 0 there).
    """
    T = values.shape[1]
    j = torch.arange(T, device=values.device)
    member = (j >= lo.unsqueeze(-1)) & (j < hi.unsqueeze(-1)) & valid.unsqueeze(1)  # [B, S, T]
    mapped = member.any(-1)
    v = values.unsqueeze(1)
    if how == "max":
        agg = v.masked_fill(~member, -math.inf).amax(-1)
    elif how == "min":
        agg = v.masked_fill(~member, math.inf).amin(-1)
    elif how == "mean":
        agg = (v * member).sum(-1) / member.sum(-1).clamp_min(1)
    else:
        raise ValueError(f"unknown aggregation {how!r}; expected one of {AGGREGATIONS}")
    return agg.masked_fill(~mapped, 0.0), mapped


def select_top(score: torch.Tensor, candidates: torch.Tensor, ratio: float, scope: str = "batch") -> torch.Tensor:
    """Boolean [B, S]: the top ceil(ratio * n) candidates by score, n counted per scope.

    Ties go to the earlier position (row-major). scope: "batch" (one ranking over all rows) or
    "sequence" (each row ranked on its own).
    """
    if scope == "batch":
        flat = select_top(score.reshape(1, -1), candidates.reshape(1, -1), ratio, "sequence")
        return flat.view_as(candidates)
    if scope != "sequence":
        raise ValueError(f"unknown scope {scope!r}; expected one of {SCOPES}")
    keyed = score.detach().float().masked_fill(~candidates, -math.inf)
    order = torch.sort(keyed, dim=-1, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(-1, order, torch.arange(order.shape[-1], device=order.device).expand_as(order))
    k = torch.ceil(candidates.sum(-1, keepdim=True) * ratio - 1e-9).long()
    return (rank < k) & candidates


def teacher_guided_loss(student_logits: torch.Tensor, student_labels: torch.Tensor,
                        teacher_token_logprobs: torch.Tensor, teacher_attention_mask: torch.Tensor,
                        lo: torch.Tensor, hi: torch.Tensor, *, top_ratio: float = 0.4,
                        aggregation: str = "max", score: str = "difference", scope: str = "batch",
                        include_unmapped: bool = True, normalize: str = "selected") -> dict[str, torch.Tensor]:
    """VocAgnoLM's loss on tensors.

    student_logits [B, S, V] raw logits over the real vocabulary (row t predicts token t+1);
    student_labels [B, S] HF unshifted (-100: prompt, BOS, padding); teacher_token_logprobs [B, T]
    (entry t = log p_T(teacher token t+1)); teacher_attention_mask [B, T]; lo, hi [B, S]: the teacher
    range of each student token (lo == hi: unmapped). Either padding side.
    Returns {"loss": scalar, "kept": [B, S] bool (tokens trained on), "mapped": [B, S] bool}.
    """
    targets = student_labels != IGNORE_INDEX
    ce = student_token_losses(student_logits, student_labels)
    t_loss, t_valid = teacher_token_losses(teacher_token_logprobs, teacher_attention_mask)
    agg, mapped = aggregate_over_ranges(t_loss, t_valid, lo, hi, aggregation)
    mapped = mapped & targets
    with torch.no_grad():
        if score == "difference":
            s = ce - agg
        elif score == "ratio":
            s = ce / agg.clamp_min(1e-6)
        else:
            raise ValueError(f"unknown score {score!r}; expected one of {SCORES}")
    kept = select_top(s, mapped, top_ratio, scope)
    if include_unmapped:
        kept = kept | (targets & ~mapped)
    if normalize == "selected":
        denom = kept.sum()
    elif normalize == "all":
        denom = targets.sum()
    else:
        raise ValueError(f"unknown normalize {normalize!r}; expected one of {NORMALIZATIONS}")
    loss = (ce * kept).sum() / denom.clamp_min(1)
    return {"loss": loss, "kept": kept, "mapped": mapped}


def batch_ranges(student_offsets: torch.Tensor, teacher_offsets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-wise `covering_ranges` on padded [B, L, 2] offsets (padding has empty spans: never mapped)."""
    pairs = [covering_ranges(s, t) for s, t in zip(student_offsets, teacher_offsets)]
    lo = torch.stack([torch.as_tensor(p[0], dtype=torch.long) for p in pairs])
    hi = torch.stack([torch.as_tensor(p[1], dtype=torch.long) for p in pairs])
    return lo.to(student_offsets.device), hi.to(student_offsets.device)


# -- the plugin -----------------------------------------------------------------------------------

class VocAgnoLM(Method):
    name = "vocagnolm"
    category = "text alignment"
    summary = ("Character-offset alignment of each student token to a teacher-token range; the student "
               "trains with CE only on the top 40% tokens by excess loss over the (max-aggregated) teacher "
               "per-token loss, plus unmapped tokens.")
    paper = Paper(title="Overcoming Vocabulary Mismatch: Vocabulary-agnostic Teacher Guided Language Modeling",
                  url="https://arxiv.org/abs/2503.19123", venue="ICML 2025")
    tracks = ("lm", "math", "instruct")
    needs = Needs(token_logprobs=True)
    variant = "paper (no public code)"

    @dataclass(frozen=True)
    class Config:
        top_ratio: float = 0.4              # paper: top 40%
        aggregation: str = "max"            # paper Table 3: max is best
        score: str = "difference"           # [UNVERIFIED] excess loss l_S - agg l_T
        scope: str = "batch"                # [UNVERIFIED] Rho-1 ranks the tokens of a batch
        include_unmapped: bool = True       # paper Table 3: including unmapped tokens is best
        normalize: str = "selected"         # [UNVERIFIED] mean over the kept tokens (Rho-1)

        def __post_init__(self):
            if not 0.0 < self.top_ratio <= 1.0:
                raise ValueError(f"top_ratio must be in (0, 1], got {self.top_ratio}")
            for field, value, allowed in (("aggregation", self.aggregation, AGGREGATIONS),
                                          ("score", self.score, SCORES), ("scope", self.scope, SCOPES),
                                          ("normalize", self.normalize, NORMALIZATIONS)):
                if value not in allowed:
                    raise ValueError(f"{field} must be one of {allowed}, got {value!r}")

    def loss(self, batch, student, teacher):
        c = self.config
        lo, hi = batch_ranges(batch.student.offsets, batch.teacher.offsets)
        out = teacher_guided_loss(student.logits, batch.student.labels, teacher.token_logprobs,
                                  batch.teacher.attention_mask, lo, hi, top_ratio=c.top_ratio,
                                  aggregation=c.aggregation, score=c.score, scope=c.scope,
                                  include_unmapped=c.include_unmapped, normalize=c.normalize)
        targets = (batch.student.labels != IGNORE_INDEX).sum().clamp_min(1)
        return {"loss": out["loss"], "ce": student.ce.detach(),
                "kept_fraction": out["kept"].sum() / targets,
                "mapped_fraction": out["mapped"].sum() / targets}


@hookimpl
def ctkd_register_methods(register):
    register(VocAgnoLM)
