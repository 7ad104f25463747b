"""Optimal transport: batched log-domain Sinkhorn and the closed-form sorted W1 of ULD.

Sinkhorn kernel conventions (both appear under the name ``sinkhorn_alpha`` in the
official code, see shared/methods/README.md):

- ``kernel="div"``: K = exp(-C / eps) (EMO, MultiLevelOT; eps = 0.1 is sharp);
- ``kernel="mul"``: K = exp(-eps * C) (CoT2Align's code; eps = 0.1 is nearly uniform).

The iterations run on log-potentials (f, g), so small eps does not underflow;
entries with zero marginal mass are masked out (their plan rows/columns are
exactly 0), which is how padded positions are handled. Gradients flow through the
iterations (no detach), as in the official loops.

Deviations from the official scaling loops (``u = a / (K v + 1e-9)`` etc.): no 1e-9
in the denominators (the log domain needs none), an optional marginal-error stop
(`tol`) instead of EMO's ``max |u - u_prev| < 1e-9``; the update order is a choice:
by default each iteration updates f (rows) then g (columns), so the column
marginals are exact on exit; ``rows_last=True`` updates g then f, like EMO's code
(v, then u), so the row marginals are exact on exit.
"""
from __future__ import annotations

import torch

_NEG = -1e30


# Below this log-kernel value exp() may underflow to 0 in the dtype: use logsumexp instead.
_SAFE_LOG_KERNEL = {torch.float32: -80.0, torch.float64: -700.0}


def _log_kernel(cost: torch.Tensor, eps: float, kernel: str) -> torch.Tensor:
    if kernel == "div":
        return -cost / eps
    if kernel == "mul":
        return -cost * eps
    raise ValueError(f"kernel must be 'div' (exp(-C/eps)) or 'mul' (exp(-eps*C)), not {kernel!r}")


def _log_kv(Kt: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """log(K @ exp(g)) per batch row, given Kt = K^T [B, m, n] and g [B, m]; g shifted by its max.

    Written as a row vector times Kt: much faster than a matrix-vector bmm on CPU.
    """
    top = g.max(dim=-1, keepdim=True).values
    return torch.log(torch.bmm(torch.exp(g - top).unsqueeze(1), Kt).squeeze(1)) + top


def sinkhorn(cost: torch.Tensor, a: torch.Tensor, b: torch.Tensor, eps: float, n_iters: int = 100,
             kernel: str = "div", tol: float | None = None, rows_last: bool = False) -> torch.Tensor:
    """Entropic transport plan [B, n, m] between marginals a [B, n] and b [B, m] (log-domain).

    Each row of `a` and `b` should carry the same total mass (e.g. both sum to 1);
    zero entries are masked. `tol`: stop early once the error of the marginal that
    is not exact by construction (rows a by default, columns b with `rows_last`) sums
    to less than tol in every batch row.

    The potentials f, g are updated as ``f = log a - LSE_j(log K + g)`` and
    ``g = log b - LSE_i(log K + f)``. When every valid kernel entry is safely
    representable (log K above -80 in float32, -700 in float64) the LSE is computed as
    ``log(K @ exp(g - max g)) + max g`` with a matrix product, which is exact in
    exact arithmetic and several times faster; otherwise by logsumexp.
    """
    logk = _log_kernel(cost, eps, kernel)
    mask_a, mask_b = a > 0, b > 0
    log_a = torch.where(mask_a, a.clamp_min(1e-38).log(), torch.full_like(a, _NEG))
    log_b = torch.where(mask_b, b.clamp_min(1e-38).log(), torch.full_like(b, _NEG))
    pair = mask_a.unsqueeze(-1) & mask_b.unsqueeze(-2)
    safe = _SAFE_LOG_KERNEL.get(logk.dtype)
    fast = safe is not None and bool(pair.any()) and float(logk.detach()[pair].min()) > safe
    if fast:                       # padded pairs only ever meet exp(-1e30) = 0 potentials
        K = torch.exp(torch.where(pair, logk, torch.zeros_like(logk)))
        Kt = K.transpose(1, 2).contiguous()
    else:
        logk = torch.where(pair, logk, torch.full_like(logk, _NEG))
    f = torch.zeros_like(a)
    g = torch.zeros_like(b)
    def update_f(g):
        if fast:
            return log_a - _log_kv(Kt, g)
        return log_a - torch.logsumexp(logk + g.unsqueeze(-2), dim=-1)

    def update_g(f):
        if fast:
            return log_b - _log_kv(K, f)
        return log_b - torch.logsumexp(logk + f.unsqueeze(-1), dim=-2)

    for _ in range(n_iters):
        if rows_last:
            g = update_g(f)
            f = update_f(g)
        else:
            f = update_f(g)
            g = update_g(f)
        if tol is not None:
            with torch.no_grad():
                plan = torch.exp(f.unsqueeze(-1) + logk + g.unsqueeze(-2))
                err = plan.sum(-2) - b if rows_last else plan.sum(-1) - a    # the inexact side
                if float(err.abs().sum(-1).max()) < tol:
                    break
    plan = torch.exp(f.unsqueeze(-1) + logk + g.unsqueeze(-2))
    return torch.where(pair, plan, torch.zeros_like(plan))


def sorted_w1(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """ULD distance: sum |sort(p) - sort(q)| over descending-sorted, zero-padded probabilities.

    p [..., Vp], q [..., Vq] -> [...] (Boizard et al., ULD; llm-recipes `uld_loss`). Pad
    both vocabularies to V = max(Vp, Vq) with zero-probability entries; moving mass
    between two different entries costs 1. Then this equals 2 x the smallest optimal
    transport cost over all one-to-one identifications of the two vocabularies (sorting
    both is the best identification); tested against an LP over all permutations.
    """
    V = max(p.shape[-1], q.shape[-1])
    ps = torch.sort(p, dim=-1, descending=True).values
    qs = torch.sort(q, dim=-1, descending=True).values
    ps = torch.nn.functional.pad(ps, (0, V - p.shape[-1]))
    qs = torch.nn.functional.pad(qs, (0, V - q.shape[-1]))
    return (ps - qs).abs().sum(-1)
