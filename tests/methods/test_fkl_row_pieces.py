"""DSKD/CoT2Align's forward KL over pieces of rows (`_divergences._RowPieceForwardKL`) equals the
plain whole-tensor form: the same values bit for bit, the same gradients up to rounding."""
import pytest
import torch

from ctkd_methods import _divergences as D


def plain_fkl(z_s, z_t, temperature, teacher_temperature):
    lp_s = torch.log_softmax(D._divided(z_s.float(), temperature), -1)
    lp_t = torch.log_softmax(D._divided(D._divided(z_t.float(), temperature), teacher_temperature), -1)
    return D._fkl(lp_s, lp_t)


@pytest.mark.parametrize("shape", [(1, 7), (37, 1000), (3, 5, 300)])
@pytest.mark.parametrize("temps", [(1.0, 1.0), (2.0, 1.0), (2.0, 1.5)])
@pytest.mark.parametrize("piece_bytes", [4, 4 << 20])       # one row per piece, or all rows in one
def test_row_pieces_equal_the_plain_form(monkeypatch, shape, temps, piece_bytes):
    monkeypatch.setattr(D, "PIECE_BYTES", piece_bytes)
    monkeypatch.setattr(D, "PIECES_FROM_BYTES", 0)
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
    big = torch.randn(D.PIECES_FROM_BYTES // (4 * 1000) + 1, 1000)
    D.token_divergence(big, big, "fkl")
    assert len(calls) == 1


def test_a_teacher_with_gradient_takes_the_plain_path(monkeypatch):
    monkeypatch.setattr(D, "PIECES_FROM_BYTES", 0)
    z_s = torch.randn(4, 9, requires_grad=True)
    z_t = torch.randn(4, 9, requires_grad=True)
    D.token_divergence(z_s, z_t, "fkl").sum().backward()
    assert z_t.grad is not None and z_t.grad.abs().sum() > 0


def test_bfloat16_student_gets_a_bfloat16_gradient(monkeypatch):
    monkeypatch.setattr(D, "PIECES_FROM_BYTES", 0)
    z_s = torch.randn(4, 9).bfloat16().requires_grad_(True)
    out = D.token_divergence(z_s, torch.randn(4, 9), "fkl")
    assert out.dtype == torch.float32
    out.sum().backward()
    assert z_s.grad.dtype == torch.bfloat16
