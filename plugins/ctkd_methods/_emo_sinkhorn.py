"""Sinkhorn plan with a choice of gradient: unrolled (official) or implicit (same derivative, cheaper).

The official EMO code backpropagates through its 100 Sinkhorn iterations. At the fixed point that
gradient is the derivative of the converged plan, which the implicit function theorem gives directly
from one linear solve: with P = exp((f_i + g_j - C_ij) / eps) and the marginal constraints,
dP = P * (df + dg - dC) / eps, and for an upstream gradient G

    dL/dC = P * (x_i + y_j - G_ij) / eps,   [[diag(P1), P], [P^T, diag(P^T 1)]] [x; y] = [(G*P)1; (G*P)^T 1]

(the system is singular along (1, -1), which x_i + y_j does not see; it is solved in float64 by
eliminating the longer side's duals, so the linear solve has the size of the shorter side). The forward pass is the shared `ctkd_bench.align.ot.sinkhorn` either way; the implicit
mode may stop early once the marginal error is below ``tol``. Marginals are constants (no gradient).
"""
from __future__ import annotations

import torch

from ctkd_bench.align.ot import sinkhorn

GRADIENTS = ("implicit", "unrolled")


class _ImplicitSinkhorn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, cost, a, b, eps, n_iters, tol):
        plan = sinkhorn(cost, a, b, eps, n_iters=n_iters, kernel="div", tol=tol, rows_last=True)
        ctx.save_for_backward(plan)
        ctx.eps = eps
        return plan

    @staticmethod
    def backward(ctx, grad_plan):
        (plan,) = ctx.saved_tensors
        P, G = plan.double(), grad_plan.double()
        GP = G * P
        r, c = GP.sum(-1), GP.sum(-2)
        if P.shape[-1] < P.shape[-2]:
            x, y = _potential_duals(P, r, c)
        else:       # the system is symmetric in (rows, columns): solve on the shorter side
            y, x = _potential_duals(P.transpose(1, 2), c, r)
        grad = P * (x.unsqueeze(-1) + y.unsqueeze(-2) - G) / ctx.eps
        return grad.to(grad_plan.dtype), None, None, None, None, None


def _potential_duals(P: torch.Tensor, r: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(x [B, n], y [B, m]) solving [[diag(P1), P], [P^T, diag(P^T 1)]] [x; y] = [r; c] (float64) up to
    the (1, -1) gauge, by eliminating x and solving the m x m Schur complement on y (pass P^T with
    (c, r) to eliminate y instead: one linear solve of the smaller size)."""
    rows, cols = P.sum(-1), P.sum(-2)
    live_r, live_c = rows > 0, cols > 0
    inv_rows = torch.where(live_r, 1.0 / rows.clamp_min(1e-300), torch.zeros_like(rows))
    # Schur complement on the columns: (D_c - P^T D_r^-1 P) y = c - P^T D_r^-1 r
    schur = torch.diag_embed(torch.where(live_c, cols, torch.ones_like(cols)))
    schur = schur - P.transpose(1, 2) @ (P * inv_rows.unsqueeze(-1))
    ones = live_c.double()
    schur = schur + ones.unsqueeze(-1) * ones.unsqueeze(-2)      # fixes the (1, -1) gauge
    rhs = c - (P.transpose(1, 2) @ (r * inv_rows).unsqueeze(-1)).squeeze(-1)
    y = torch.linalg.solve(schur, rhs.unsqueeze(-1)).squeeze(-1)
    x = (r - (P @ y.unsqueeze(-1)).squeeze(-1)) * inv_rows
    return x, y


def sinkhorn_plan(cost: torch.Tensor, a: torch.Tensor, b: torch.Tensor, eps: float, n_iters: int = 100,
                  gradient: str = "implicit", tol: float | None = 1e-5) -> torch.Tensor:
    """Plan [B, n, m] for cost [B, n, m], marginals a [B, n], b [B, m] (zeros = padding), K = exp(-C/eps).

    Each iteration updates the column potential, then the row potential (EMO's order: v = b / K^T u,
    then u = a / K v), so the row marginals are exact on exit.

    gradient="unrolled": autograd through all ``n_iters`` iterations (official); "implicit": the
    derivative of the converged plan (see module doc), iterations stop once the marginal error < tol.
    """
    if gradient == "unrolled":
        return sinkhorn(cost, a, b, eps, n_iters=n_iters, kernel="div", rows_last=True)
    if gradient != "implicit":
        raise ValueError(f"gradient must be one of {GRADIENTS}, got {gradient!r}")
    return _ImplicitSinkhorn.apply(cost, a.detach(), b.detach(), eps, n_iters, tol)
