"""EMO's tensor pieces: attention importance, OTIS (Sinkhorn on hidden states), IRA (CKA), the total.

Official: haian1910/LLM2Vec_Distillation @ 9676fdb, Classification/criterions/ot_pro_rmse_cka.py
(`compute_token_importance`, `project_importance`, `pairwise_attention_distance`, `sinkhorn`,
`compute_ot_loss`, `compute_att_loss_2`, `CKALoss`, `forward`). See `ctkd_methods.emo`.

Shapes: B batch, S student length, T teacher length (padded, either side); masks are 1 on real tokens.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from ._emo_sinkhorn import sinkhorn_plan


def attention_received(attention: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[B, H, T, T] attention (rows = queries), mask [B, T] -> [B, T]: head-mean attention each real
    token receives from the real queries (column sums); 0 on padding."""
    avg = attention.float().mean(1)
    m = mask.to(avg.dtype)
    return (avg * m.unsqueeze(-1)).sum(1) * m


def masked_softmax(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    pad = ~mask.bool()
    return x.masked_fill(pad, -math.inf).softmax(-1).masked_fill(pad, 0.0)


def teacher_mass(attention: torch.Tensor, mask: torch.Tensor, received: torch.Tensor | None = None) -> torch.Tensor:
    """OTIS teacher marginal [B, T]: softmax over real tokens of the attention they receive
    (``received``: `attention_received` when already computed)."""
    return masked_softmax(attention_received(attention, mask) if received is None else received, mask)


def student_mass(t_mass: torch.Tensor, t_mask: torch.Tensor, source: torch.Tensor, s_mask: torch.Tensor,
                 fix: bool = False) -> torch.Tensor:
    """OTIS student marginal [B, S] from the teacher marginal.

    source [B, S] long: the teacher position whose mass a student position takes (-1: none, it takes the
    smallest teacher mass). Official: softmax over these (already normalised) values, which makes the
    marginal nearly uniform (quirk 7); ``fix=True`` normalises them by their sum instead.
    """
    smallest = t_mass.masked_fill(~t_mask.bool(), math.inf).amin(-1, keepdim=True)
    raw = torch.where(source >= 0, t_mass.gather(1, source.clamp_min(0)), smallest)
    if fix:
        raw = raw * s_mask
        return raw / raw.sum(-1, keepdim=True).clamp_min(1e-12)
    return masked_softmax(raw, s_mask)


def attention_cost(student_hidden: torch.Tensor, teacher_hidden: torch.Tensor, t_mask: torch.Tensor) -> torch.Tensor:
    """OTIS cost [B, S, T] = 1 - softmax over real teacher tokens of S T^T / sqrt(d) (``'attention'``).

    teacher_hidden is already projected to the student width d. Computed in fp32."""
    s, t = student_hidden.float(), teacher_hidden.float()
    scores = s @ t.transpose(1, 2) / math.sqrt(s.shape[-1])
    return 1.0 - masked_softmax(scores, t_mask.unsqueeze(1).expand_as(scores))


def otis_loss(cost: torch.Tensor, s_mass: torch.Tensor, t_mass: torch.Tensor, eps: float = 0.1,
              n_iters: int = 100, gradient: str = "implicit", tol: float | None = 1e-5) -> torch.Tensor:
    """Per-example OT cost [B] = sum(P * C) of the Sinkhorn plan with K = exp(-C/eps).

    Rows are the student (marginal a), columns the teacher (b); as in the official loop the teacher
    potential is updated first in each iteration. Marginals are renormalised to sum to 1 (as officially); padding has zero mass. ``gradient``:
    "unrolled" (official: through the iterations) or "implicit" (see `_emo_sinkhorn`).
    """
    a = s_mass / s_mass.sum(-1, keepdim=True).clamp_min(1e-12)
    b = t_mass / t_mass.sum(-1, keepdim=True).clamp_min(1e-12)
    plan = sinkhorn_plan(cost, a, b, eps, n_iters, gradient, tol)
    return (plan * cost).sum((1, 2))


def batched_linear_cka(X: torch.Tensor, Y: torch.Tensor, rows: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """`ctkd_bench.align.cka.linear_cka` of every example at once: X [B, m, p], Y [B, m, q], rows [B, m]
    bool marks the real rows (the rest are padding). Returns [B] similarities (fp64); 0 with m <= 1."""
    X, Y, w = X.double(), Y.double(), rows.double().unsqueeze(-1)
    n = w.sum(1, keepdim=True).clamp_min(1)
    Xc = (X - (X * w).sum(1, keepdim=True) / n) * w
    Yc = (Y - (Y * w).sum(1, keepdim=True) / n) * w
    num = torch.linalg.matrix_norm(Xc.transpose(1, 2) @ Yc)
    den_x = torch.linalg.matrix_norm(Xc.transpose(1, 2) @ Xc) + eps
    den_y = torch.linalg.matrix_norm(Yc.transpose(1, 2) @ Yc) + eps
    return num / torch.sqrt(den_x * den_y)


def _gather_rows(attention: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Head-mean attention rows: [B, H, L, L] and index [B, m] -> [B, m, L]."""
    avg = attention.mean(1)
    return avg.gather(1, index.unsqueeze(-1).expand(-1, -1, avg.shape[-1]))


class IraIndex(NamedTuple):
    """IRA rows as tensors: teacher / student query positions [B, m] (padded with 0) and which are real."""
    teacher: torch.Tensor
    student: torch.Tensor
    real: torch.Tensor


def ira_index(rows: list[tuple[list[int], list[int]]], device=None) -> IraIndex:
    """rows[b] = (teacher positions, student positions), the same count per example -> `IraIndex`."""
    m = max((len(s) for _, s in rows), default=0)
    t_idx = torch.tensor([t + [0] * (m - len(t)) for t, _ in rows], dtype=torch.long, device=device)
    s_idx = torch.tensor([s + [0] * (m - len(s)) for _, s in rows], dtype=torch.long, device=device)
    real = torch.arange(m, device=device) < torch.tensor([len(s) for _, s in rows], device=device).unsqueeze(-1)
    return IraIndex(t_idx.view(len(rows), m), s_idx.view(len(rows), m), real.view(len(rows), m))


def ira_losses(student_attentions: list[torch.Tensor], teacher_attentions: list[torch.Tensor],
               rows: list[tuple[list[int], list[int]]] | IraIndex) -> torch.Tensor:
    """Per-example IRA [B]: sum over layer pairs of 1 - CKA between the head-mean attention rows.

    student_attentions[k] [B, H, S, S] is paired with teacher_attentions[k] [B, H, T, T]; rows[b] =
    (teacher query positions, student query positions), the same count m (or an `IraIndex`). Each row
    spans all keys (padding keys hold 0 and do not change CKA). m <= 1 gives exactly 1 with no
    gradient (official).
    """
    device = student_attentions[0].device
    index = rows if isinstance(rows, IraIndex) else ira_index(rows, device)
    B, m = index.real.shape
    if m == 0:
        return torch.full((B,), float(len(student_attentions)), dtype=torch.float64, device=device)
    total = torch.zeros(B, dtype=torch.float64, device=device)
    for s_att, t_att in zip(student_attentions, teacher_attentions):
        total = total + 1.0 - batched_linear_cka(_gather_rows(s_att, index.student), _gather_rows(t_att, index.teacher),
                                                 index.real)
    return total


def emo_total(ce: torch.Tensor, ira: torch.Tensor, otis: torch.Tensor, kd_rate: float = 0.5,
              ira_weight: float = 0.1, ira_batch_mean: bool = False) -> dict[str, torch.Tensor]:
    """(1 - kd_rate) CE + kd_rate (ira_weight IRA + OTIS); IRA [B] is summed over the batch as in the
    official code (quirk 5) unless ``ira_batch_mean``; OTIS [B] is averaged."""
    ira_term = ira.mean() if ira_batch_mean else ira.sum()
    otis_term = otis.mean()
    loss = (1.0 - kd_rate) * ce + kd_rate * (ira_weight * ira_term.to(ce.dtype) + otis_term)
    return {"loss": loss, "ce": ce, "ira": ira_term, "otis": otis_term}


def emo_loss(student_logits: torch.Tensor, targets: torch.Tensor, student_hidden: torch.Tensor,
             projected_teacher_hidden: torch.Tensor, s_mask: torch.Tensor, t_mask: torch.Tensor,
             teacher_last_attention: torch.Tensor, mass_source: torch.Tensor,
             student_attentions: list[torch.Tensor], teacher_attentions: list[torch.Tensor],
             ira_rows: list[tuple[list[int], list[int]]] | IraIndex, *, kd_rate: float = 0.5, ira_weight: float = 0.1,
             sinkhorn_eps: float = 0.1, sinkhorn_iters: int = 100, sinkhorn_gradient: str = "implicit",
             sinkhorn_tol: float | None = 1e-5, ira_batch_mean: bool = False,
             fix_student_mass: bool = False, ce: torch.Tensor | None = None,
             teacher_received: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """EMO on tensors (classification variant).

    student_logits [B, C] class logits, targets [B]; student_hidden [B, S, d_s] and the teacher's last
    hidden state already projected to d_s [B, T, d_s]; s_mask [B, S], t_mask [B, T];
    teacher_last_attention [B, H_t, T, T] (teacher's last layer); mass_source [B, S] long (teacher
    position per student position, -1 none, see `_emo_tokens.mass_sources`); student_attentions /
    teacher_attentions: the IRA layer pairs; ira_rows[b] = (teacher rows, student rows), positions in
    the padded sequences (or the same as an `IraIndex`). Returns {"loss", "ce", "ira", "otis"}.
    ce / teacher_received: the CE of these logits and `attention_received` of the teacher's last
    layer when the caller already has them (the same values; not recomputed).
    """
    if ce is None:
        ce = F.cross_entropy(student_logits.float(), targets)
    t_mass = teacher_mass(teacher_last_attention, t_mask, teacher_received)
    s_mass = student_mass(t_mass, t_mask, mass_source, s_mask, fix=fix_student_mass)
    cost = attention_cost(student_hidden, projected_teacher_hidden, t_mask)
    otis = otis_loss(cost, s_mass, t_mass, sinkhorn_eps, sinkhorn_iters, sinkhorn_gradient, sinkhorn_tol)
    ira = ira_losses(student_attentions, teacher_attentions, ira_rows)
    return emo_total(ce, ira, otis, kd_rate, ira_weight, ira_batch_mean)
