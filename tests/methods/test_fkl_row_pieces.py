"""DSKD/CoT2Align's forward KL over pieces of rows (`_divergences._RowPieceForwardKL`) equals the
plain whole-tensor form: the same values bit for bit, the same gradients up to rounding."""
import pytest
import torch

from ctkd_methods import _divergences as D
from ctkd_methods import _pieces as P


def plain_fkl(z_s, z_t, temperature, teacher_temperature):
    lp_s = torch.log_softmax(D._divided(z_s.float(), temperature), -1)
    lp_t = torch.log_softmax(D._divided(D._divided(z_t.float(), temperature), teacher_temperature), -1)
    return D._fkl(lp_s, lp_t)


@pytest.mark.parametrize("shape", [(1, 7), (37, 1000), (3, 5, 300)])
@pytest.mark.parametrize("temps", [(1.0, 1.0), (2.0, 1.0), (2.0, 1.5)])
@pytest.mark.parametrize("piece_bytes", [4, 4 << 20])       # one row per piece, or all rows in one
def test_row_pieces_equal_the_plain_form(monkeypatch, shape, temps, piece_bytes):
    monkeypatch.setattr(P, "PIECE_BYTES", piece_bytes)
    monkeypatch.setattr(P, "PIECES_FROM_BYTES", 0)
    torch.manual_seed(sum(shape))
    z_s = (torch.randn(shape) * 3).requires_grad_(True)
    z_t = torch.randn(shape) * 3
    weights = torch.randn(shape[:-1])
    got = D.token_divergence(z_s, z_t, "fkl", temperature=temps[0], teacher_temperature=temps[1])
    want = plain_fkl(z_s, z_t, *temps)
    assert got.shape == want.shape and torch.equal(got, want)
    g_got, = torch.autograd.grad((got * weights).sum(), z_s)
    g_want, = torch.autograd.grad((want * weights).sum(), z_s)
    torch.testing.assert_close(g_got, g_want, rtol=1e-5, atol=1e-6)


def test_only_big_inputs_go_in_pieces(monkeypatch):
    calls = []
    monkeypatch.setattr(D._RowPieceForwardKL, "apply", lambda *a: calls.append(a) or plain_fkl(a[0], a[1], *a[2:]))
    D.token_divergence(torch.randn(4, 9), torch.randn(4, 9), "fkl")
    assert not calls
    big = torch.randn(P.PIECES_FROM_BYTES // (4 * 1000) + 1, 1000)
    D.token_divergence(big, big, "fkl")
    assert len(calls) == 1


def test_a_teacher_with_gradient_takes_the_plain_path(monkeypatch):
    monkeypatch.setattr(P, "PIECES_FROM_BYTES", 0)
    z_s = torch.randn(4, 9, requires_grad=True)
    z_t = torch.randn(4, 9, requires_grad=True)
    D.token_divergence(z_s, z_t, "fkl").sum().backward()
    assert z_t.grad is not None and z_t.grad.abs().sum() > 0


def test_bfloat16_student_gets_a_bfloat16_gradient(monkeypatch):
    monkeypatch.setattr(P, "PIECES_FROM_BYTES", 0)
    z_s = torch.randn(4, 9).bfloat16().requires_grad_(True)
    out = D.token_divergence(z_s, torch.randn(4, 9), "fkl")
    assert out.dtype == torch.float32
    out.sum().backward()
    assert z_s.grad.dtype == torch.bfloat16


# -- DSKD's s2t head fused with its FKL (`linear_forward_kl`) ----------------------------------------
@pytest.mark.parametrize("temperature", [1.0, 2.0])
@pytest.mark.parametrize("piece_bytes", [4, 4 * 30 * 3, 4 << 20])   # one row, three rows, all
def test_linear_forward_kl_equals_head_then_fkl(monkeypatch, temperature, piece_bytes):
    monkeypatch.setattr(P, "PIECE_BYTES", piece_bytes)
    torch.manual_seed(11)
    hidden = torch.randn(7, 5, requires_grad=True)
    weight = torch.randn(30, 5)
    teacher = torch.randn(2, 6, 30) * 2
    rows = torch.tensor([0, 2, 3, 5, 7, 8, 11])
    weights = torch.randn(7)
    got = D.linear_forward_kl(hidden, weight, teacher, rows, temperature)
    want = plain_fkl(hidden @ weight.T, teacher.reshape(-1, 30)[rows], temperature, 1.0)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
    g_got, = torch.autograd.grad((got * weights).sum(), hidden)
    g_want, = torch.autograd.grad((want * weights).sum(), hidden)
    torch.testing.assert_close(g_got, g_want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("gate", [True, False])
def test_cma_terms_take_the_fused_heads_above_the_threshold(monkeypatch, gate):
    """Both heads of DSKD-CMA over row pieces (s2t with its FKL, t2s with its CE and argmax gate)
    give the whole-batch terms and gradients."""
    from ctkd_methods import _cma
    from ctkd_methods._cma import SpaceInputs, cma_terms
    B, L, ds, dt, vs, vt = 2, 6, 4, 6, 6, 30       # a small student vocabulary: the t2s argmax hits often

    def side(d, v, grad):
        hidden = torch.randn(B, L, d, requires_grad=grad)
        head = torch.randn(v, d)
        labels = torch.randint(0, v, (B, L))
        labels[:, :2] = -100
        logits = hidden @ head.T
        return SpaceInputs(logits, hidden, torch.randint(0, v, (B, L)), labels, torch.randn(v, d), head)

    objective = D.KDObjective("fkl", temperature=2.0)
    for seed in range(100):     # inputs where the t2s argmax hits some targets: the gate keeps some rows
        torch.manual_seed(seed)
        student, teacher = side(ds, vs, True), side(dt, vt, False)
        proj = dict(query=torch.nn.Linear(2 * ds, 2 * dt), t2s=torch.nn.Linear(dt, ds), s2t=torch.nn.Linear(ds, dt))
        with torch.no_grad():
            probe = cma_terms(student, teacher, objective=objective, **proj)
        if 0 < int(probe.t2s_correct) < int(probe.n_student):
            break
    params = [student.hidden, *proj["t2s"].parameters(), *proj["s2t"].parameters(), *proj["query"].parameters()]

    def terms_and_grads():
        terms = cma_terms(student, teacher, objective=objective, gate_t2s_kd=gate, **proj)
        grads = torch.autograd.grad(terms.kd_sum, params, retain_graph=True)
        return terms, grads

    calls = []
    for name in ("linear_forward_kl", "linear_ce_rows"):
        real = getattr(_cma, name)
        monkeypatch.setattr(_cma, name, lambda *a, real=real, name=name: calls.append(name) or real(*a))
    plain, g_plain = terms_and_grads()
    assert not calls
    monkeypatch.setattr(P, "PIECES_FROM_BYTES", 0)
    monkeypatch.setattr(P, "PIECE_BYTES", 4 * 30 * 3)                    # three rows per piece
    fused, g_fused = terms_and_grads()
    assert sorted(set(calls)) == ["linear_ce_rows", "linear_forward_kl"]
    assert torch.equal(fused.t2s_correct, plain.t2s_correct)
    if gate:
        assert 0 < int(plain.t2s_correct) < int(plain.n_student)
    for name in ("t2s_ce", "t2s_kd", "s2t_kd"):
        torch.testing.assert_close(getattr(fused, name), getattr(plain, name), rtol=1e-5, atol=1e-6)
    for a, b in zip(g_fused, g_plain):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
