"""MultiLevelOT: the pure terms against a per-row re-derivation of each official version."""
import dataclasses

import pytest
import torch

from ctkd_bench.plugins import get_plugin_manager
from ctkd_bench.toy import toy_batch, toy_forward, toy_pair
from ctkd_methods.multilevelot import MultiLevelOT, RowColSinkhorn, multilevelot_terms, row_col_sinkhorn

IGN = -100


# -- reference: the official forward re-derived row by row (f = 1) --------------------------------
def official_window(row):
    size = sum(1 for v in row if v != IGN)
    run = 0
    while run < len(row) and row[run] == IGN:
        run += 1
    return (run - 1 if run > 0 else 0), size


def reference(s_logits, t_logits, s_labels, t_labels, version, k=50, skip_s=True):
    def block(logits, labels, drop):
        sizes, rows = [], []
        for b in range(logits.shape[0]):
            start, size = official_window(labels[b].tolist())
            size -= drop
            z = logits[b] / (logits[b].std(dim=-1, keepdim=True) + 1e-4)
            rows.append([torch.softmax(z[start + i], -1) for i in range(size)])
            sizes.append(size)
        return rows, sizes

    s_rows, n_s = block(s_logits, s_labels, int(skip_s))
    t_rows, n_t = block(t_logits, t_labels, 0)
    width = max(n_s + n_t)

    def dense(rows, vocab):
        out = torch.zeros(len(rows), width, vocab, dtype=torch.float64)
        for b, r in enumerate(rows):
            for i, p in enumerate(r):
                out[b, i] = p
        return out

    s, t = dense(s_rows, s_logits.shape[-1]), dense(t_rows, t_logits.shape[-1])
    if version != "head":
        s, t = s.sort(-1, descending=True).values, t.sort(-1, descending=True).values
    s = s[..., torch.argsort(s.sum(dim=(0, 1)), descending=True)][..., :k]
    t = t[..., torch.argsort(t.sum(dim=(0, 1)), descending=True)][..., :k]
    v = max(s.shape[-1], t.shape[-1])
    s = torch.nn.functional.pad(s, (0, v - s.shape[-1]))
    t = torch.nn.functional.pad(t, (0, v - t.shape[-1]))
    ad = []
    for b in range(s.shape[0]):
        size = min(n_s[b], n_t[b])
        ad.append(sum((s[b, i] - t[b, i]).abs().sum() for i in range(size)) / size)
    lg = -(torch.softmax(s, -1) * torch.log_softmax(t, -1)).sum(-1).mean()
    sd = 0.0
    for b in range(s.shape[0]):
        x, y = torch.softmax(t[b] / 2, -1), torch.softmax(s[b] / 2, -1)
        cost = torch.zeros(width, width, dtype=torch.float64)
        for i in range(width):
            for j in range(width):
                cost[i, j] = (x[i] - y[j]).abs().sum()
        plan = torch.exp(-cost / 0.1)
        for _ in range(10):
            plan = plan / plan.sum(dim=1, keepdim=True)
            plan = plan / plan.sum(dim=0, keepdim=True)
        value = (plan * cost).sum()
        sd = value if version == "v1" else sd + value
    return {"ad": sum(ad) / len(ad), "lg": lg, "sd": sd}


def labels_row(prompt, answer, length, side):
    body = [IGN] * (1 + prompt) + [3] * answer
    pad = [IGN] * (length - len(body))
    return pad + body if side == "left" else body + pad


def case(seed, side, v_s=60, v_t=70, s_answers=(3, 4, 2), t_answers=(4, 2, 3)):
    g = torch.Generator().manual_seed(seed)
    ls, lt = 9, 10
    s_labels = torch.tensor([labels_row(1 + b % 2, a, ls, side) for b, a in enumerate(s_answers)])
    t_labels = torch.tensor([labels_row(2, a, lt, side) for a in t_answers])
    s_logits = torch.randn(len(s_answers), ls, v_s, generator=g, dtype=torch.float64) * 3
    t_logits = torch.randn(len(t_answers), lt, v_t, generator=g, dtype=torch.float64) * 3
    return s_logits, t_logits, s_labels, t_labels


@pytest.mark.parametrize("version", ["v1", "v2", "head"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_terms_match_the_official_reference(version, side):
    s_logits, t_logits, s_labels, t_labels = case(1, side)
    got = multilevelot_terms(s_logits, t_logits, s_labels, t_labels, version=version)
    want = reference(s_logits, t_logits, s_labels, t_labels, version)
    for key in ("ad", "lg", "sd"):
        assert got[key].item() == pytest.approx(float(want[key]), rel=1e-7), key


def test_small_vocabulary_is_zero_padded_to_k():
    s_logits, t_logits, s_labels, t_labels = case(2, "right", v_s=12, v_t=30)
    got = multilevelot_terms(s_logits, t_logits, s_labels, t_labels, version="v2")
    want = reference(s_logits, t_logits, s_labels, t_labels, "v2")
    for key in ("ad", "lg", "sd"):
        assert got[key].item() == pytest.approx(float(want[key]), rel=1e-7), key


def test_v1_and_v2_differ_only_in_the_sinkhorn_batch_reduction():
    s_logits, t_logits, s_labels, t_labels = case(3, "right", s_answers=(3, 4, 6), t_answers=(4, 2, 3))
    v1 = multilevelot_terms(s_logits, t_logits, s_labels, t_labels, version="v1")
    v2 = multilevelot_terms(s_logits, t_logits, s_labels, t_labels, version="v2")
    last = multilevelot_terms(s_logits[2:], t_logits[2:], s_labels[2:], t_labels[2:], version="v2")
    assert v1["ad"].item() == pytest.approx(v2["ad"].item())
    assert v1["lg"].item() == pytest.approx(v2["lg"].item())
    assert v2["sd"].item() > v1["sd"].item()
    # v1 keeps the last row's value: the same as that row alone (it sets the window width, Lm)
    assert v1["sd"].item() == pytest.approx(last["sd"].item())


def test_identical_inputs_give_zero_absolute_difference():
    s_logits, _, s_labels, _ = case(4, "right", v_s=60)
    got = multilevelot_terms(s_logits, s_logits.clone(), s_labels, s_labels, skip_student_eos=False)
    assert got["ad"].item() == pytest.approx(0.0, abs=1e-12)


def test_sinkhorn_columns_sum_to_one_rows_nearly():
    cost = torch.rand(2, 5, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    plan = row_col_sinkhorn(torch.exp(-cost / 0.1), 10)
    assert torch.allclose(plan.sum(1), torch.ones(2, 5, dtype=torch.float64))
    assert torch.allclose(plan.sum(2), torch.ones(2, 5, dtype=torch.float64), atol=1e-2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_written_out_sinkhorn_gradient_equals_autograd_through_the_steps(dtype):
    """`RowColSinkhorn` (the hot path) against autograd through the plain `row_col_sinkhorn`."""
    g = torch.Generator().manual_seed(3)
    cost = torch.rand(3, 7, 6, generator=g, dtype=dtype) * 2
    weight = torch.randn(3, 7, 6, generator=g, dtype=dtype)
    real = torch.ones(3, 7, 6, dtype=dtype)
    real[0, 5:] = 0                 # masked rows and columns (mask_padding_rows)
    real[1, :, 4:] = 0
    results = []
    for sinkhorn, dt in ((row_col_sinkhorn, torch.float64), (RowColSinkhorn.apply, dtype)):
        c = cost.to(dt).requires_grad_(True)      # reference in float64: its masked rows overflow float32
        plan = sinkhorn(torch.exp(-c / 0.1) * real.to(dt), 10)
        (plan * weight.to(dt) + plan * c).sum().backward()
        results.append((plan.detach(), c.grad))
    if dtype == torch.float64:
        assert torch.equal(results[0][0], results[1][0])
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(results[1][1], results[0][1].to(dtype), **tol)
    assert results[0][1].abs().max() > 0.1 and (results[1][1][real == 0] == 0).all()


def test_written_out_sinkhorn_forward_is_the_plain_one_in_float32():
    g = torch.Generator().manual_seed(4)
    kernel = torch.exp(-torch.rand(2, 9, 8, generator=g) * 20)
    kernel[0, 7:] = 0
    assert torch.equal(RowColSinkhorn.apply(kernel, 10), row_col_sinkhorn(kernel, 10))


def test_length_one_response_and_batch_of_one():
    s_logits, t_logits, s_labels, t_labels = case(5, "left", s_answers=(1,), t_answers=(1,))
    got = multilevelot_terms(s_logits, t_logits, s_labels, t_labels)
    # the student's only row predicts EOS and is skipped: no token-level pair, only padding rows
    assert got["ad"].item() == 0.0
    assert torch.isfinite(got["lg"]) and torch.isfinite(got["sd"])
    got = multilevelot_terms(s_logits, t_logits, s_labels, t_labels, skip_student_eos=False)
    want = reference(s_logits, t_logits, s_labels, t_labels, "v1", skip_s=False)
    assert got["ad"].item() == pytest.approx(float(want["ad"]), rel=1e-7)


def test_padding_row_mask_changes_only_lg_and_sd():
    s_logits, t_logits, s_labels, t_labels = case(6, "right")
    plain = multilevelot_terms(s_logits, t_logits, s_labels, t_labels, version="v2")
    masked = multilevelot_terms(s_logits, t_logits, s_labels, t_labels, version="v2", mask_padding_rows=True)
    assert masked["ad"].item() == pytest.approx(plain["ad"].item())
    assert masked["lg"].item() != pytest.approx(plain["lg"].item())
    assert masked["sd"].item() != pytest.approx(plain["sd"].item())
    fixed = multilevelot_terms(s_logits, t_logits, s_labels, t_labels, fix_double_softmax=True)
    assert torch.isfinite(fixed["lg"]) and fixed["lg"].item() != pytest.approx(plain["lg"].item())
    s32 = s_logits.float().requires_grad_(True)   # float32: masked Sinkhorn rows must not overflow to NaN
    masked = multilevelot_terms(s32, t_logits.float(), s_labels, t_labels, version="v2", mask_padding_rows=True)
    masked["sd"].backward()
    assert torch.isfinite(s32.grad).all() and s32.grad.abs().sum() > 0


def test_gradient_reaches_student_logits_only():
    s_logits, t_logits, s_labels, t_labels = case(7, "right")
    s_logits.requires_grad_(True)
    t_logits.requires_grad_(True)
    terms = multilevelot_terms(s_logits, t_logits, s_labels, t_labels, version="head")
    (terms["ad"] + terms["lg"] + terms["sd"]).backward()
    assert s_logits.grad.abs().sum() > 0
    assert t_logits.grad is None


def test_registered_and_configured():
    cls = get_plugin_manager().method("multilevelot").cls
    assert cls is MultiLevelOT and cls.category == "multi-level alignment"
    assert cls.needs.teacher_signal_kinds() == ["logits"]
    assert MultiLevelOT.make_config().version == "v1"
    with pytest.raises(Exception, match="version"):
        MultiLevelOT.make_config({"version": "v3"})


@pytest.mark.parametrize("version", ["v1", "head"])
def test_end_to_end_on_toy_pair(version):
    pair = toy_pair("instruct")
    method = MultiLevelOT(MultiLevelOT.make_config({"version": version}))
    batch = toy_batch(pair, n=3, padding_side="left")
    pair.student.zero_grad(set_to_none=True)
    student, teacher = toy_forward(pair, method, batch)
    out = method.loss(batch, student, teacher)
    want = student.ce + 1.5 * (out["ad"] + 0.1 * out["lg"] + 1e-4 * out["sd"])
    assert out["loss"].item() == pytest.approx(want.item(), rel=1e-6)
    (out["loss"] - student.ce).backward()
    assert sum(p.grad.abs().sum() for p in pair.student.parameters() if p.grad is not None) > 0
    assert all(p.grad is None for p in pair.teacher.parameters())


def test_memoised_teacher_columns_give_the_same_loss_and_follow_label_changes():
    pair = toy_pair("instruct")
    batch = toy_batch(pair, n=3, padding_side="right")
    student, teacher = toy_forward(pair, MultiLevelOT(), batch)
    memo = MultiLevelOT(MultiLevelOT.make_config({"fix_double_softmax": True}))
    fresh = [memo.loss(batch, student, teacher) for _ in range(2)]       # the 2nd call reads the memo
    assert set(memo._teacher_memo.rows) == set(batch.ids)
    for key in ("ad", "lg", "sd", "loss"):
        assert fresh[1][key].item() == fresh[0][key].item(), key
    # the same ids with another teacher answer length: recomputed, not read from the memo
    labels = batch.teacher.labels.clone()
    last = (labels[0] != -100).nonzero().max()
    labels[0, last] = -100
    changed = dataclasses.replace(batch, teacher=dataclasses.replace(batch.teacher, labels=labels))
    want = MultiLevelOT(MultiLevelOT.make_config({"fix_double_softmax": True})).loss(changed, student, teacher)
    assert memo.loss(changed, student, teacher)["loss"].item() == want["loss"].item()


@pytest.mark.parametrize("tied", [True, False])
def test_kept_columns_are_torch_topk_values(tied):
    """The numpy top-k (``_topk``) keeps torch.topk's sorted values; without ties, its gradient too
    (tied values may sit in the other order, which is an equally valid sort)."""
    from ctkd_methods.multilevelot import answer_columns, row_std
    torch.manual_seed(3)
    logits = torch.randn(2, 9, 40) * 2
    logits = (logits.round() if tied else logits).requires_grad_(True)  # rounded: ties at the k-th value
    labels = torch.full((2, 9), -100)
    labels[:, 3:] = 1
    kept = answer_columns(logits, labels, 0, 1.0, 7, "v1", keep_logits=True)
    selected = labels.roll(-1, 1) != -100
    selected[:, -1] = False
    z = logits[selected] / (row_std(logits[selected]) + 1e-4)
    want = torch.softmax(z, -1).topk(7, dim=-1)
    assert torch.equal(kept.probs, want.values)
    if tied:
        return
    assert torch.equal(kept.logits, z.gather(-1, want.indices))
    weights = torch.randn(kept.probs.shape)
    g_kept, = torch.autograd.grad((kept.probs * weights).sum(), logits)
    g_want, = torch.autograd.grad((want.values * weights).sum(), logits)
    torch.testing.assert_close(g_kept, g_want, rtol=1e-5, atol=1e-9)   # summation order only


@pytest.mark.parametrize("with_grad", [False, True])
@pytest.mark.parametrize("keep_logits", [True, False])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_answer_columns_in_row_pieces_equal_the_whole_batch(monkeypatch, with_grad, keep_logits, temperature):
    """At the papers' vocabularies both sides go piece by piece (the teacher's without a gradient,
    the student's with a written-out backward): the same values, the autograd gradient."""
    from ctkd_methods import _pieces, multilevelot
    torch.manual_seed(5)
    base = torch.randn(3, 11, 60) * 3
    labels = torch.full((3, 11), -100)
    labels[0, 2:] = 1
    labels[1, 6:9] = 2
    labels[2, 9:] = 3
    weights = torch.randn(2, 33, 7)
    calls = []

    def run(pieces: bool):
        logits = base.clone().requires_grad_(with_grad)
        with monkeypatch.context() as m:
            if pieces:
                m.setattr(_pieces, "PIECES_FROM_BYTES", 0)
                m.setattr(_pieces, "PIECE_BYTES", 4 * 60 * 3)            # three rows per piece
                real = multilevelot._ColumnsInPieces.apply
                m.setattr(multilevelot._ColumnsInPieces, "apply", lambda *a: calls.append(1) or real(*a))
            cols = multilevelot.answer_columns(logits, labels, 1, temperature, 7, "v2", keep_logits=keep_logits)
        if not with_grad:
            return cols, None
        n = cols.probs.shape[0]
        loss = (cols.probs * weights[0, :n]).sum() + ((cols.logits * weights[1, :n]).sum() if keep_logits else 0)
        loss.backward()
        return cols, logits.grad

    (whole, g_whole), (pieces, g_pieces) = run(False), run(True)
    assert calls == [1]                                                      # only the second run
    assert torch.equal(pieces.sizes, whole.sizes) and torch.equal(pieces.probs, whole.probs)
    assert (pieces.logits is None) == (not keep_logits)
    if keep_logits:
        assert torch.equal(pieces.logits, whole.logits)
    if with_grad:
        torch.testing.assert_close(g_pieces, g_whole, rtol=1e-4, atol=1e-6)


def test_two_pass_std_equals_torch_std_to_rounding():
    from ctkd_methods.multilevelot import row_std
    torch.manual_seed(8)
    x = (torch.randn(5, 300) * torch.tensor([0.01, 1.0, 3.0, 100.0, 1e4]).unsqueeze(1) + 7).requires_grad_(True)
    got, want = row_std(x), x.std(dim=-1, keepdim=True)
    torch.testing.assert_close(got, want, rtol=2e-6, atol=0)
    w = torch.randn(5, 1)
    g_got, = torch.autograd.grad((got * w).sum(), x)
    g_want, = torch.autograd.grad((want * w).sum(), x)
    torch.testing.assert_close(g_got, g_want, rtol=1e-4, atol=1e-7)
