"""Optimal transport: batched log-domain Sinkhorn and the closed-form sorted W1 of ULD.

Sinkhorn kernel conventions (both appear under the name ``sinkhorn_alpha`` in the
official code, see shared/methods/README.md):

- ``kernel="div"``: K = exp(-C / eps) (EMO, MultiLevelOT; eps = 0.1 is sharp);
- ``kernel="mul"``: K = exp(-eps * C) (CoT2Align's code; eps = 0.1 is nearly uniform).

The iterations run on log-potentials (f, g), so small eps does not underflow;
entries with zero marginal mass are masked out (their plan rows/columns are
exactly 0), which is how padded positions are handled. Gradients flow through the
iterations (no detach), as in the official loops. Without autograd, small problems on
CPU (`SMALL_PROBLEM`) run the same iterations in numpy, whose per-call cost on arrays
of a few hundred entries is a fraction of torch's.

Deviations from the official scaling loops (``u = a / (K v + 1e-9)`` etc.): no 1e-9
in the denominators (the log domain needs none), an optional marginal-error stop
(`tol`) instead of EMO's ``max |u - u_prev| < 1e-9``; the update order is a choice:
by default each iteration updates f (rows) then g (columns), so the column
marginals are exact on exit; ``rows_last=True`` updates g then f, like EMO's code
(v, then u), so the row marginals are exact on exit.
"""
from __future__ import annotations

import math

import numpy as np
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


def _is_fast(logk: torch.Tensor, pair: torch.Tensor) -> bool:
    """Whether every valid log-kernel entry is above the dtype's exp-underflow bound (and one exists).

    A masked min (no boolean indexing: that costs several times more on small tensors)."""
    safe = _SAFE_LOG_KERNEL.get(logk.dtype)
    if safe is None:
        return False
    low = float(torch.where(pair, logk.detach(), math.inf).amin()) if logk.numel() else math.inf
    return safe < low and (low < math.inf or bool(pair.any()))


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

    The early-stop test first reuses the LSE that opens the next iteration: the
    inexact marginal of the current plan is ``exp(g + LSE_i(log K + f))`` (columns;
    rows likewise), so most checks cost no pass over the plan (`_converged`).
    """
    logk = _log_kernel(cost, eps, kernel)
    mask_a, mask_b = a > 0, b > 0
    log_a = torch.where(mask_a, a.clamp_min(1e-38).log(), _NEG)
    log_b = torch.where(mask_b, b.clamp_min(1e-38).log(), _NEG)
    pair = mask_a.unsqueeze(-1) & mask_b.unsqueeze(-2)
    fast = _is_fast(logk, pair)
    if fast and _small_without_grad(logk, log_a, log_b):
        return _sinkhorn_small(logk, log_a, log_b, pair, a, b, n_iters, tol, rows_last)
    if fast:                       # padded pairs only ever meet exp(-1e30) = 0 potentials
        K = torch.exp(torch.where(pair, logk, 0.0))
        Kt = K.transpose(1, 2).contiguous()

        def lse_rows(g):           # LSE_j(log K + g) [B, n]
            return _log_kv(Kt, g)

        def lse_cols(f):           # LSE_i(log K + f) [B, m]
            return _log_kv(K, f)
    else:
        logk = torch.where(pair, logk, _NEG)

        def lse_rows(g):
            return torch.logsumexp(logk + g.unsqueeze(-2), dim=-1)

        def lse_cols(f):
            return torch.logsumexp(logk + f.unsqueeze(-1), dim=-2)
    # rows_last: g then f each iteration (columns are the inexact side); else f then g
    first, second = (lse_cols, lse_rows) if rows_last else (lse_rows, lse_cols)
    log_first, log_second = (log_b, log_a) if rows_last else (log_a, log_b)
    mass_first = b if rows_last else a
    p_first = torch.zeros_like(mass_first)      # the potential of the inexact side
    p_second = torch.zeros_like(a if rows_last else b)

    def potentials():
        return (p_second, p_first) if rows_last else (p_first, p_second)

    for it in range(n_iters):
        lse = first(p_second)
        if tol is not None and it > 0 and _converged(potentials, logk, p_first + lse, mass_first, tol, rows_last):
            break
        p_first = log_first - lse
        p_second = log_second - second(p_first)
    f, g = potentials()
    plan = torch.exp(f.unsqueeze(-1) + logk + g.unsqueeze(-2))
    return torch.where(pair, plan, 0.0)


@torch.no_grad()
def _converged(potentials, logk: torch.Tensor, log_marginal: torch.Tensor, mass: torch.Tensor, tol: float,
               rows_last: bool) -> bool:
    """Whether the last iteration's plan has the inexact marginal within `tol` (L1, every batch row).

    log_marginal: that marginal in log form, from the LSE that opens the next iteration (no pass over
    the plan). Rounding differs from summing the plan, so close to `tol` (within 4x) the decision is
    taken on the summed plan, exactly as the stop test was first written: same iteration count.
    """
    approx = float((torch.exp(log_marginal) - mass).abs().sum(-1).max())
    if approx >= 4 * tol:
        return False
    f, g = potentials()
    plan = torch.exp(f.unsqueeze(-1) + logk + g.unsqueeze(-2))
    err = plan.sum(-2) - mass if rows_last else plan.sum(-1) - mass
    return float(err.abs().sum(-1).max()) < tol


# Problems up to this many kernel entries, on CPU and without autograd, iterate in numpy: a few
# hundred entries per batch row make every iteration a dozen calls on tiny arrays, where numpy's
# per-call cost is a fraction of torch's (EMO's [16 x 14 x 12] plan: 1.2 ms instead of 4.5 ms).
SMALL_PROBLEM = 1 << 16


def _small_without_grad(logk: torch.Tensor, log_a: torch.Tensor, log_b: torch.Tensor) -> bool:
    needs_grad = torch.is_grad_enabled() and (logk.requires_grad or log_a.requires_grad or log_b.requires_grad)
    return logk.device.type == "cpu" and logk.numel() <= SMALL_PROBLEM and not needs_grad


def _sinkhorn_small(logk, log_a, log_b, pair, a, b, n_iters, tol, rows_last) -> torch.Tensor:
    """`sinkhorn`'s matrix-product iterations and early stop in numpy (same steps, same dtype)."""
    logk, pair = logk.detach().numpy(), pair.numpy()
    log_a, log_b = log_a.detach().numpy(), log_b.detach().numpy()
    K = np.exp(np.where(pair, logk, 0.0).astype(logk.dtype))
    Kt = np.ascontiguousarray(K.transpose(0, 2, 1))

    def log_kv(M, g):              # `_log_kv`: log(exp(g) K^T-product) per batch row
        top = g.max(-1, keepdims=True)
        return np.log(np.matmul(np.exp(g - top)[:, None, :], M)[:, 0, :]) + top

    def plan_of(f, g):
        return np.exp(f[:, :, None] + logk + g[:, None, :])

    first, second = (lambda f: log_kv(K, f), lambda g: log_kv(Kt, g))
    if not rows_last:
        first, second = second, first
    log_first, log_second = (log_b, log_a) if rows_last else (log_a, log_b)
    mass = (b if rows_last else a).detach().numpy()
    p_first, p_second = np.zeros_like(log_first), np.zeros_like(log_second)
    for it in range(n_iters):
        lse = first(p_second)
        if tol is not None and it > 0 and float(np.abs(np.exp(p_first + lse) - mass).sum(-1).max()) < 4 * tol:
            f, g = (p_second, p_first) if rows_last else (p_first, p_second)   # `_converged`'s exact test
            err = plan_of(f, g).sum(-2 if rows_last else -1) - mass
            if float(np.abs(err).sum(-1).max()) < tol:
                break
        p_first = log_first - lse
        p_second = log_second - second(p_first)
    f, g = (p_second, p_first) if rows_last else (p_first, p_second)
    return torch.from_numpy(np.where(pair, plan_of(f, g), 0.0).astype(logk.dtype, copy=False))


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
