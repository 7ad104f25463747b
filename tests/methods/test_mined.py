"""MinED baseline: map inversion, row alignment, the KD sum against the DSKD formulation, end to end."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ctkd_bench.plugins import get_plugin_manager
from ctkd_bench.toy import toy_batch, toy_context, toy_forward, toy_pair
from ctkd_methods.mined import MinED, content_rows, invert_vocab_map, mined_kd_loss, mined_row_alignment

IGN = -100


def test_inverse_map_keeps_the_lowest_teacher_id():
    tea2stu = torch.tensor([2, 0, 2, 1, 0])
    assert invert_vocab_map(tea2stu, 4).tolist() == [1, 3, 0, -1]


def test_row_alignment_keeps_one_to_one_rows_whose_map_agrees():
    # teacher: "the" "ca" "t" "!" ; student: "the" "cat" "?"
    # DTW by hand (ties: diagonal, up, left): path (0,0) (1,1) (2,2) (3,2)
    args = (["the", "ca", "t", "!"], ["the", "cat", "?"], [0, 1, 2, 3], [0, 1, 2])
    # "the" and "cat"-"ca" are 1-1 and the map agrees; "?" is aligned to two teacher rows
    assert mined_row_alignment(*args, tea2stu=torch.tensor([0, 1, 1, 2])) == [0, 1, -1]
    # the same alignment with a map that sends teacher "ca" elsewhere: one-hot
    assert mined_row_alignment(*args, tea2stu=torch.tensor([0, 5, 1, 2])) == [0, -1, -1]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(min_size=0, max_size=4), min_size=1, max_size=8))
def test_identical_sequences_align_diagonally(strings):
    ids = list(range(len(strings)))
    kept = mined_row_alignment(strings, strings, ids, ids, torch.arange(len(strings)))
    assert kept == ids


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=4), min_size=1, max_size=7), st.lists(st.text(max_size=4), min_size=1, max_size=7))
def test_kept_rows_are_monotone_and_in_range(a, b):
    kept = mined_row_alignment(a, b, list(range(len(a))), list(range(len(b))), torch.zeros(len(a), dtype=torch.long))
    assert len(kept) == len(b)
    rows = [i for i in kept if i >= 0]
    assert rows == sorted(set(rows)) and all(0 <= i < len(a) for i in rows)


# -- the KD sum against the DSKD construction (full target rows, then FKL) ------------------------
def dskd_reference(s_logits, t_logits, s_labels, aligned, stu2tea, T):
    total = 0.0
    for b in range(s_logits.shape[0]):
        for t in range(s_logits.shape[1] - 1):
            y = int(s_labels[b, t + 1])
            if y == IGN:
                continue
            i = int(aligned[b, t])
            target = torch.full((s_logits.shape[-1],), -1e5, dtype=torch.float64)
            if i >= 0:
                for v in range(len(stu2tea)):
                    if stu2tea[v] >= 0:
                        target[v] = t_logits[b, i, stu2tea[v]]
            else:
                target[y] = 100.0
            p = torch.softmax(target / T, -1)
            kl = p * (torch.log_softmax(target / T, -1) - torch.log_softmax(s_logits[b, t] / T, -1))
            total += float(kl.sum())
    return total


def small_case(side="right"):
    g = torch.Generator().manual_seed(0)
    s_logits = torch.randn(2, 5, 6, generator=g, dtype=torch.float64)
    t_logits = torch.randn(2, 6, 4, generator=g, dtype=torch.float64)
    labels = [[IGN, IGN, 3, 1, 5], [IGN, 2, 4, IGN, IGN]]
    aligned = [[-1, 3, -1, 5, -1], [2, -1, -1, -1, -1]]
    if side == "left":
        labels = [[IGN, IGN, 3, 1, 5], [IGN, IGN, IGN, 2, 4]]
        aligned = [[-1, 3, -1, 5, -1], [-1, -1, 2, -1, -1]]
    return s_logits, t_logits, torch.tensor(labels), torch.tensor(aligned)


@pytest.mark.parametrize("side", ["right", "left"])
def test_kd_sum_matches_the_dskd_construction(side):
    s_logits, t_logits, labels, aligned = small_case(side)
    stu2tea = torch.tensor([1, -1, 0, 3, 2, -1])
    got, n_teacher = mined_kd_loss(s_logits, t_logits, labels, aligned, stu2tea, temperature=2.0)
    assert got.item() == pytest.approx(dskd_reference(s_logits, t_logits, labels, aligned, stu2tea, 2.0), rel=1e-9)
    assert n_teacher.item() == 3


def test_one_hot_rows_are_tempered_cross_entropy():
    s_logits, t_logits, labels, _ = small_case()
    none = torch.full_like(labels, -1)
    got, n_teacher = mined_kd_loss(s_logits, t_logits, labels, none, torch.tensor([0, 1, 2, 3, -1, -1]), 2.0)
    lp = torch.log_softmax(s_logits / 2.0, -1)
    want = -(lp[0, 1, 3] + lp[0, 2, 1] + lp[0, 3, 5] + lp[1, 0, 2] + lp[1, 1, 4])
    assert n_teacher.item() == 0 and got.item() == pytest.approx(want.item())


def test_identity_map_on_identical_tokenisation_is_vanilla_kd():
    g = torch.Generator().manual_seed(1)
    s_logits = torch.randn(1, 4, 5, generator=g, dtype=torch.float64)
    t_logits = torch.randn(1, 4, 5, generator=g, dtype=torch.float64)
    labels = torch.tensor([[IGN, 1, 2, 3]])
    aligned = torch.tensor([[0, 1, 2, -1]])
    got, _ = mined_kd_loss(s_logits, t_logits, labels, aligned, torch.arange(5), temperature=2.0)
    p = torch.softmax(t_logits[0, :3] / 2, -1)
    want = (p * (p.log() - torch.log_softmax(s_logits[0, :3] / 2, -1))).sum()
    assert got.item() == pytest.approx(want.item(), rel=1e-9)


def test_teacher_logits_get_no_gradient():
    s_logits, t_logits, labels, aligned = small_case()
    s_logits.requires_grad_(True)
    t_logits.requires_grad_(True)
    got, _ = mined_kd_loss(s_logits, t_logits, labels, aligned, torch.tensor([1, -1, 0, 3, 2, -1]))
    got.backward()
    assert s_logits.grad.abs().sum() > 0 and t_logits.grad is None


# -- the plugin ------------------------------------------------------------------------------------
def test_registered_as_baseline():
    cls = get_plugin_manager().method("mined").cls
    assert cls is MinED and cls.category == "baseline"
    assert cls.needs.teacher_signal_kinds() == ["logits"]


@pytest.fixture(scope="module")
def prepared():
    pair = toy_pair("instruct")
    method = MinED()
    method.prepare(toy_context(pair))
    return pair, method


@pytest.mark.parametrize("side", ["right", "left"])
def test_end_to_end_on_toy_pair(prepared, side):
    pair, method = prepared
    batch = toy_batch(pair, n=3, padding_side=side)
    pair.student.zero_grad(set_to_none=True)
    student, teacher = toy_forward(pair, method, batch)
    out = method.loss(batch, student, teacher)
    assert torch.isfinite(out["loss"]) and 0.0 < out["teacher_target_frac"].item() <= 1.0
    assert out["loss"].item() == pytest.approx(0.5 * student.ce.item() + 0.5 * out["kd"].item(), rel=1e-6)
    out["loss"].backward()
    assert sum(p.grad.abs().sum() for p in pair.student.parameters() if p.grad is not None) > 0
    assert all(p.grad is None for p in pair.teacher.parameters())


def test_aligned_rows_point_at_teacher_content_rows_and_are_cached(prepared):
    pair, method = prepared
    batch = toy_batch(pair, n=4, padding_side="left")
    aligned = method.aligned_rows(batch)
    t_rows = content_rows(batch.teacher.labels)
    s_rows = content_rows(batch.student.labels)
    for b in range(4):
        kept = aligned[b][aligned[b] >= 0]
        assert bool(t_rows[b, kept].all()) and bool(s_rows[b, aligned[b] >= 0].all())
        # a kept pair's tokens agree under the MinED map
        for t in torch.nonzero(aligned[b] >= 0)[:, 0]:
            t_id = batch.teacher.input_ids[b, aligned[b, t]]
            assert int(method.tea2stu[t_id]) == int(batch.student.input_ids[b, t])
    cached = len(method._alignments)
    assert torch.equal(method.aligned_rows(batch), aligned) and len(method._alignments) == cached


def reference_aligned_rows(method, batch):
    """Per row: content tokens, `mined_row_alignment` on their strings, positions written back."""
    s_rows, t_rows = content_rows(batch.student.labels), content_rows(batch.teacher.labels)
    out = torch.full(batch.student.input_ids.shape, -1, dtype=torch.long)
    for b in range(len(out)):
        s_pos, t_pos = torch.nonzero(s_rows[b])[:, 0], torch.nonzero(t_rows[b])[:, 0]
        s_tok, t_tok = batch.student.input_ids[b, s_pos].tolist(), batch.teacher.input_ids[b, t_pos].tolist()
        kept = mined_row_alignment([method.teacher_strings[i] for i in t_tok],
                                   [method.student_strings[i] for i in s_tok], t_tok, s_tok, method.tea2stu)
        for j, i in enumerate(kept):
            if i >= 0:
                out[b, s_pos[j]] = t_pos[i]
    return out


@pytest.mark.parametrize("side", ["right", "left"])
def test_batched_alignment_equals_the_per_row_reference(prepared, side):
    pair, method = prepared
    method._alignments.clear()
    examples = pair.examples[3:9] + [{"id": "e", "prompt": "Reverse: cat\nAnswer:", "response": ""}]
    batch = toy_batch(pair, examples=examples, padding_side=side)
    want = reference_aligned_rows(method, batch)
    assert (want >= 0).any()
    assert torch.equal(method.aligned_rows(batch), want)            # computed
    assert torch.equal(method.aligned_rows(batch), want)            # memoised


@pytest.mark.parametrize("piece_bytes", [4, 4 * 40 * 3, 1 << 30])    # one row, three rows, all
def test_kd_sum_in_row_pieces_equals_the_whole_batch_form(monkeypatch, piece_bytes):
    """The papers' vocabularies take row pieces: the same sum, count and gradient."""
    from ctkd_methods import _pieces, mined
    g = torch.Generator().manual_seed(9)
    s_logits = (torch.randn(2, 7, 30, generator=g) * 3).requires_grad_(True)
    t_logits = torch.randn(2, 8, 40, generator=g) * 3
    labels = torch.randint(0, 30, (2, 7), generator=g)
    labels[0, :2], labels[1, :4] = -100, -100
    aligned = torch.randint(0, 8, (2, 7), generator=g)
    aligned[0, 3], aligned[1, 4] = -1, -1                              # one-hot rows among the content rows
    stu2tea = torch.randint(-1, 40, (30,), generator=g)                # -1: unmapped student ids
    whole, n_whole = mined.mined_kd_loss(s_logits, t_logits, labels, aligned, stu2tea, 2.0)
    g_whole, = torch.autograd.grad(whole, s_logits)
    monkeypatch.setattr(_pieces, "PIECES_FROM_BYTES", 0)
    monkeypatch.setattr(_pieces, "PIECE_BYTES", piece_bytes)
    calls = []
    real = mined._kd_sum_in_pieces
    monkeypatch.setattr(mined, "_kd_sum_in_pieces", lambda *a: calls.append(1) or real(*a))
    pieces, n_pieces = mined.mined_kd_loss(s_logits, t_logits, labels, aligned, stu2tea, 2.0)
    g_pieces, = torch.autograd.grad(pieces, s_logits)
    assert calls
    assert int(n_pieces) == int(n_whole) and 0 < int(n_whole) < int(mined.content_rows(labels).sum())
    torch.testing.assert_close(pieces, whole, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(g_pieces, g_whole, rtol=1e-4, atol=1e-6)
