"""Token-level KD divergences of the DSKD code base (shared by DSKD and CoT2Align).

Re-implements the six objectives selectable with ``--kd-objective`` in
``code/criterions/various_divergence.py`` of songmzhang/DSKD @ 077337a (last
changed in d831fc9; CoT2Align's fork brianminhle/dskd_ot_rationale @ 0c45965
keeps the pre-d831fc9 copy, which differs only in AKL's ``lt``/``le``).

Official conventions reproduced here:

- both the student and the teacher logits are divided by the KD temperature T,
  and there is **no T² factor**; the teacher is additionally divided by a
  ``teacher_temperature`` where the official call passes ``use_tea_temp=True``;
- the result is per position (no reduction); callers sum over their mask;
- JS adds 1e-9 inside its logs; skewed KLs mix probabilities with λ (0.1);
- AKL sorts the teacher probabilities **ascending**, the tail being the
  positions whose cumulative teacher mass is ``<= alpha`` (d831fc9), with the
  head/tail gaps detached.

Deliberate deviations (values are unchanged wherever the official code is finite):

- skewed KLs take ``log(mix)`` as a logsumexp of log-probabilities instead of
  ``log(mix_probs)``, so a vocabulary entry whose probabilities both underflow
  gives 0 instead of NaN;
- AKL returns 0 where head and tail gaps are both 0 (identical distributions)
  instead of 0/0 = NaN;
- the official ``inf_mask`` (vocabulary entries with infinite logits) is not
  reproduced: the core slices logits to the real vocabulary, so there are none.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from . import _pieces

OBJECTIVES = ("fkl", "rkl", "js", "skl", "srkl", "akl")
# The official --kd-objective spellings, accepted as aliases.
OFFICIAL_NAMES = {
    "forward_kl": "fkl", "reverse_kl": "rkl", "js_divergence": "js",
    "skewed_forward_kl": "skl", "skewed_reverse_kl": "srkl", "adaptive_kl": "akl",
}


def canonical_objective(name: str) -> str:
    key = OFFICIAL_NAMES.get(name, name)
    if key not in OBJECTIVES:
        raise ValueError(f"unknown KD objective {name!r}; expected one of {', '.join(OBJECTIVES)}")
    return key


def _fkl(lp_s: torch.Tensor, lp_t: torch.Tensor) -> torch.Tensor:
    return (lp_t.exp() * (lp_t - lp_s)).sum(-1)


def _rkl(lp_s: torch.Tensor, lp_t: torch.Tensor) -> torch.Tensor:
    return (lp_s.exp() * (lp_s - lp_t)).sum(-1)


def _js(lp_s: torch.Tensor, lp_t: torch.Tensor) -> torch.Tensor:
    p_s, p_t = lp_s.exp(), lp_t.exp()
    log_m = torch.log((p_s + p_t) / 2 + 1e-9)
    kl_t = p_t * (torch.log(p_t + 1e-9) - log_m)
    kl_s = p_s * (torch.log(p_s + 1e-9) - log_m)
    return ((kl_t + kl_s) / 2).sum(-1)


def _log_mix(lp_a: torch.Tensor, lp_b: torch.Tensor, weight_a: float) -> torch.Tensor:
    """log(weight_a * p_a + (1 - weight_a) * p_b), computed from log-probs."""
    return torch.logaddexp(lp_a + math.log(weight_a), lp_b + math.log1p(-weight_a))


def _skl(lp_s: torch.Tensor, lp_t: torch.Tensor, skew: float) -> torch.Tensor:
    return (lp_t.exp() * (lp_t - _log_mix(lp_t, lp_s, skew))).sum(-1)


def _srkl(lp_s: torch.Tensor, lp_t: torch.Tensor, skew: float) -> torch.Tensor:
    return (lp_s.exp() * (lp_s - _log_mix(lp_s, lp_t, skew))).sum(-1)


def _akl(lp_s: torch.Tensor, lp_t: torch.Tensor, alpha: float) -> torch.Tensor:
    p_s, p_t = lp_s.exp(), lp_t.exp()
    sorted_t, order = p_t.sort(-1)                     # ascending, as in the official code
    gap = (sorted_t - p_s.gather(-1, order)).abs()
    tail = (sorted_t.cumsum(-1) <= alpha).float()
    g_head = (gap * (1 - tail)).sum(-1).detach()
    g_tail = (gap * tail).sum(-1).detach()
    total = g_head + g_tail
    mixed = g_head * _fkl(lp_s, lp_t) + g_tail * _rkl(lp_s, lp_t)
    return torch.where(total > 0, mixed / total.clamp_min(torch.finfo(total.dtype).tiny), mixed * 0)


def _divided(x: torch.Tensor, by: float) -> torch.Tensor:
    """x / by, skipping the full-size pass when by == 1 (exact: x / 1 == x)."""
    return x if by == 1.0 else x / by


@dataclass(frozen=True)
class KDObjective:
    """A selectable divergence D(student || teacher) with the DSKD temperature rules."""
    name: str = "fkl"
    temperature: float = 1.0          # divides student and teacher logits (official kd_temperature)
    teacher_temperature: float = 1.0  # divides the teacher once more when use_teacher_temperature
    skew_lambda: float = 0.1
    akl_alpha: float = 0.5

    def __post_init__(self):
        object.__setattr__(self, "name", canonical_objective(self.name))

    def __call__(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                 use_teacher_temperature: bool = False) -> torch.Tensor:
        return token_divergence(
            student_logits, teacher_logits, self.name, temperature=self.temperature,
            teacher_temperature=self.teacher_temperature if use_teacher_temperature else 1.0,
            skew_lambda=self.skew_lambda, akl_alpha=self.akl_alpha)

    def forward_kl(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        """FKL at this temperature whatever `name` says (DSKD's s2t term is always FKL)."""
        return token_divergence(student_logits, teacher_logits, "fkl", temperature=self.temperature)


def token_divergence(student_logits: torch.Tensor, teacher_logits: torch.Tensor, objective: str = "fkl",
                     *, temperature: float = 1.0, teacher_temperature: float = 1.0,
                     skew_lambda: float = 0.1, akl_alpha: float = 0.5) -> torch.Tensor:
    """Per-position divergence between two distributions over the same vocabulary.

    Inputs are raw **logits** (not log-probs) of shape [..., V], student first;
    gradients flow into both unless the caller detaches the teacher. Returns a
    float32 tensor of shape [...]: one value per position, no masking and no
    reduction (masked positions are the caller's business). Student logits are
    divided by ``temperature``; teacher logits by ``temperature * teacher_temperature``.
    """
    key = canonical_objective(objective)
    if (key == "fkl" and _pieces.use_pieces(student_logits.numel() // max(1, student_logits.shape[-1]),
                                              student_logits.shape[-1])
            and not (torch.is_grad_enabled() and teacher_logits.requires_grad)):
        return _RowPieceForwardKL.apply(student_logits, teacher_logits, temperature, teacher_temperature)
    lp_s = torch.log_softmax(_divided(student_logits.float(), temperature), dim=-1)
    lp_t = torch.log_softmax(_divided(_divided(teacher_logits.float(), temperature), teacher_temperature), dim=-1)
    if key == "fkl":
        return _fkl(lp_s, lp_t)
    if key == "rkl":
        return _rkl(lp_s, lp_t)
    if key == "js":
        return _js(lp_s, lp_t)
    if key == "skl":
        return _skl(lp_s, lp_t, skew_lambda)
    if key == "srkl":
        return _srkl(lp_s, lp_t, skew_lambda)
    return _akl(lp_s, lp_t, akl_alpha)



class _RowPieceForwardKL(torch.autograd.Function):
    """`_fkl` of ``token_divergence`` (a constant teacher) over pieces of rows of a few MB,
    for inputs over ``_pieces.PIECES_FROM_BYTES``.

    Whole-batch [tokens x vocabulary] temporaries (at 4 x 256 tokens and Qwen's 151k entries,
    0.6 GB each, about seven per call) are fresh memory the kernel faults in on every step.
    Row by row the same operations give the same values; the backward recomputes each piece's
    log-softmaxes instead of keeping them, and applies exactly the steps autograd composes for
    the plain form (``d lp_s = -p_t g``; log-softmax: ``dz = d - exp(lp_s) * sum(d)``; the
    division by T). Tested equal to the plain form, values and gradients.
    """

    @staticmethod
    def forward(ctx, student_logits, teacher_logits, temperature: float, teacher_temperature: float):
        z_s, z_t = _rows(student_logits), _rows(teacher_logits)
        out = torch.empty(z_s.shape[0], dtype=torch.float32, device=z_s.device)
        step = _pieces.rows_per_piece(z_s.shape[-1])
        for i in range(0, z_s.shape[0], step):
            lp_s, lp_t = _piece_log_probs(z_s[i:i + step], z_t[i:i + step], temperature, teacher_temperature)
            out[i:i + step] = _fkl(lp_s, lp_t)
        ctx.save_for_backward(student_logits, teacher_logits)
        ctx.temperatures = (temperature, teacher_temperature)
        return out.view(student_logits.shape[:-1])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        student_logits, teacher_logits = ctx.saved_tensors
        temperature, teacher_temperature = ctx.temperatures
        z_s, z_t = _rows(student_logits), _rows(teacher_logits)
        g = grad_out.reshape(-1, 1).float()
        grad = torch.empty(z_s.shape, dtype=torch.float32, device=z_s.device)
        step = _pieces.rows_per_piece(z_s.shape[-1])
        for i in range(0, z_s.shape[0], step):
            lp_s, lp_t = _piece_log_probs(z_s[i:i + step], z_t[i:i + step], temperature, teacher_temperature)
            d = lp_t.exp().mul_(g[i:i + step]).neg_()               # d/d lp_s of sum p_t (lp_t - lp_s)
            d.sub_(lp_s.exp_().mul_(d.sum(-1, keepdim=True)))     # through the log-softmax
            grad[i:i + step] = _divided(d, temperature)
        return grad.view(student_logits.shape).to(student_logits.dtype), None, None, None


def _rows(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(-1, x.shape[-1])


def _piece_log_probs(z_s, z_t, temperature: float, teacher_temperature: float):
    """The log-softmaxes of `token_divergence`, for one piece of rows (the same divisions)."""
    return (torch.log_softmax(_divided(z_s.float(), temperature), dim=-1),
            torch.log_softmax(_divided(_divided(z_t.float(), temperature), teacher_temperature), dim=-1))


def linear_forward_kl(hidden: torch.Tensor, weight: torch.Tensor, teacher_logits: torch.Tensor,
                      teacher_rows: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``_fkl`` of ``token_divergence`` with the student logits ``hidden @ weight.T``: [N].

    ``hidden`` [N, d] (with a gradient), ``weight`` [V, d] a constant head, ``teacher_logits``
    [..., V] a constant read at the flat rows ``teacher_rows`` [N]. The same as
    ``token_divergence(hidden @ weight.T, teacher_logits.reshape(-1, V)[teacher_rows], "fkl",
    temperature=T)`` (DSKD's s2t term), but over pieces of rows: neither the [N, V] logits nor
    their gradient nor the teacher's selected rows are ever built (at Qwen's 151k entries each
    is 0.6 GB of fresh memory per step). The backward recomputes each piece and applies the
    steps of `_RowPieceForwardKL`, then ``d hidden = d z @ weight``. Tested against autograd.
    """
    return _LinearRowPieceForwardKL.apply(hidden, weight.detach(), teacher_logits.detach(), teacher_rows,
                                          float(temperature))


class _LinearRowPieceForwardKL(torch.autograd.Function):

    @staticmethod
    def forward(ctx, hidden, weight, teacher_logits, teacher_rows, temperature: float):
        z_t = _rows(teacher_logits)
        out = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
        step = _pieces.rows_per_piece(weight.shape[0])
        for i in range(0, hidden.shape[0], step):
            lp_s, lp_t = _linear_piece(hidden[i:i + step], weight, z_t, teacher_rows[i:i + step], temperature)
            out[i:i + step] = _fkl(lp_s, lp_t)
        ctx.save_for_backward(hidden, weight, teacher_logits, teacher_rows)
        ctx.temperature = temperature
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        hidden, weight, teacher_logits, teacher_rows = ctx.saved_tensors
        z_t, temperature = _rows(teacher_logits), ctx.temperature
        g = grad_out.reshape(-1, 1).float()
        grad = torch.empty(hidden.shape, dtype=torch.float32, device=hidden.device)
        step = _pieces.rows_per_piece(weight.shape[0])
        for i in range(0, hidden.shape[0], step):
            lp_s, lp_t = _linear_piece(hidden[i:i + step], weight, z_t, teacher_rows[i:i + step], temperature)
            d = lp_t.exp().mul_(g[i:i + step]).neg_()               # d/d lp_s of sum p_t (lp_t - lp_s)
            d.sub_(lp_s.exp_().mul_(d.sum(-1, keepdim=True)))     # through the log-softmax
            grad[i:i + step] = _divided(d, temperature).to(weight.dtype).matmul(weight).float()
        return grad.to(hidden.dtype), None, None, None, None


def _linear_piece(hidden, weight, z_t, rows, temperature: float):
    """The two log-softmaxes of one piece: the head applied to ``hidden``, the teacher rows ``rows``."""
    z_s = hidden.to(weight.dtype).matmul(weight.transpose(-1, -2))
    return _piece_log_probs(z_s, z_t.index_select(0, rows), temperature, 1.0)
