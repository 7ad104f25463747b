"""Sinkhorn marginals and kernels, sorted W1 against an exact transport LP, EMO's CKA."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ctkd_bench.align.cka import linear_cka
from ctkd_bench.align.ot import sinkhorn, sorted_w1


def random_problem(seed: int, B=3, n=5, m=7, holes=True):
    g = torch.Generator().manual_seed(seed)
    cost = torch.rand(B, n, m, generator=g, dtype=torch.float64)
    a = torch.rand(B, n, generator=g, dtype=torch.float64) + 0.1
    b = torch.rand(B, m, generator=g, dtype=torch.float64) + 0.1
    if holes:                                   # padding: zero mass at the end of some rows
        a[1, -2:] = 0
        b[2, -3:] = 0
    return cost, a / a.sum(-1, keepdim=True), b / b.sum(-1, keepdim=True)


def plain_sinkhorn(cost, a, b, K, n_iters):
    """Textbook scaling iterations on one problem (no logs), for moderate kernels."""
    u, v = torch.ones_like(a), torch.ones_like(b)
    for _ in range(n_iters):
        u = a / (K @ v)
        v = b / (K.T @ u)
    return u[:, None] * K * v[None, :]


@pytest.mark.parametrize("kernel,eps", [("div", 0.1), ("div", 0.5), ("mul", 0.1), ("mul", 10.0)])
def test_sinkhorn_marginals_and_masking(kernel, eps):
    cost, a, b = random_problem(0)
    plan = sinkhorn(cost, a, b, eps=eps, n_iters=500, kernel=kernel)
    assert torch.allclose(plan.sum(-1), a, atol=1e-6) and torch.allclose(plan.sum(-2), b, atol=1e-6)
    assert (plan[1, -2:] == 0).all() and (plan[2, :, -3:] == 0).all() and (plan >= 0).all()


@pytest.mark.parametrize("kernel,eps", [("div", 0.5), ("mul", 2.0)])
def test_sinkhorn_equals_plain_scaling(kernel, eps):
    cost, a, b = random_problem(1, holes=False)
    plan = sinkhorn(cost, a, b, eps=eps, n_iters=200, kernel=kernel)
    for i in range(cost.shape[0]):
        K = torch.exp(-cost[i] / eps) if kernel == "div" else torch.exp(-cost[i] * eps)
        assert torch.allclose(plan[i], plain_sinkhorn(cost[i], a[i], b[i], K, 200), atol=1e-9)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("rows_last", [False, True])
@pytest.mark.parametrize("tol", [None, 1e-5])
def test_small_problems_iterate_in_numpy_with_the_torch_loops_values(monkeypatch, dtype, rows_last, tol):
    import ctkd_bench.align.ot as ot
    for seed, (kernel, eps) in enumerate([("div", 0.1), ("div", 0.5), ("mul", 2.0)]):
        cost, a, b = (x.to(dtype) for x in random_problem(seed, B=4, n=9, m=6))
        calls = []
        real = ot._sinkhorn_small
        monkeypatch.setattr(ot, "_sinkhorn_small", lambda *args: calls.append(1) or real(*args))
        small = sinkhorn(cost, a, b, eps=eps, n_iters=60, kernel=kernel, tol=tol, rows_last=rows_last)
        monkeypatch.setattr(ot, "SMALL_PROBLEM", 0)                      # the torch loop
        loop = sinkhorn(cost, a, b, eps=eps, n_iters=60, kernel=kernel, tol=tol, rows_last=rows_last)
        monkeypatch.undo()
        assert calls and small.dtype == dtype and small.shape == loop.shape
        assert torch.allclose(small, loop, rtol=1e-5, atol=1e-7 if dtype == torch.float32 else 1e-13)
        assert (small[1, -2:] == 0).all() and (small[2, :, -3:] == 0).all()
    grad_cost = cost.clone().requires_grad_(True)                         # autograd: always the torch loop
    monkeypatch.setattr(ot, "_sinkhorn_small", lambda *args: pytest.fail("numpy path under autograd"))
    assert sinkhorn(grad_cost, a, b, eps=0.5, n_iters=5, rows_last=rows_last).requires_grad


def test_sinkhorn_kernel_conventions_differ_and_small_eps_is_stable():
    cost, a, b = random_problem(2, holes=False)
    sharp = sinkhorn(cost, a, b, eps=0.1, kernel="div")
    flat = sinkhorn(cost, a, b, eps=0.1, kernel="mul")
    uniform = a[:, :, None] * b[:, None, :]
    assert (flat - uniform).abs().max() < 0.01 < (sharp - uniform).abs().max()
    tiny = sinkhorn(cost, a, b, eps=1e-3, n_iters=300, kernel="div")
    assert torch.isfinite(tiny).all() and torch.allclose(tiny.sum(-2), b, atol=1e-9)   # g updated last


def test_sinkhorn_gradients_and_early_stop():
    cost, a, b = random_problem(3)
    cost.requires_grad_(True)
    plan = sinkhorn(cost, a, b, eps=0.1, n_iters=50, kernel="div", tol=1e-8)
    (plan * cost).sum().backward()
    assert torch.isfinite(cost.grad).all() and cost.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        sinkhorn(cost, a, b, eps=0.1, kernel="exp")


def lp_transport(p: np.ndarray, q: np.ndarray, C: np.ndarray) -> float:
    """Exact optimal transport cost by linear programming."""
    from scipy.optimize import linprog

    n, m = C.shape
    A_eq = np.zeros((n + m, n * m))
    for i in range(n):
        A_eq[i, i * m:(i + 1) * m] = 1
    for j in range(m):
        A_eq[n + j, j::m] = 1
    res = linprog(C.reshape(-1), A_eq=A_eq, b_eq=np.concatenate([p, q]), bounds=(0, None), method="highs")
    assert res.success
    return res.fun


PROBS = st.integers(1, 4).flatmap(lambda n: st.lists(st.floats(0.0, 1.0), min_size=n, max_size=n)).filter(
    lambda v: sum(v) > 1e-3).map(lambda v: np.array(v) / sum(v))


@settings(max_examples=12, deadline=None)
@given(p=PROBS, q=PROBS)
def test_sorted_w1_is_the_best_transport_over_vocabulary_matchings(p, q):
    """ULD's closed form = min over identifications pi of the padded vocabularies of 2 * OT(p, q o pi)
    under the 0/1 cost (moving mass between two different tokens costs 1)."""
    pytest.importorskip("scipy")
    V = max(len(p), len(q))
    pp, qq = np.pad(p, (0, V - len(p))), np.pad(q, (0, V - len(q)))
    cost01 = 1.0 - np.eye(V)
    best = min(lp_transport(pp, qq[list(pi)], cost01) for pi in itertools.permutations(range(V)))
    got = sorted_w1(torch.tensor(p), torch.tensor(q)).item()
    assert got == pytest.approx(2 * best, abs=1e-6)      # LP solver tolerance


def test_sorted_w1_batched_shapes():
    p = torch.softmax(torch.randn(2, 3, 5), -1)
    q = torch.softmax(torch.randn(2, 3, 8), -1)
    d = sorted_w1(p, q)
    assert d.shape == (2, 3)
    assert torch.allclose(sorted_w1(p, p), torch.zeros(2, 3))
    assert torch.allclose(d, sorted_w1(q, p))


def test_linear_cka_emo_form():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(6, 4, generator=g)
    Q, _ = torch.linalg.qr(torch.randn(4, 4, generator=g))
    assert linear_cka(X, X).item() == pytest.approx(1.0)
    assert linear_cka(X, 3.0 * X @ Q + 2.0).item() == pytest.approx(1.0)      # invariances
    Y = torch.randn(6, 9, generator=g)
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    Kx, Ky = Xc @ Xc.T, Yc @ Yc.T              # Gram form of linear CKA (Kornblith et al.)
    cka = (Kx * Ky).sum() / (Kx.norm() * Ky.norm())
    assert linear_cka(X, Y).item() ** 2 == pytest.approx(cka.item(), rel=1e-6)
    assert linear_cka(X[:1], Y[:1]).item() == 0.0
    assert linear_cka(X[:2], Y[:2]).item() == pytest.approx(1.0, abs=1e-6)
    Xg = X.clone().requires_grad_(True)
    (1 - linear_cka(Xg, Y)).backward()
    assert torch.isfinite(Xg.grad).all()
    assert linear_cka(X, Y, dtype=None).dtype == torch.float32
    with pytest.raises(ValueError):
        linear_cka(X, Y[:5])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sinkhorn_fast_path_equals_logsumexp_path(monkeypatch, dtype):
    from ctkd_bench.align import ot

    cost, a, b = (x.to(dtype) for x in random_problem(4))
    fast = sinkhorn(cost, a, b, eps=0.05, n_iters=80)
    monkeypatch.setattr(ot, "_SAFE_LOG_KERNEL", {})
    slow = sinkhorn(cost, a, b, eps=0.05, n_iters=80)
    assert torch.allclose(fast, slow, atol=1e-5 if dtype == torch.float32 else 1e-12)


def test_sinkhorn_update_order_decides_which_marginal_is_exact():
    cost, a, b = random_problem(5, holes=False)
    cols = sinkhorn(cost, a, b, eps=0.02, n_iters=3)
    rows = sinkhorn(cost, a, b, eps=0.02, n_iters=3, rows_last=True)
    assert torch.allclose(cols.sum(-2), b, atol=1e-12) and not torch.allclose(cols.sum(-1), a, atol=1e-4)
    assert torch.allclose(rows.sum(-1), a, atol=1e-12) and not torch.allclose(rows.sum(-2), b, atol=1e-4)
    K = torch.exp(-cost[0] / 0.02)                  # EMO's loop: v then u, three times
    u, v = torch.ones_like(a[0]), torch.ones_like(b[0])
    for _ in range(3):
        v = b[0] / (K.T @ u)
        u = a[0] / (K @ v)
    assert torch.allclose(rows[0], u[:, None] * K * v[None, :], atol=1e-12)


def reference_sinkhorn(cost, a, b, eps, n_iters, tol, rows_last):
    """The loop as first written (kept as the reference): log-domain updates, and after every
    iteration the inexact marginal is checked by summing the full plan."""
    logk = -cost / eps
    pair = (a > 0).unsqueeze(-1) & (b > 0).unsqueeze(-2)
    logk = torch.where(pair, logk, torch.full_like(logk, -1e30))
    log_a = torch.where(a > 0, a.clamp_min(1e-38).log(), torch.full_like(a, -1e30))
    log_b = torch.where(b > 0, b.clamp_min(1e-38).log(), torch.full_like(b, -1e30))
    f, g = torch.zeros_like(a), torch.zeros_like(b)
    for _ in range(n_iters):
        if rows_last:
            g = log_b - torch.logsumexp(logk + f.unsqueeze(-1), dim=-2)
            f = log_a - torch.logsumexp(logk + g.unsqueeze(-2), dim=-1)
        else:
            f = log_a - torch.logsumexp(logk + g.unsqueeze(-2), dim=-1)
            g = log_b - torch.logsumexp(logk + f.unsqueeze(-1), dim=-2)
        plan = torch.exp(f.unsqueeze(-1) + logk + g.unsqueeze(-2))
        err = plan.sum(-2) - b if rows_last else plan.sum(-1) - a
        if float(err.abs().sum(-1).max()) < tol:
            break
    return torch.where(pair, torch.exp(f.unsqueeze(-1) + logk + g.unsqueeze(-2)), torch.zeros_like(cost))


@pytest.mark.parametrize("rows_last", [False, True])
@pytest.mark.parametrize("tol", [1e-3, 1e-6])
def test_sinkhorn_early_stop_reuses_the_next_lse_and_stops_where_the_plan_sum_does(monkeypatch, rows_last, tol):
    from ctkd_bench.align import ot

    monkeypatch.setattr(ot, "_SAFE_LOG_KERNEL", {})      # the logsumexp path, as the reference
    for seed in range(4):
        cost, a, b = random_problem(seed)
        for eps in (0.05, 0.5):
            got = sinkhorn(cost, a, b, eps=eps, n_iters=200, tol=tol, rows_last=rows_last)
            want = reference_sinkhorn(cost, a, b, eps, 200, tol, rows_last)
            assert torch.equal(got, want)
    calls = []
    real = ot._converged
    monkeypatch.setattr(ot, "_converged", lambda *args: calls.append(1) or real(*args))
    sinkhorn(cost, a, b, eps=0.05, n_iters=200, tol=tol, rows_last=rows_last)
    assert 1 < len(calls) < 200                          # it did stop early
