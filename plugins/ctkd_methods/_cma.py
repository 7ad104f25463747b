"""Dual-space KD with cross-model attention (DSKD-CMA): the pure loss terms.

Shared by the ``dskd`` plugin (its different-vocabulary variant) and by
``cot2align`` (whose KD part is unchanged DSKD-CMA).

Paper: Zhang et al., "Dual-Space Knowledge Distillation for Large Language
Models", EMNLP 2024 (arXiv 2406.17328), Sec. 3.3 (cross-model attention,
Eqs. for Q/K/V, the t2s and s2t projections and the dual-space KD loss).
Official code: songmzhang/DSKD @ 077337a,
``code/criterions/dual_space_kd_with_cross_model_attention.py`` ::
``DualSpaceKDWithCMA.compute_dual_space_kd_loss_with_cma``.

Label convention: the official code uses **pre-shifted** labels
(``target[t] = input_ids[t + 1]``, -100 on prompt and padding). The core uses HF
unshifted labels; `preshift_labels` converts, and every mask below is built from
pre-shifted targets, so position t is a target exactly when the official code
would score it. This works for both padding sides (the shift stays in the row).

Reproduced official behaviour (see /work/shared/methods/dskd.md):

- queries ``query([E_s(x_t) ; E_s(y_t)])``, keys ``[E_t(x_t) ; E_t(y_t)] / std``,
  scale ``1/sqrt(2 d_t)``, additive ``-1e5`` outside ``m_s m_tᵀ``;
- input/target ids outside the target mask are replaced by 0 before the
  embedding lookup, and the lookups are detached;
- every normaliser ``std`` is ONE scalar over the whole padded tensor (``masked_std``
  off);
- t2s logits use the detached student lm_head, s2t logits the detached teacher
  lm_head; the t2s KD term is taken only where argmax t2s == target
  (``gate_t2s_kd``) with the teacher temperature; s2t is always FKL;
- terms are sums over tokens (s2t over **teacher** targets); the caller divides
  by the student token count.

Deviations:

- ``masked_std=True`` (off by default) computes each std over target positions
  only, so the loss no longer depends on padding or batch composition.
- The official ``std`` runs over tensors padded to ``max_length`` (512); the core
  pads to the longest row, so even the faithful global std sees fewer pad rows.
- Teacher tensors are detached inside (the official ones come from ``no_grad``).
- The heads and divergences are evaluated on target rows only (gathered ``[N, V]``)
  instead of on every padded position and then masked: same values, less work. Likewise
  the gated t2s KD is computed only on the rows the gate keeps (the others are 0), and the
  gate's argmax only on the rows whose target logit is the row maximum (``argmax_hits``;
  exactly ``argmax == target``, tested with ties and NaN). Above 32 MB of s2t logits (the
  papers' vocabularies) the s2t head and its FKL run together over pieces of rows
  (``_divergences.linear_forward_kl``), and the t2s head with its CE and argmax gate
  (``linear_ce_rows``; only the kept rows' logits are built, without a gradient), so neither
  side's [N, V] logits nor their gradients exist as whole tensors.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from . import _pieces
from ._divergences import KDObjective, linear_forward_kl

IGNORE_INDEX = -100
MASK_FILL = -1e5  # official additive mask; finite so fully masked rows stay uniform, not NaN
Projector = Callable[[torch.Tensor], torch.Tensor]


def preshift_labels(labels: torch.Tensor) -> torch.Tensor:
    """HF labels [B, L] (row t predicts t+1) -> DSKD pre-shifted targets [B, L].

    ``out[:, t] = labels[:, t + 1]`` and the last column is -100: row t of the
    logits is then scored against ``out[:, t]`` directly.
    """
    pad = labels.new_full((labels.shape[0], 1), IGNORE_INDEX)
    return torch.cat([labels[:, 1:], pad], dim=1)


@dataclass(frozen=True)
class SpaceInputs:
    """One model's tensors for a dual-space KD step (student or teacher).

    Shapes: logits [B, L, V] (real vocabulary), hidden [B, L, d] (last hidden
    state, post final norm), input_ids [B, L], targets [B, L] **pre-shifted**
    (-100 = not a target; see `preshift_labels`), embeddings [V_emb, d] input
    embedding table, lm_head [V, d] output projection. Either padding side.
    """
    logits: torch.Tensor
    hidden: torch.Tensor
    input_ids: torch.Tensor
    targets: torch.Tensor
    embeddings: torch.Tensor
    lm_head: torch.Tensor

    @property
    def mask(self) -> torch.Tensor:
        return self.targets != IGNORE_INDEX

    def detached(self) -> "SpaceInputs":
        return SpaceInputs(self.logits.detach(), self.hidden.detach(), self.input_ids, self.targets,
                           self.embeddings.detach(), self.lm_head.detach())


@dataclass
class DualSpaceTerms:
    """Token **sums** of the three dual-space terms plus diagnostics."""
    t2s_ce: torch.Tensor
    t2s_kd: torch.Tensor
    s2t_kd: torch.Tensor
    t2s_correct: torch.Tensor  # number of student targets where argmax t2s == target
    n_student: torch.Tensor    # number of student target tokens (the official denominator)

    @property
    def kd_sum(self) -> torch.Tensor:
        return self.t2s_ce + self.t2s_kd + self.s2t_kd


def masked_ce_sum(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Sum of -log softmax(logits)[target] over positions with target != -100."""
    mask = targets != IGNORE_INDEX
    lp = torch.log_softmax(logits.float(), dim=-1)
    nll = -lp.gather(-1, torch.where(mask, targets, 0).unsqueeze(-1)).squeeze(-1)
    return torch.where(mask, nll, 0.0).sum()


def scalar_std(x: torch.Tensor, mask: torch.Tensor, masked: bool) -> torch.Tensor:
    """One std over the whole tensor (official) or over the rows where `mask` holds."""
    if not masked:
        return x.std()
    rows = x[mask]
    if rows.numel() < 2:
        return x.new_ones(())
    return rows.std()


def project(proj: Projector, x: torch.Tensor) -> torch.Tensor:
    """Apply a projector, casting the input to its weight dtype (models may run in bf16)."""
    weight = getattr(proj, "weight", None)
    return proj(x if weight is None else x.to(weight.dtype))


def _index_embeddings(side: SpaceInputs) -> tuple[torch.Tensor, torch.Tensor]:
    """([E(x_t) ; E(y_t)], E(y_t)), ids outside the target mask replaced by 0, detached."""
    mask = side.mask
    inputs = F.embedding(torch.where(mask, side.input_ids, 0), side.embeddings).detach()
    targets = F.embedding(torch.where(mask, side.targets, 0), side.embeddings).detach()
    return torch.cat([inputs, targets], dim=-1), targets


def cma_attention_logits(query_states: torch.Tensor, keys: torch.Tensor, mask_s: torch.Tensor,
                         mask_t: torch.Tensor) -> torch.Tensor:
    """A [B, L_s, L_t] = Q Kᵀ / sqrt(dim) + (1 - m_s m_tᵀ)·(-1e5)."""
    scores = query_states.matmul(keys.transpose(-1, -2)) / math.sqrt(keys.shape[-1])
    both = mask_s.unsqueeze(-1) & mask_t.unsqueeze(1)
    return torch.where(both, scores, scores + MASK_FILL)   # = scores + (1 - both)·MASK_FILL, fewer passes


def argmax_hits(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``logits.argmax(-1) == targets`` [N] bool, exactly (first maximum, NaN counts as maximum).

    CPU argmax is ~10x slower than a max reduction, and the t2s accuracy is low (~0.3 on tiny),
    so the argmax runs only on the rows whose target logit equals the row maximum (or NaN rows).
    """
    top = logits.amax(-1)
    at_target = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    rows = ((at_target == top) | top.isnan()).nonzero().squeeze(-1)
    hits = torch.zeros_like(targets, dtype=torch.bool)
    if rows.numel():
        hits[rows] = logits[rows].argmax(-1) == targets[rows]
    return hits


def _student_kd(student_logits: torch.Tensor, m_s: torch.Tensor, t2s_rows: torch.Tensor,
                kept: torch.Tensor | None, objective: KDObjective) -> torch.Tensor:
    """D(z_s || z_t2s) on the target rows (``kept``: only those of them), teacher temperature on.

    ``t2s_rows``: the t2s logits of exactly those rows (all target rows when ``kept`` is None).
    """
    if kept is None:
        return objective(student_logits[m_s], t2s_rows, use_teacher_temperature=True)
    pos = m_s.nonzero()[kept]                  # (b, t) of the kept target rows, in target order
    return objective(student_logits[pos[:, 0], pos[:, 1]], t2s_rows, use_teacher_temperature=True)


def _t2s_terms(rows: torch.Tensor, head: torch.Tensor, targets: torch.Tensor, gate: bool):
    """(t2s CE sum, argmax hits [N], kept rows or None, the kept rows' t2s logits, detached).

    ``rows`` [N, d_s] the t2s hidden states of the target rows, ``head`` the frozen student head.
    At the papers' vocabularies the head and its CE go over pieces of rows (`linear_ce_rows`):
    the [N, V_s] logits are built only for the kept rows, without a gradient.
    """
    head = head.detach()
    if rows.device.type == "cpu" and _pieces.use_pieces(rows.shape[0], head.shape[0]):
        ce_rows, correct = linear_ce_rows(rows, head, targets)
        kept = correct.nonzero().squeeze(-1) if gate else None
        with torch.no_grad():
            kept_logits = (rows if kept is None else rows[kept]).matmul(head.transpose(-1, -2))
        return ce_rows.sum(), correct, kept, kept_logits
    t2s_logits = rows.matmul(head.transpose(-1, -2))
    t2s_ce = masked_ce_sum(t2s_logits, targets)
    correct = argmax_hits(t2s_logits.detach(), targets)
    # gated: the official term is 0 where the t2s argmax misses, so only the kept rows are computed
    kept = correct.nonzero().squeeze(-1) if gate else None
    kept_logits = t2s_logits.detach() if kept is None else t2s_logits.detach()[kept]
    return t2s_ce, correct, kept, kept_logits


def linear_ce_rows(rows: torch.Tensor, head: torch.Tensor, targets: torch.Tensor):
    """(-log softmax(rows @ head.T)[target] per row [N], argmax == target [N]) over pieces of rows.

    ``masked_ce_sum``'s per-row terms and ``argmax_hits`` of the t2s logits, never building them
    whole; the backward recomputes each piece: ``d z = (softmax(z) - onehot) g``, ``d rows = d z @ head``.
    """
    return _LinearCERows.apply(rows, head, targets)


class _LinearCERows(torch.autograd.Function):

    @staticmethod
    def forward(ctx, rows, head, targets):
        ce = torch.empty(rows.shape[0], dtype=torch.float32, device=rows.device)
        hits = torch.empty(rows.shape[0], dtype=torch.bool, device=rows.device)
        step = _pieces.rows_per_piece(head.shape[0])
        for i in range(0, rows.shape[0], step):
            z = rows[i:i + step].matmul(head.transpose(-1, -2)).float()
            t = targets[i:i + step].unsqueeze(-1)
            ce[i:i + step] = -torch.log_softmax(z, dim=-1).gather(-1, t).squeeze(-1)
            hits[i:i + step] = argmax_hits(z, t.squeeze(-1))
        ctx.save_for_backward(rows, head, targets)
        ctx.mark_non_differentiable(hits)
        return ce, hits

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_ce, _grad_hits):
        rows, head, targets = ctx.saved_tensors
        grad = torch.empty(rows.shape, dtype=torch.float32, device=rows.device)
        step = _pieces.rows_per_piece(head.shape[0])
        for i in range(0, rows.shape[0], step):
            z = rows[i:i + step].matmul(head.transpose(-1, -2)).float()
            d = torch.softmax(z, dim=-1)
            d.scatter_add_(-1, targets[i:i + step].unsqueeze(-1), torch.full_like(d[:, :1], -1.0))
            d.mul_(grad_ce[i:i + step].unsqueeze(-1))
            grad[i:i + step] = d.to(head.dtype).matmul(head).float()
        return grad.to(rows.dtype), None, None


def cma_terms(student: SpaceInputs, teacher: SpaceInputs, *, query: Projector, t2s: Projector,
              s2t: Projector, objective: KDObjective, masked_std: bool = False,
              gate_t2s_kd: bool = True) -> DualSpaceTerms:
    """The three DSKD-CMA terms as token sums (official ``compute_dual_space_kd_loss_with_cma``).

    Student tensors carry grad; teacher tensors are treated as constants.
    Projectors: ``query`` 2·d_s -> 2·d_t, ``t2s`` d_t -> d_s, ``s2t`` d_s -> d_t.
    """
    teacher = teacher.detached()
    m_s, m_t = student.mask, teacher.mask
    index_s, _ = _index_embeddings(student)
    index_t, target_emb_t = _index_embeddings(teacher)

    keys = (index_t / scalar_std(index_t, m_t, masked_std)).float()
    teacher_values_in = (teacher.hidden / scalar_std(teacher.hidden, m_t, masked_std)
                         + target_emb_t / scalar_std(target_emb_t, m_t, masked_std))
    align = cma_attention_logits(project(query, index_s).float(), keys, m_s, m_t)

    # teacher -> student space: attend over teacher positions, read out with the frozen student head.
    # Heads and divergences run on target rows only ([N, V]); other rows contribute 0 officially.
    t2s_values = project(t2s, teacher_values_in).float()
    t2s_hidden = torch.softmax(align, -1).matmul(t2s_values).to(student.lm_head.dtype)
    t2s_ce, correct, kept, kept_logits = _t2s_terms(t2s_hidden[m_s], student.lm_head, student.targets[m_s],
                                                    gate_t2s_kd)
    t2s_kd = _student_kd(student.logits, m_s, kept_logits, kept, objective).sum()

    # student -> teacher space: attend over student positions, read out with the teacher head
    s2t_values = project(s2t, student.hidden).float()
    s2t_hidden = torch.softmax(align.transpose(-1, -2), -1).matmul(s2t_values).to(teacher.lm_head.dtype)
    rows_t = s2t_hidden[m_t]
    if rows_t.device.type == "cpu" and _pieces.use_pieces(rows_t.shape[0], teacher.lm_head.shape[0]):
        # the papers' vocabularies: head and FKL over pieces of rows, no [N, V] tensors
        flat_t = m_t.reshape(-1).nonzero().squeeze(1)
        s2t_kd = linear_forward_kl(rows_t, teacher.lm_head, teacher.logits, flat_t, objective.temperature).sum()
    else:
        s2t_logits = rows_t.matmul(teacher.lm_head.transpose(-1, -2))
        s2t_kd = objective.forward_kl(s2t_logits, teacher.logits[m_t]).sum()

    return DualSpaceTerms(t2s_ce, t2s_kd, s2t_kd, correct.sum(), m_s.sum())


def dual_space_loss(ce_mean: torch.Tensor, terms_kd_sum: torch.Tensor, n_student: torch.Tensor,
                    kd_rate: float) -> torch.Tensor:
    """Official total ``((1 - r)·CE_sum + r·KD_sum) / n`` with CE given as a token mean."""
    n = n_student.clamp_min(1).to(terms_kd_sum.dtype)
    return (1.0 - kd_rate) * ce_mean + kd_rate * terms_kd_sum / n
