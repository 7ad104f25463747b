"""ULD's sorted distance in pieces of rows (the papers' vocabularies) against the whole-batch form."""
import pytest
import torch

from ctkd_methods import _pieces
from ctkd_methods import _sorted_w1_pieces as pieces
from ctkd_methods.uld import sorted_w1_fast, uld_loss


def whole_batch(s_logits, s_rows, t_logits, t_rows, t_s, t_t):
    s = s_logits.reshape(-1, s_logits.shape[-1])[s_rows].float()
    t = t_logits.reshape(-1, t_logits.shape[-1])[t_rows].float()
    return sorted_w1_fast(torch.softmax(s / t_s, -1), torch.softmax(t / t_t, -1))


@pytest.mark.parametrize("v_s,v_t", [(37, 90), (90, 37), (50, 50)])
@pytest.mark.parametrize("piece_bytes", [1, 4 * 90 * 3, 1 << 30])     # one row, three rows, all
def test_values_and_gradients_equal_the_whole_batch_form(monkeypatch, v_s, v_t, piece_bytes):
    monkeypatch.setattr(_pieces, "PIECE_BYTES", piece_bytes)
    g = torch.Generator().manual_seed(v_s + v_t)
    s = (torch.randn(3, 7, v_s, generator=g) * 4).requires_grad_(True)
    t = torch.randn(3, 6, v_t, generator=g) * 4
    t[0, 0] = 0.0                                     # a uniform teacher row: ties everywhere
    s_rows = torch.tensor([0, 2, 3, 8, 9, 15, 20])   # not every row, not in blocks
    t_rows = torch.tensor([0, 1, 2, 7, 8, 12, 17])
    w = torch.rand(7, generator=g)                    # unequal weights per pair in the backward
    got = pieces.sorted_w1_rows(s, s_rows, t, t_rows, 2.0, 0.5)
    (got * w).sum().backward()
    grad, s.grad = s.grad.clone(), None
    want = whole_batch(s, s_rows, t, t_rows, 2.0, 0.5)
    (want * w).sum().backward()
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-6)
    assert torch.allclose(grad, s.grad, rtol=1e-4, atol=1e-7)
    untouched = torch.ones(21, dtype=torch.bool)
    untouched[s_rows] = False
    assert (grad.reshape(21, v_s)[untouched] == 0).all()


def test_hand_computed_distance_with_padding_on_both_sides():
    # student probs (0.5, 0.5), teacher (0.7, 0.2, 0.1): |0.5-0.7| + |0.5-0.2| + |0-0.1| = 0.6
    s = torch.log(torch.tensor([[0.5, 0.5]]))
    t = torch.log(torch.tensor([[0.1, 0.7, 0.2]]))
    rows = torch.tensor([0])
    assert pieces.sorted_w1_rows(s, rows, t, rows).item() == pytest.approx(0.6, abs=1e-6)
    # roles swapped: the student's own tail past the teacher's vocabulary counts as |ps - 0|
    assert pieces.sorted_w1_rows(t, rows, s, rows).item() == pytest.approx(0.6, abs=1e-6)


def test_uld_loss_takes_the_pieces_above_the_threshold(monkeypatch):
    g = torch.Generator().manual_seed(7)
    s = (torch.randn(2, 9, 40, generator=g) * 3).requires_grad_(True)
    t = torch.randn(2, 8, 70, generator=g) * 3
    s_lab = torch.tensor([[-100] * 3 + [1] * 6, [-100] * 5 + [2] * 3 + [-100]])
    t_lab = torch.tensor([[-100] * 2 + [1] * 6, [-100] * 4 + [2] * 4])
    calls = []
    monkeypatch.setattr("ctkd_methods.uld.sorted_w1_rows",
                        lambda *a: calls.append(1) or pieces.sorted_w1_rows(*a))
    whole = uld_loss(s, t, s_lab, t_lab, student_temperature=1.5)
    whole.backward()
    grad, s.grad = s.grad.clone(), None
    assert not calls
    monkeypatch.setattr(_pieces, "PIECES_FROM_BYTES", 0)
    piecewise = uld_loss(s, t, s_lab, t_lab, student_temperature=1.5)
    piecewise.backward()
    assert calls
    assert piecewise.item() == pytest.approx(whole.item(), rel=1e-6)
    assert torch.allclose(s.grad, grad, rtol=1e-4, atol=1e-8)


def test_bfloat16_logits_are_computed_in_float32_and_get_a_bfloat16_gradient():
    g = torch.Generator().manual_seed(1)
    s = (torch.randn(5, 30, generator=g) * 3).bfloat16().requires_grad_(True)
    t = (torch.randn(5, 60, generator=g) * 3).bfloat16()
    rows = torch.arange(5)
    got = pieces.sorted_w1_rows(s, rows, t, rows)
    got.sum().backward()
    assert got.dtype == torch.float32 and s.grad.dtype == torch.bfloat16
    assert torch.allclose(got, whole_batch(s, rows, t, rows, 1.0, 1.0), rtol=1e-5, atol=1e-6)
