"""CoT2Align: ETP against the official per-row loop, the six OT terms, the CoT view, the method."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from ctkd_bench.batch import TeacherSignals
from ctkd_bench.data.collate import collate_pair
from ctkd_bench.errors import ConfigError
from ctkd_bench.plugins import PluginManager
from ctkd_bench.toy import toy_batch, toy_context, toy_forward, toy_pair

import ctkd_methods.cot2align as cot2align_module
from ctkd_methods._cma import cma_terms, preshift_labels
from ctkd_methods.cot2align import (CoT2Align, FormatStates, cot_prompt, cot_view, cross_cot_ot, etp,
                                    transport_plan, attention_cost)
from ctkd_methods.dskd import student_inputs, teacher_inputs

torch.set_num_threads(1)


# -- the official ETP, one sequence pair at a time (float64, pruned, early-stop checks) -----------
def official_etp(x, y, alpha=0.1, kernel="mul", max_iter=100):
    if x.shape[0] == 0 or y.shape[0] == 0:
        return 0.0
    x, y = x.double(), y.double()
    cost = 1 - torch.softmax(x @ y.T / math.sqrt(x.shape[1]), dim=1)
    n, m = cost.shape
    a, b = torch.full((n, 1), 1 / n, dtype=torch.float64), torch.full((m, 1), 1 / m, dtype=torch.float64)
    u = torch.full((n, 1), 1 / n, dtype=torch.float64)
    K = torch.exp(-cost * alpha) if kernel == "mul" else torch.exp(-cost / alpha)
    err, it = 1.0, 0
    while err > 1e-9 and it < max_iter:
        v = b / (K.T @ u + 1e-9)
        u = a / (K @ v + 1e-9)
        it += 1
        if it % 50 == 1:
            err = (v * (K.T @ u) - b).abs().sum().item()
    plan = u * K * v.T
    return float((plan * cost).sum())


def rows_by_loop(x, y, xm, ym, **kw):
    return [official_etp(x[r][xm[r]], y[r][ym[r]], **kw) for r in range(x.shape[0])]


def random_masks(gen, R, L, lengths, left):
    mask = torch.zeros(R, L, dtype=torch.bool)
    for r, n in enumerate(lengths):
        lo = L - n - 1 if left else 1
        if n:
            mask[r, lo: lo + n] = True
    return mask


@pytest.mark.parametrize("kernel", ["mul", "div"])
def test_etp_matches_official_row_loop_both_padding_sides(kernel):
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(4, 7, 5, generator=gen) * 2, torch.randn(4, 8, 5, generator=gen) * 2
    for left in (False, True):
        xm = random_masks(gen, 4, 7, [5, 1, 3, 4], left)
        ym = random_masks(gen, 4, 8, [6, 2, 0, 1], not left)
        got = etp(x, y, xm, ym, alpha=0.1, kernel=kernel)
        want = rows_by_loop(x, y, xm, ym, alpha=0.1, kernel=kernel)
        assert got.tolist() == pytest.approx(want, rel=1e-5, abs=1e-7)
        assert got[2].item() == 0.0   # empty teacher side


def test_plan_has_the_uniform_marginals_on_valid_entries_only():
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(2, 5, 3, generator=gen), torch.randn(2, 6, 3, generator=gen)
    xm = torch.tensor([[1, 1, 1, 0, 0], [0, 1, 1, 1, 1]], dtype=torch.bool)
    ym = torch.tensor([[1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    for kernel, alpha in (("mul", 0.1), ("div", 0.1)):
        plan = transport_plan(attention_cost(x, y, ym), xm, ym, alpha=alpha, kernel=kernel, n_iters=300)
        a = xm.float() / xm.sum(-1, keepdim=True)
        b = ym.float() / ym.sum(-1, keepdim=True)
        assert torch.allclose(plan.sum(-1), a, atol=1e-6)
        assert torch.allclose(plan.sum(-2), b, atol=1e-5)
        assert plan[~(xm.unsqueeze(-1) & ym.unsqueeze(1))].abs().max() == 0


def test_official_kernel_makes_etp_nearly_one_minus_one_over_m():
    """Quirk 3: K = exp(-0.1·M) gives an almost uniform plan, so ETP ≈ 1 - 1/m per row."""
    gen = torch.Generator().manual_seed(2)
    x, y = torch.randn(1, 6, 8, generator=gen) * 3, torch.randn(1, 5, 8, generator=gen) * 3
    full_x, full_y = torch.ones(1, 6, dtype=torch.bool), torch.ones(1, 5, dtype=torch.bool)
    faithful = etp(x, y, full_x, full_y, kernel="mul").item()
    sharp = etp(x, y, full_x, full_y, kernel="div").item()
    assert faithful == pytest.approx(1 - 1 / 5, abs=0.03)
    assert sharp < faithful - 0.05


def test_early_stop_keeps_value_and_gradient_of_the_full_run():
    gen = torch.Generator().manual_seed(3)
    x = (torch.randn(3, 6, 4, generator=gen) * 2).requires_grad_()
    y = (torch.randn(3, 7, 4, generator=gen) * 2).requires_grad_()
    xm, ym = random_masks(gen, 3, 6, [4, 5, 0], False), random_masks(gen, 3, 7, [5, 2, 3], True)
    results = []
    for tol in (0.0, 1e-6):
        x.grad = y.grad = None
        value = etp(x, y, xm, ym, kernel="mul", tol=tol)
        value.sum().backward()
        results.append((value.detach(), x.grad.clone(), y.grad.clone()))
    (v0, gx0, gy0), (v1, gx1, gy1) = results
    assert torch.allclose(v0, v1, atol=1e-6)
    assert torch.allclose(gx0, gx1, atol=1e-5 * gx0.abs().max()) and torch.allclose(gy0, gy1, atol=1e-5 * gy0.abs().max())


def test_ot_gradients_reach_all_four_state_tensors_and_stay_finite(formats):
    plain, cot = formats
    leaves = []

    def grad_copy(fmt):
        s = tuple(t.clone().requires_grad_() for t in fmt.student)
        t = tuple(t.clone().requires_grad_() for t in fmt.teacher)
        leaves.extend(s + t)
        return dataclasses.replace(fmt, student=s, teacher=t)

    cross_cot_ot(grad_copy(plain), grad_copy(cot), fix_masked_ot_terms=True, tol=1e-6).backward()
    assert all(t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0 for t in leaves)


# -- the six OT terms ------------------------------------------------------------------------------
def random_format(gen, B, Ls, Lt, d, s_len, t_len):
    return FormatStates(student=(torch.randn(B, Ls, d, generator=gen), torch.randn(B, Ls, d, generator=gen)),
                        teacher=(torch.randn(B, Lt, d, generator=gen), torch.randn(B, Lt, d, generator=gen)),
                        student_mask=random_masks(gen, B, Ls, s_len, False),
                        teacher_mask=random_masks(gen, B, Lt, t_len, False))


def brute_terms(plain, cot, fix, flags=False):
    """Per (call, layer) lists of per-row ETP (or, with flags, whether the row has both sides)."""
    t_plain_cross = plain.teacher_mask if fix else torch.zeros_like(plain.teacher_mask)
    calls = {"1-2": [], "3-4": [], "5-6": []}
    for layer in (0, 1):
        def row_etps(s, t, tm):
            if flags:
                return [bool(s.student_mask[b].any() and tm[b].any()) for b in range(tm.shape[0])]
            return [official_etp(s.student[layer][b][s.student_mask[b]], t.teacher[layer][b][tm[b]])
                    for b in range(tm.shape[0])]
        calls["1-2"].append(row_etps(plain, plain, plain.teacher_mask) + row_etps(cot, cot, cot.teacher_mask))
        calls["3-4"].append(row_etps(plain, cot, cot.teacher_mask))
        calls["5-6"].append(row_etps(cot, plain, t_plain_cross))
    return calls


@pytest.fixture(scope="module")
def formats():
    gen = torch.Generator().manual_seed(4)
    plain = random_format(gen, 3, 6, 7, 4, s_len=[4, 0, 2], t_len=[5, 3, 1])  # row 1: empty student side
    cot = random_format(gen, 3, 9, 10, 4, s_len=[8, 6, 3], t_len=[9, 7, 2])
    return plain, cot


def test_faithful_ot_has_terms_five_six_zero_and_divides_by_four_times_records(formats):
    plain, cot = formats
    calls = brute_terms(plain, cot, fix=False)
    assert all(v == 0.0 for layer in calls["5-6"] for v in layer)
    want = sum(sum(layer) for c in calls.values() for layer in c) / (4 * 2 * 3)
    assert cross_cot_ot(plain, cot).item() == pytest.approx(want, rel=1e-5)


def test_fixed_masking_makes_terms_five_six_live(formats):
    plain, cot = formats
    calls = brute_terms(plain, cot, fix=True)
    extra = sum(sum(layer) for layer in calls["5-6"]) / 24
    assert extra > 0
    got = cross_cot_ot(plain, cot, fix_masked_ot_terms=True).item()
    assert got == pytest.approx(cross_cot_ot(plain, cot).item() + extra, rel=1e-5)


def test_nonempty_rows_divisor(formats):
    plain, cot = formats
    calls, live = brute_terms(plain, cot, fix=False), brute_terms(plain, cot, fix=False, flags=True)
    want = 0.0
    for name, c in calls.items():
        for layer, values in enumerate(c):
            want += sum(values) / (4 * max(1, sum(live[name][layer])))
    assert cross_cot_ot(plain, cot, divisor="nonempty_rows").item() == pytest.approx(want, rel=1e-5)
    # the empty plain row counts under the faithful divisor and not under the fix
    assert live["1-2"][0].count(False) == 1 and sum(live["5-6"][0]) == 0


# -- the CoT view ----------------------------------------------------------------------------------
def test_cot_view_by_hand():
    ex = {"id": "a", "prompt": "Q: 2+2?\nA:", "response": " 4", "generation": "Two and two make four."}
    assert cot_prompt(ex) == "Q: 2+2?\nA: Let's think step by step.\n"
    assert cot_view(ex) == ("Q: 2+2?\nA: Let's think step by step.\n",
                            "Two and two make four.\nTherefore, the answer is: 4")
    assert cot_prompt({"prompt": "### Response:\n"}) == "### Response:\nLet's think step by step.\n"


# -- the method on the toy pair --------------------------------------------------------------------
@pytest.fixture(scope="module")
def pair():
    return toy_pair("instruct")


GENERATIONS = ["First reverse the order of the words.", "", "Read it backwards: easy."]


def full_step(pair, method, examples, padding_side="right"):
    """What the core does for a method with a 'cot' view: collate, run both, attach views."""
    batch = toy_batch(pair, examples=examples, padding_side=padding_side)
    cot_examples = [dict(zip(("prompt", "response"), cot_view(dict(ex, generation=g))), id=ex["id"])
                    for ex, g in zip(examples, GENERATIONS)]
    view = collate_pair(cot_examples, "instruct", pair.student_tokenizer, pair.teacher_tokenizer, 96,
                        padding_side)
    batch.views["cot"] = view
    student, teacher = toy_forward(pair, method, batch)
    v_student, v_teacher = toy_forward(pair, method, view)
    student = dataclasses.replace(student, views={"cot": v_student})
    teacher = TeacherSignals(method.needs, {k: getattr(teacher, k) for k in teacher.available()},
                             views={"cot": v_teacher})
    return batch, student, teacher


def _method(pair, **overrides):
    m = CoT2Align(CoT2Align.make_config(overrides))
    m.modules = m.setup(toy_context(pair))
    return m


def brute_ot_on_toy(m, batch, student, teacher, fix=False):
    """Official compute_etp_loss per example with hand-shifted masks, summed / (4 · 2B)."""
    ot = m.modules["ot"]

    def mask(side, b):
        lab = side.labels[b]
        return torch.tensor([t + 1 < len(lab) and int(lab[t + 1]) != -100 for t in range(len(lab))])

    view, sv, tv = batch.views["cot"], student.views["cot"], teacher.views["cot"]
    total = 0.0
    with torch.no_grad():
        for b in range(len(batch)):
            sp, tp = mask(batch.student, b), mask(batch.teacher, b)
            sc, tc = mask(view.student, b), mask(view.teacher, b)
            for ls, lt in ((0, 0), (-1, -1)):
                hs_p, hs_c = student.hidden_states[ls][b], sv.hidden_states[ls][b]
                ht_p, ht_c = ot(teacher.hidden_states[lt][b]), ot(tv.hidden_states[lt][b])
                total += official_etp(hs_p[sp], ht_p[tp]) + official_etp(hs_c[sc], ht_c[tc])
                total += official_etp(hs_p[sp], ht_c[tc])
                if fix:
                    total += official_etp(hs_c[sc], ht_p[tp])
    return total / (4 * 2 * len(batch))


SHORT = [{"id": "x", "prompt": "Reverse: cat\nAnswer:", "response": " cat"},
         {"id": "y", "prompt": "Reverse: dog red big\nAnswer:", "response": " big red dog"},
         {"id": "z", "prompt": "Reverse: one two\nAnswer:", "response": " two one"}]


@pytest.mark.parametrize("padding_side,n,fix", [("right", 1, False), ("left", 3, False), ("right", 3, True)])
def test_method_loss_composition_and_ot_against_brute_force(pair, padding_side, n, fix):
    m = _method(pair, fix_masked_ot_terms=fix)
    batch, student, teacher = full_step(pair, m, SHORT[:n], padding_side)
    out = m.loss(batch, student, teacher)
    assert out["ot"].item() == pytest.approx(brute_ot_on_toy(m, batch, student, teacher, fix), rel=1e-4)
    # CE and KD pool the plain and CoT records over their student tokens
    p = m.modules
    with torch.no_grad():
        kd = [cma_terms(student_inputs(b.student, s), teacher_inputs(b.teacher, t), query=p["query"],
                        t2s=p["t2s"], s2t=p["s2t"], objective=m.objective())
              for b, s, t in ((batch, student, teacher),
                              (batch.views["cot"], student.views["cot"], teacher.views["cot"]))]
    n_tok = [int((preshift_labels(b.student.labels) != -100).sum()) for b in (batch, batch.views["cot"])]
    ce = (student.ce.item() * n_tok[0] + student.views["cot"].ce.item() * n_tok[1]) / sum(n_tok)
    kd_tok = (kd[0].kd_sum.item() + kd[1].kd_sum.item()) / sum(n_tok)
    assert out["loss"].item() == pytest.approx(0.5 * ce + 0.5 * (kd_tok + out["ot"].item()), rel=1e-4)


def test_padding_side_does_not_change_the_loss_with_masked_std(pair):
    m = _method(pair, masked_std=True, fix_masked_ot_terms=True)
    right = m.loss(*full_step(pair, m, SHORT, "right"))["loss"].item()
    left = m.loss(*full_step(pair, m, SHORT, "left"))["loss"].item()
    assert left == pytest.approx(right, rel=1e-4)


def test_gradients_reach_student_and_all_four_projectors_never_the_teacher(pair):
    m = _method(pair, gate_t2s_kd=False)
    pair.student.zero_grad(set_to_none=True)
    m.loss(*full_step(pair, m, SHORT[:2]))["loss"].backward()
    for name in ("query", "t2s", "s2t", "ot"):
        assert m.modules[name].weight.grad.abs().sum() > 0, name
    assert all(torch.isfinite(q.grad).all() for q in m.modules.parameters())
    assert pair.student.get_input_embeddings().weight.grad.abs().sum() > 0   # via OT on layer 0
    assert all(q.grad is None for q in pair.teacher.parameters())
    assert pair.head.lm_head.grad is None and pair.head.embeddings.grad is None
    pair.student.zero_grad(set_to_none=True)


def test_missing_view_is_a_clear_error(pair):
    m = _method(pair)
    batch = toy_batch(pair, 2)
    student, teacher = toy_forward(pair, m, batch)
    with pytest.raises(RuntimeError, match="'cot' view"):
        m.loss(batch, student, teacher)


def test_config_and_registration():
    c = CoT2Align.Config()
    assert (c.sinkhorn_alpha, c.ot_kernel, c.ot_divisor, c.fix_masked_ot_terms) == (0.1, "mul", "records", False)
    with pytest.raises(ConfigError):
        CoT2Align.make_config({"ot_kernel": "exp"})
    pm = PluginManager(load_entry_points=False)
    pm.add(cot2align_module)
    cls = pm.methods()["cot2align"].cls
    assert cls.category == "reasoning alignment"
    assert cls.needs.generations and set(cls.needs.hidden_states) == {0, -1} and "cot" in cls.views


# -- the batched OT against the previous single-call implementation (kept here as the reference) ---
def reference_cross_cot_ot(plain, cot, fix=False, alpha=0.1, kernel="mul", tol=1e-6):
    """Terms 1-6 as ONE padded ``align.ot.sinkhorn`` call over all rows (the pre-batching code)."""
    from ctkd_bench.align.ot import sinkhorn

    t_cross = plain.teacher_mask if fix else torch.zeros_like(plain.teacher_mask)
    pairs = [(plain, plain, plain.teacher_mask), (cot, cot, cot.teacher_mask), (plain, cot, cot.teacher_mask),
             (cot, plain, t_cross)]
    n = max(p[0].student_mask.shape[1] for p in pairs)
    m = max(p[2].shape[1] for p in pairs)

    def pad(t, length):
        return torch.cat([t, t.new_zeros((t.shape[0], length - t.shape[1]) + tuple(t.shape[2:]))], 1)
    xs, ys, xm, ym = [], [], [], []
    for layer in (0, 1):
        for s_fmt, t_fmt, t_mask in pairs:
            xs.append(pad(s_fmt.student[layer], n))
            ys.append(pad(t_fmt.teacher[layer], m))
            xm.append(pad(s_fmt.student_mask, n))
            ym.append(pad(t_mask, m))
    x, y, xm, ym = torch.cat(xs).float(), torch.cat(ys).float(), torch.cat(xm), torch.cat(ym)
    live = (xm.any(-1) & ym.any(-1)).nonzero().squeeze(-1)
    cost = attention_cost(x[live], y[live], ym[live])
    a = xm[live].float() / xm[live].sum(-1, keepdim=True)
    b = ym[live].float() / ym[live].sum(-1, keepdim=True)
    plan = sinkhorn(cost, a, b, alpha, n_iters=100, kernel=kernel, tol=tol)
    return (plan * cost).sum() / (4 * 2 * plain.student_mask.shape[0])


@pytest.fixture(scope="module")
def full_formats():
    """Every row has both sides (the usual case; the batched path then takes no row subsets)."""
    gen = torch.Generator().manual_seed(5)
    return (random_format(gen, 3, 6, 7, 4, s_len=[4, 1, 2], t_len=[5, 3, 1]),
            random_format(gen, 3, 9, 10, 4, s_len=[8, 6, 3], t_len=[9, 7, 2]))


@pytest.mark.parametrize("fix,kernel,rows", [(False, "mul", "some empty"), (True, "mul", "some empty"),
                                             (True, "div", "some empty"), (False, "mul", "all live"),
                                             (True, "mul", "all live")])
def test_batched_ot_equals_the_single_call_reference_value_and_gradient(formats, full_formats, fix, kernel,
                                                                         rows):
    plain, cot = formats if rows == "some empty" else full_formats

    def leaves(fmt):
        return dataclasses.replace(fmt, student=tuple(t.clone().requires_grad_() for t in fmt.student),
                                   teacher=tuple(t.clone().requires_grad_() for t in fmt.teacher))
    results = []
    for fn in (lambda p, c: cross_cot_ot(p, c, fix_masked_ot_terms=fix, kernel=kernel, tol=1e-6),
               lambda p, c: reference_cross_cot_ot(p, c, fix=fix, kernel=kernel)):
        p, c = leaves(plain), leaves(cot)
        value = fn(p, c)
        value.backward()
        results.append((value.detach(), [t.grad for f in (p, c) for t in f.student + f.teacher]))
    (v_new, g_new), (v_ref, g_ref) = results
    assert v_new.item() == pytest.approx(v_ref.item(), rel=1e-6)
    for new, ref in zip(g_new, g_ref):   # float32 rounding through the unrolled iterations: ~1e-5..7e-5
        assert (new - ref).abs().max() <= 1e-4 * ref.abs().max()


def test_teacher_projector_after_packing_equals_projecting_first(formats):
    plain, cot = formats
    ot = torch.nn.Linear(4, 4)
    with torch.no_grad():
        projected = [dataclasses.replace(f, teacher=tuple(ot(t) for t in f.teacher)) for f in (plain, cot)]
        raw = [dataclasses.replace(f, teacher_projector=ot) for f in (plain, cot)]
        assert cross_cot_ot(*raw, fix_masked_ot_terms=True).item() == pytest.approx(
            cross_cot_ot(*projected, fix_masked_ot_terms=True).item(), rel=1e-6)


def test_faithful_default_never_solves_terms_five_six(formats, monkeypatch):
    """Under the official masking the cross pair (s_cot, t_plain) has no teacher position: it is not
    built at all (3 blocks of rows, not 4), and its value is exactly 0; the fix makes it a 4th block."""
    import ctkd_methods._cot2align_ot as ot_module
    plain, cot = formats
    seen, real = [], ot_module.etp_blocks

    def counting(blocks, **kw):
        seen.append(len(blocks))
        return real(blocks, **kw)
    monkeypatch.setattr(ot_module, "etp_blocks", counting)
    faithful, fixed = cross_cot_ot(plain, cot), cross_cot_ot(plain, cot, fix_masked_ot_terms=True)
    assert seen == [3, 4]
    extra = sum(sum(layer) for layer in brute_terms(plain, cot, fix=True)["5-6"]) / 24
    assert fixed.item() == pytest.approx(faithful.item() + extra, rel=1e-5) and extra > 0


def test_packing_gathers_each_rows_positions_in_order():
    from ctkd_methods._cot2align_ot import _gather, pack_positions
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(3, 5, 2, generator=gen, requires_grad=True)
    mask = torch.tensor([[0, 1, 0, 1, 1], [0, 0, 0, 0, 0], [1, 0, 0, 0, 1]], dtype=torch.bool)
    index, packed = pack_positions(mask)
    got = _gather(x, index)
    assert torch.equal(got, x.gather(1, index.unsqueeze(-1).expand(-1, -1, 2)))
    assert torch.equal(got[0], x[0, [1, 3, 4]]) and torch.equal(got[2, :2], x[2, [0, 4]])
    assert packed.tolist() == [[True] * 3, [False] * 3, [True, True, False]]
    weights = torch.randn_like(got)
    (grad,) = torch.autograd.grad((got * weights).sum(), x)
    assert torch.equal(grad[0, [1, 3, 4]], weights[0]) and grad[0, [0, 2]].abs().sum() == 0
