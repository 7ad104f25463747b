"""ULD: Universal Logit Distillation (Boizard et al., arXiv 2402.12030).

Paper: eq. (ULD loss) ``L = sum_t CE(t) + lambda * W1[p_S(.|x_S^{<t}), q_T(.|x_T^{<t})]`` with the
closed-form W1 under a uniform ground cost: the L1 distance between the two probability vectors
sorted in descending order, the smaller vocabulary zero-padded.

Official code: ``Nicolas-BZRD/llm-recipes`` @ ``8e69e7a987530f0e44f66bbd1c729db448c17164``,
``models/distillation_model.py`` :: ``DistillationLoss.forward`` and
``__get_start_and_size_answers``; wiring in ``train/train_utils.py`` (``skip_student_eos=True``),
defaults in ``configs/distillation.py`` (``distil_factor = 1.5``, temperatures 1).

What the default computes (as the official code): for each row, the logit rows that predict the
answer tokens (EOS included) are left-aligned on each side; the student drops its last one (the
EOS skip); both sides are truncated to the shorter answer, ``k_b = min(n_s - 1, n_t)``; per pair
the sorted-probability L1 distance; mean over the k_b pairs, then mean over rows;
``loss = 1 * CE + 1.5 * ULD``. No position or vocabulary alignment, no trainable extras.

``reduction`` selects how other papers' re-implementations normalise "ULD" (see
``/work/shared/methods/uld.md``); each preset also sets that repo's mixing and EOS handling
unless the field is given explicitly:

- ``"official"``: per-row mean, then batch mean; ``CE + 1.5 * ULD``; student EOS skipped.
- ``"dskd"`` (``songmzhang/DSKD`` @ 077337a, ``universal_logit_distillation.py``): token **sum**
  divided by the number of student target tokens; ``0.5 * CE + 0.5 * ULD``; no EOS skip.
- ``"cdm"`` (``chiiipk/cdm-llm2vec`` @ 144f18c, ``run_clm_uld.py``): sum divided by the number of
  compared pairs; ``0.5 * CE + 0.5 * ULD``; no EOS skip.

Deviations (deliberate):

- Answer windows come from the label mask shifted by one (rows t with ``labels[t+1] != -100``),
  not from the length of the leading -100 run. Identical whenever a row starts with BOS or a
  prompt (every core batch on tracks with a BOS token); it also works for left padding and for
  rows whose first label sits at index 0 (no BOS, empty prompt), where the official code would
  compare a row predicting past EOS.
- Rows with no pair (``k_b = 0``, e.g. a response that is only EOS) are left out of the batch
  mean; the official code would produce NaN.
- The logits are not overwritten in place (the official code does; the value is the same).
- The ``"cdm"`` preset keeps the llm-recipes rows (those that *predict* the answer tokens); the
  CDM repo reads the rows *at* the answer tokens (one later) and does not skip EOS.

Implementation (step cost; same values as sorting the padded [B, W] rows with ``torch.sort``,
tested): only the k_b real pairs are gathered and compared, and float32 rows on CPU are sorted
by numpy (``sort_descending``), several times faster than ``torch.sort`` there. Above 32 MB of
rows (the papers' vocabularies) the CPU path runs in pieces of rows read by index, sorting only
the top min(V_s, V_t) entries of the larger vocabulary (``_sorted_w1_pieces``; values equal to
float rounding, tested).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ctkd_bench import Method, Needs, Paper, hookimpl
from ctkd_bench.defaults import IGNORE_INDEX
from ctkd_bench.errors import ConfigError
from ctkd_methods import _pieces
from ctkd_methods._sorted_w1_pieces import sorted_w1_rows

REDUCTIONS = ("official", "dskd", "cdm")
# reduction -> (ce_weight, distil_factor, skip_student_eos) of the repo that reports ULD that way
RECIPES = {"official": (1.0, 1.5, True), "dskd": (0.5, 0.5, False), "cdm": (0.5, 0.5, False)}


def response_rows(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the logit rows that predict response tokens, left-aligned per row.

    ``labels``: [B, L] HF unshifted (-100 = not a target), any padding side. Row t predicts
    token t+1, so row t is selected when ``labels[b, t+1] != -100``. Returns ``rows`` [B, W]
    (W = the largest count; entries past a row's count are meaningless) and ``sizes`` [B].
    """
    is_target = labels[:, 1:] != IGNORE_INDEX
    sizes = is_target.sum(1)
    # stable sort of "not a target" puts the selected rows first, in their original order
    order = torch.sort((~is_target).to(torch.int8), dim=1, stable=True).indices
    width = int(sizes.max()) if sizes.numel() else 0
    return order[:, :width], sizes


def gather_rows(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``x[b, rows[b, i], :]`` for x [B, L, V] and rows [B, W] -> [B, W, V]."""
    return x.gather(1, rows.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """Half/bfloat16 -> float32 (softmax and sorting in low precision lose the tail); else as is."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _descending_order(x: np.ndarray) -> np.ndarray:
    """Column order that sorts each row of float32 ``x`` [N, V] descending (ties: higher column first).

    numpy's SIMD sort on int64 keys is several times faster than ``torch.sort`` on CPU: the key
    is the float's bits made order-preserving as a signed int (negative floats: flip the
    magnitude bits) in the high half and the column in the low half.
    """
    bits = x.view(np.int32)
    bits = np.where(bits < 0, bits ^ np.int32(0x7FFFFFFF), bits).astype(np.int64)
    key = (bits << 32) | np.arange(x.shape[-1], dtype=np.int64)
    key.sort(axis=-1)
    return (key & 0xFFFFFFFF)[:, ::-1]


def sort_descending(x: torch.Tensor) -> torch.Tensor:
    """``torch.sort(x, dim=-1, descending=True).values`` (same values), faster on CPU float32.

    With a gradient the rows are gathered by the order above (gradient path as ``torch.sort``'s;
    equal values may be visited in another order, which changes nothing); without one the
    values come straight from ``np.sort``. Other devices and dtypes use ``torch.sort``.
    """
    if x.device.type != "cpu" or x.dtype != torch.float32 or x.numel() == 0 or x.shape[-1] >= 2 ** 31:
        return torch.sort(x, dim=-1, descending=True).values
    flat = x.detach().reshape(-1, x.shape[-1]).numpy()
    if not x.requires_grad:
        return torch.from_numpy(np.ascontiguousarray(np.sort(flat, axis=-1)[:, ::-1])).view(x.shape)
    order = torch.from_numpy(np.ascontiguousarray(_descending_order(flat))).view(x.shape)
    return x.gather(-1, order)


def sorted_w1_fast(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``ctkd_bench.align.ot.sorted_w1`` (the same operations and values) with ``sort_descending``."""
    V = max(p.shape[-1], q.shape[-1])
    ps = torch.nn.functional.pad(sort_descending(p), (0, V - p.shape[-1]))
    qs = torch.nn.functional.pad(sort_descending(q), (0, V - q.shape[-1]))
    return (ps - qs).abs().sum(-1)


def uld_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
             student_labels: torch.Tensor, teacher_labels: torch.Tensor, *,
             student_temperature: float = 1.0, teacher_temperature: float = 1.0,
             skip_student_eos: bool = True, skip_teacher_eos: bool = False,
             reduction: str = "official") -> torch.Tensor:
    """The ULD term (unweighted scalar).

    Inputs: raw **logits** ``student_logits`` [B, L_s, V_s] and ``teacher_logits`` [B, L_t, V_t]
    (real vocabularies; the teacher is detached here), HF-unshifted labels [B, L_s] / [B, L_t]
    with -100 on BOS, prompt and padding; padding on either side. Pairs: the i-th row predicting
    an answer token on each side, i < k_b = min(n_s - skip_s, n_t - skip_t).
    ``reduction``: "official" (mean over pairs per row, then over rows that have pairs), "dskd"
    (sum over pairs / number of student target tokens), "cdm" (sum over pairs / number of pairs).
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    s_rows, n_s = response_rows(student_labels)
    t_rows, n_t = response_rows(teacher_labels)
    n_student_targets = n_s.sum()
    k = torch.minimum((n_s - int(skip_student_eos)).clamp(min=0), (n_t - int(skip_teacher_eos)).clamp(min=0))
    width = int(k.max()) if k.numel() else 0
    is_pair = torch.arange(width, device=k.device) < k.unsqueeze(1)
    # only the real pairs are compared (row-wise ops: each pair's distance is what the padded
    # [B, W] computation gives); then laid out as [B, W] so the reductions below are unchanged
    b_idx = torch.nonzero(is_pair)[:, 0]
    s_sel, t_sel = s_rows[:, :width][is_pair], t_rows[:, :width][is_pair]
    if student_logits.device.type == "cpu" and _pieces.use_pieces(len(b_idx), max(student_logits.shape[-1],
                                                                          teacher_logits.shape[-1])):
        pair_dist = sorted_w1_rows(student_logits, b_idx * student_logits.shape[1] + s_sel, teacher_logits,
                                   b_idx * teacher_logits.shape[1] + t_sel,
                                   student_temperature, teacher_temperature)
    else:
        s = at_least_fp32(student_logits[b_idx, s_sel])
        t = at_least_fp32(teacher_logits.detach()[b_idx, t_sel])
        p_s = torch.softmax(s / student_temperature, dim=-1)
        p_t = torch.softmax(t / teacher_temperature, dim=-1)
        pair_dist = sorted_w1_fast(p_s, p_t)                    # [N pairs]
    dist = torch.zeros(is_pair.shape, dtype=pair_dist.dtype, device=pair_dist.device)
    dist = dist.masked_scatter(is_pair, pair_dist) * is_pair    # [B, W]
    if reduction == "dskd":
        return dist.sum() / n_student_targets.clamp(min=1)
    if reduction == "cdm":
        return dist.sum() / is_pair.sum().clamp(min=1)
    has_pairs = k > 0
    per_row = dist.sum(1) / k.clamp(min=1)
    return per_row[has_pairs].sum() / has_pairs.sum().clamp(min=1)


class ULD(Method):
    name = "uld"
    category = "probability-distribution alignment"
    summary = ("Compares teacher and student output distributions directly with a Wasserstein "
               "(optimal-transport) distance: L1 between sorted probability vectors, no alignment.")
    paper = Paper(title="Towards Cross-Tokenizer Distillation: the Universal Logit Distillation "
                        "Loss for LLMs", url="https://arxiv.org/abs/2402.12030", venue="arXiv 2024 (TMLR 2025)")
    tracks = ("lm", "math", "instruct")
    needs = Needs(logits=True)
    variant = "official"

    @dataclass(frozen=True)
    class Config:
        reduction: str = "official"        # "official" | "dskd" | "cdm": whose ULD normalisation
        # None = as the chosen reduction's repo does it (RECIPES); set to override
        ce_weight: float | None = None
        distil_factor: float | None = None  # lambda
        skip_student_eos: bool | None = None
        skip_teacher_eos: bool = False
        student_temperature: float = 1.0
        teacher_temperature: float = 1.0

        def __post_init__(self):
            if self.reduction not in REDUCTIONS:
                raise ConfigError(f"methods.uld.reduction: expected one of {REDUCTIONS}, got {self.reduction!r}")

        def resolved(self) -> tuple[float, float, bool]:
            """(ce_weight, distil_factor, skip_student_eos) after applying the reduction's recipe."""
            ce, lam, skip = RECIPES[self.reduction]
            return (ce if self.ce_weight is None else float(self.ce_weight),
                    lam if self.distil_factor is None else float(self.distil_factor),
                    skip if self.skip_student_eos is None else bool(self.skip_student_eos))

    def loss(self, batch, student, teacher):
        cfg = self.config
        ce_weight, distil_factor, skip_student_eos = cfg.resolved()
        term = uld_loss(student.logits, teacher.logits, batch.student.labels, batch.teacher.labels,
                        student_temperature=cfg.student_temperature,
                        teacher_temperature=cfg.teacher_temperature,
                        skip_student_eos=skip_student_eos, skip_teacher_eos=cfg.skip_teacher_eos,
                        reduction=cfg.reduction)
        total = ce_weight * student.ce + distil_factor * term
        return {"loss": total, "ce": student.ce, "uld": term.detach()}


@hookimpl
def ctkd_register_methods(register):
    register(ULD)
