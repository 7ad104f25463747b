"""DSKD / DSKD-CMA: divergences, both variants against loop-based brute force, gradients, edges."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ctkd_bench.errors import ConfigError
from ctkd_bench.method import MethodContext, ModelDims
from ctkd_bench.models.build import ArchSpec, build_model
from ctkd_bench.plugins import PluginManager
from ctkd_bench.teacher.signals import TeacherHead, live_teacher_signals
from ctkd_bench.toy import toy_batch, toy_context, toy_forward, toy_pair
from ctkd_bench.data.collate import collate_pair
from ctkd_bench.train.forward import student_forward

import ctkd_methods.dskd as dskd_module
from ctkd_methods._cma import SpaceInputs, cma_terms, preshift_labels
from ctkd_methods._divergences import OBJECTIVES, KDObjective, token_divergence
from ctkd_methods.dskd import DSKD, dual_space_terms

torch.set_num_threads(1)


# -- brute-force references (python floats, explicit loops) --------------------------------------
def _softmax(z):
    top = max(z)
    e = [math.exp(v - top) for v in z]
    s = sum(e)
    return [v / s for v in e]


def _kl(p, q):
    return sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q) if pi > 0)


def brute_div(s_row, t_row, obj, T=1.0, tT=1.0, lam=0.1, alpha=0.5):
    ps = _softmax([float(v) / T for v in s_row])
    pt = _softmax([float(v) / T / tT for v in t_row])
    if obj == "fkl":
        return _kl(pt, ps)
    if obj == "rkl":
        return _kl(ps, pt)
    if obj == "js":
        m = [(a + b) / 2 for a, b in zip(ps, pt)]
        return 0.5 * sum(b * (math.log(b + 1e-9) - math.log(c + 1e-9)) for b, c in zip(pt, m)) + \
            0.5 * sum(a * (math.log(a + 1e-9) - math.log(c + 1e-9)) for a, c in zip(ps, m))
    if obj == "skl":
        return _kl(pt, [lam * b + (1 - lam) * a for a, b in zip(ps, pt)])
    if obj == "srkl":
        return _kl(ps, [(1 - lam) * b + lam * a for a, b in zip(ps, pt)])
    assert obj == "akl"
    head = tail = cum = 0.0
    for i in sorted(range(len(pt)), key=lambda k: pt[k]):   # ascending, as officially
        cum += pt[i]
        gap = abs(pt[i] - ps[i])
        if cum <= alpha:
            tail += gap
        else:
            head += gap
    return (head * _kl(pt, ps) + tail * _kl(ps, pt)) / (head + tail)


def _targets(labels, b, t):
    """Pre-shifted target by hand: the HF label of the next position."""
    return int(labels[b, t + 1]) if t + 1 < labels.shape[1] else -100


def _std(values):
    vals = [float(v) for v in values]
    mean = sum(vals) / len(vals)
    return math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))


def brute_cma(S, T, query, t2s, s2t, obj="fkl", temp=1.0, tT=1.0, masked_std=False, gate=True):
    """DSKD-CMA with one loop per position. S/T: dicts logits, hidden, ids, labels (HF), emb, head."""
    B, Ls = S["ids"].shape
    Lt = T["ids"].shape[1]

    def index(side, b, t):
        y = _targets(side["labels"], b, t)
        x = int(side["ids"][b, t]) if y != -100 else 0
        y0 = y if y != -100 else 0
        return torch.cat([side["emb"][x], side["emb"][y0]]), side["emb"][y0], y

    idx_t = {(b, j): index(T, b, j) for b in range(B) for j in range(Lt)}
    idx_s = {(b, i): index(S, b, i) for b in range(B) for i in range(Ls)}
    keep = [k for k in idx_t if idx_t[k][2] != -100] if masked_std else list(idx_t)
    std_k = _std(torch.cat([idx_t[k][0] for k in keep]))
    std_e = _std(torch.cat([idx_t[k][1] for k in keep]))
    std_h = _std(torch.cat([T["hidden"][b, j] for b, j in keep]))
    with torch.no_grad():
        vals_t = {k: t2s(T["hidden"][k] / std_h + idx_t[k][1] / std_e) for k in idx_t}
        vals_s = {(b, i): s2t(S["hidden"][b, i]) for b in range(B) for i in range(Ls)}
        q = {k: query(idx_s[k][0]) for k in idx_s}
    d2 = T["hidden"].shape[-1] * 2
    A = {}
    for b in range(B):
        for i in range(Ls):
            for j in range(Lt):
                live = idx_s[(b, i)][2] != -100 and idx_t[(b, j)][2] != -100
                A[b, i, j] = float(q[(b, i)] @ (idx_t[(b, j)][0] / std_k)) / math.sqrt(d2) + (0 if live else -1e5)
    ce = kd = s2t_kd = 0.0
    for b in range(B):
        for i in range(Ls):
            y = idx_s[(b, i)][2]
            if y == -100:
                continue
            w = _softmax([A[b, i, j] for j in range(Lt)])
            h = sum(w[j] * vals_t[(b, j)] for j in range(Lt))
            z = (h @ S["head"].T).tolist()
            ce -= math.log(_softmax(z)[y])
            if not gate or max(range(len(z)), key=lambda v: z[v]) == y:
                kd += brute_div(S["logits"][b, i].tolist(), z, obj, temp, tT)
        for j in range(Lt):
            if idx_t[(b, j)][2] == -100:
                continue
            w = _softmax([A[b, i, j] for i in range(Ls)])
            h = sum(w[i] * vals_s[(b, i)] for i in range(Ls))
            s2t_kd += brute_div((h @ T["head"].T).tolist(), T["logits"][b, j].tolist(), "fkl", temp)
    return ce, kd, s2t_kd


def brute_plain(S, T, t2s, s2t, obj="fkl", temp=1.0):
    B, L = S["ids"].shape
    ce = kd = s2t_kd = 0.0
    with torch.no_grad():
        for b in range(B):
            for t in range(L):
                y = _targets(S["labels"], b, t)
                if y == -100:
                    continue
                z = (t2s(T["hidden"][b, t]) @ S["head"].T).tolist()
                ce -= math.log(_softmax(z)[y])
                kd += brute_div(S["logits"][b, t].tolist(), z, obj, temp)
                s2t_kd += brute_div((s2t(S["hidden"][b, t]) @ T["head"].T).tolist(),
                                    T["logits"][b, t].tolist(), "fkl", temp)
    return ce, kd, s2t_kd


# -- synthetic tensors ---------------------------------------------------------------------------
def synthetic_side(gen, B, L, d, V, lengths, prompt, left=False, grad=False):
    ids = torch.randint(1, V, (B, L), generator=gen)
    labels = torch.full((B, L), -100)
    for b, (n, p) in enumerate(zip(lengths, prompt)):
        lo = L - n if left else 0
        labels[b, lo + p: lo + n] = ids[b, lo + p: lo + n]
    side = dict(logits=torch.randn(B, L, V, generator=gen) * 2, hidden=torch.randn(B, L, d, generator=gen),
                ids=ids, labels=labels, emb=torch.randn(V + 2, d, generator=gen),
                head=torch.randn(V, d, generator=gen) * 0.5)
    if grad:
        for k in ("logits", "hidden", "emb", "head"):
            side[k] = side[k].clone().requires_grad_(True)
    return side


def to_inputs(side) -> SpaceInputs:
    return SpaceInputs(side["logits"], side["hidden"], side["ids"], preshift_labels(side["labels"]),
                       side["emb"], side["head"])


def projectors(d_s, d_t, seed=0):
    torch.manual_seed(seed)
    return dskd_module.build_projectors(d_s, d_t, cma=True)


@pytest.fixture(scope="module")
def syn():
    gen = torch.Generator().manual_seed(3)
    S = synthetic_side(gen, 2, 5, 3, 7, lengths=[5, 3], prompt=[2, 1])
    T = synthetic_side(gen, 2, 6, 4, 9, lengths=[6, 4], prompt=[2, 1])
    return S, T, projectors(3, 4)


# -- divergences ---------------------------------------------------------------------------------
def test_fkl_by_hand_divides_both_sides_by_temperature_without_t_squared():
    s = torch.tensor([0.0, 0.0])
    t = torch.tensor([math.log(3.0), 0.0])
    want = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    assert token_divergence(s, t, "fkl").item() == pytest.approx(want, rel=1e-6)
    # T = 2 on both: teacher probabilities become sqrt(3):1, student stays uniform
    pt = [math.sqrt(3) / (1 + math.sqrt(3)), 1 / (1 + math.sqrt(3))]
    want_t2 = sum(p * math.log(p / 0.5) for p in pt)
    assert token_divergence(s, t, "fkl", temperature=2.0).item() == pytest.approx(want_t2, rel=1e-6)


@pytest.mark.parametrize("obj", OBJECTIVES)
def test_divergences_match_brute_force(obj):
    gen = torch.Generator().manual_seed(1)
    s, t = torch.randn(3, 4, 6, generator=gen) * 3, torch.randn(3, 4, 6, generator=gen) * 3
    got = token_divergence(s, t, obj, temperature=2.0, teacher_temperature=1.5, skew_lambda=0.2, akl_alpha=0.4)
    assert got.shape == (3, 4)
    for idx in [(0, 0), (1, 2), (2, 3)]:
        want = brute_div(s[idx].tolist(), t[idx].tolist(), obj, 2.0, 1.5, 0.2, 0.4)
        assert got[idx].item() == pytest.approx(want, rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("obj", OBJECTIVES)
def test_divergences_vanish_on_identical_distributions_without_nan(obj):
    z = torch.randn(2, 5)
    got = token_divergence(z, z.clone(), obj)
    assert torch.isfinite(got).all() and got.abs().max() < 1e-5


def test_official_objective_names_are_aliases():
    assert KDObjective("skewed_reverse_kl").name == "srkl"
    with pytest.raises(ValueError):
        KDObjective("kl")


def test_preshift_labels_by_hand_both_padding_sides():
    right = torch.tensor([[-100, -100, 5, 6, 2, -100]])
    left = torch.tensor([[-100, -100, -100, 5, 6, 2]])
    assert preshift_labels(right).tolist() == [[-100, 5, 6, 2, -100, -100]]
    assert preshift_labels(left).tolist() == [[-100, -100, 5, 6, 2, -100]]


# -- CMA terms against brute force ---------------------------------------------------------------
@pytest.mark.parametrize("obj,masked,gate", [("fkl", False, True), ("srkl", True, False), ("akl", False, False)])
def test_cma_terms_match_loop_brute_force(syn, obj, masked, gate):
    S, T, p = syn
    kd = KDObjective(obj, temperature=2.0, teacher_temperature=1.3)
    with torch.no_grad():
        got = cma_terms(to_inputs(S), to_inputs(T), query=p["query"], t2s=p["t2s"], s2t=p["s2t"],
                        objective=kd, masked_std=masked, gate_t2s_kd=gate)
    ce, kdv, s2t = brute_cma(S, T, p["query"], p["t2s"], p["s2t"], obj, 2.0, 1.3, masked, gate)
    assert got.t2s_ce.item() == pytest.approx(ce, rel=1e-4)
    assert got.t2s_kd.item() == pytest.approx(kdv, rel=1e-4, abs=1e-5)
    assert got.s2t_kd.item() == pytest.approx(s2t, rel=1e-4)
    assert got.n_student.item() == sum(1 for b in range(2) for t in range(5) if _targets(S["labels"], b, t) != -100)
    if not gate:
        assert kdv > 0


def test_acc_gate_all_false_zeroes_t2s_kd(syn):
    S, T, p = syn
    zero = nn.Linear(4, 3)
    nn.init.zeros_(zero.weight)
    nn.init.zeros_(zero.bias)   # t2s logits all 0 -> argmax 0, never a target (ids >= 1)
    args = dict(query=p["query"], t2s=zero, s2t=p["s2t"], objective=KDObjective())
    gated = cma_terms(to_inputs(S), to_inputs(T), **args)
    assert gated.t2s_correct.item() == 0 and gated.t2s_kd.item() == 0.0
    assert cma_terms(to_inputs(S), to_inputs(T), gate_t2s_kd=False, **args).t2s_kd.item() > 0


def test_padding_layout_and_global_std_quirk():
    """Same content right- vs left-padded: equal. Extra pad columns: only the faithful std moves."""
    gen = torch.Generator().manual_seed(5)
    S = synthetic_side(gen, 2, 5, 3, 7, lengths=[5, 3], prompt=[2, 1])
    T = synthetic_side(gen, 2, 6, 4, 9, lengths=[6, 4], prompt=[2, 1])
    p = projectors(3, 4)

    def relayout(side, lengths, extra=0):
        out = {}
        for k, v in side.items():
            if k in ("emb", "head"):
                out[k] = v
                continue
            fill = -100 if k == "labels" else 0
            L = v.shape[1] + extra
            new = torch.full((v.shape[0], L) + tuple(v.shape[2:]), fill, dtype=v.dtype)
            for b, n in enumerate(lengths):    # left padding: roll the row, pads move to the front
                new[b, extra:] = torch.roll(v[b], v.shape[1] - n, dims=0)
            out[k] = new
        return out

    def total(Sx, Tx, masked):
        t = cma_terms(to_inputs(Sx), to_inputs(Tx), query=p["query"], t2s=p["t2s"], s2t=p["s2t"],
                      objective=KDObjective(temperature=2.0), masked_std=masked, gate_t2s_kd=False)
        return t.kd_sum.item()

    with torch.no_grad():
        for masked in (False, True):
            left = total(relayout(S, [5, 3]), relayout(T, [6, 4]), masked)
            assert left == pytest.approx(total(S, T, masked), rel=1e-5)
        wide = (relayout(S, [5, 3], 3), relayout(T, [6, 4], 3))
        assert total(*wide, True) == pytest.approx(total(S, T, True), rel=1e-5)
        assert total(*wide, False) != pytest.approx(total(S, T, False), rel=1e-4)


def test_gradients_reach_exactly_student_and_projectors():
    gen = torch.Generator().manual_seed(9)
    S = synthetic_side(gen, 2, 5, 3, 7, [5, 4], [1, 1], grad=True)
    T = synthetic_side(gen, 2, 6, 4, 9, [6, 5], [1, 1], grad=True)
    p = projectors(3, 4)

    def grads(term):
        for t in list(S.values()) + list(T.values()) + list(p.parameters()):
            if isinstance(t, torch.Tensor) and t.grad is not None:
                t.grad = None
        out = cma_terms(to_inputs(S), to_inputs(T), query=p["query"], t2s=p["t2s"], s2t=p["s2t"],
                        objective=KDObjective(temperature=2.0), gate_t2s_kd=False)
        getattr(out, term).backward()
        live = {k for k in ("logits", "hidden", "emb", "head") if S[k].grad is not None and S[k].grad.abs().sum() > 0}
        live |= {n for n in ("query", "t2s", "s2t") if any(q.grad is not None and q.grad.abs().sum() > 0
                                                          for q in p[n].parameters())}
        assert all(T[k].grad is None for k in ("logits", "hidden", "emb", "head")), "teacher got gradient"
        return live

    assert grads("t2s_ce") == {"query", "t2s"}          # detached student head, detached embeddings
    assert grads("t2s_kd") == {"logits"}                # the projected teacher is a constant
    assert grads("s2t_kd") == {"hidden", "query", "s2t"}


# -- plain DSKD ------------------------------------------------------------------------------------
def test_plain_terms_match_brute_force():
    gen = torch.Generator().manual_seed(2)
    S = synthetic_side(gen, 2, 5, 3, 7, [5, 4], [2, 1])
    T = dict(synthetic_side(gen, 2, 5, 4, 7, [5, 4], [2, 1]), ids=S["ids"], labels=S["labels"])
    p = projectors(3, 4)
    with torch.no_grad():
        got = dual_space_terms(to_inputs(S), to_inputs(T), t2s=p["t2s"], s2t=p["s2t"],
                               objective=KDObjective("js", temperature=2.0))
    ce, kd, s2t = brute_plain(S, T, p["t2s"], p["s2t"], "js", 2.0)
    assert (got.t2s_ce.item(), got.t2s_kd.item(), got.s2t_kd.item()) == pytest.approx((ce, kd, s2t), rel=1e-4)


# -- the method on the toy pair --------------------------------------------------------------------
@pytest.fixture(scope="module")
def pair():
    return toy_pair("instruct")


def _method(pair, **overrides):
    m = DSKD(DSKD.make_config(overrides))
    m.modules = m.setup(toy_context(pair))
    return m


def _pieces(side, logits, hidden, emb, head):
    return dict(logits=logits.detach(), hidden=hidden.detach(), ids=side.input_ids, labels=side.labels,
                emb=emb.detach(), head=head.detach())


SHORT = [{"id": "x", "prompt": "Reverse: cat\nAnswer:", "response": " cat"},
         {"id": "y", "prompt": "Reverse: dog red big\nAnswer:", "response": " big red dog"}]


@pytest.mark.parametrize("padding_side,n", [("right", 1), ("left", 2), ("right", 2)])
def test_cma_method_short_responses_match_brute_force(pair, padding_side, n):
    """Batch of 1 with a one-token response; both padding sides."""
    m = _method(pair)
    assert m.resolved_variant == "cma"
    batch = toy_batch(pair, examples=SHORT[:n], padding_side=padding_side)
    student, teacher = toy_forward(pair, m, batch)
    out = m.loss(batch, student, teacher)
    S = _pieces(batch.student, student.logits, student.hidden_states[-1], student.embedding_weight,
                student.lm_head_weight)
    T = _pieces(batch.teacher, teacher.logits, teacher.hidden_states[-1], teacher.embeddings, teacher.lm_head)
    ce, kd, s2t = brute_cma(S, T, m.modules["query"], m.modules["t2s"], m.modules["s2t"], "fkl", 2.0)
    n = int((batch.student.labels != -100).sum())
    want = 0.5 * student.ce.item() + 0.5 * (ce + kd + s2t) / n
    assert out["loss"].item() == pytest.approx(want, rel=1e-4)


def test_padding_side_does_not_change_the_method_loss_with_masked_std(pair):
    m = _method(pair, masked_std=True)
    losses = []
    for side in ("right", "left"):
        batch = toy_batch(pair, examples=SHORT + pair.examples[:2], padding_side=side)
        student, teacher = toy_forward(pair, m, batch)
        losses.append(m.loss(batch, student, teacher)["loss"].item())
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)


def test_cma_method_gradients_on_toy(pair):
    m = _method(pair, gate_t2s_kd=False)
    batch = toy_batch(pair, 3)
    pair.student.zero_grad(set_to_none=True)
    student, teacher = toy_forward(pair, m, batch)
    m.loss(batch, student, teacher)["loss"].backward()
    for name in ("query", "t2s", "s2t"):
        assert all(q.grad is not None and q.grad.abs().sum() > 0 for q in m.modules[name].parameters()), name
    assert pair.student.get_output_embeddings().weight.grad.abs().sum() > 0
    assert all(q.grad is None for q in pair.teacher.parameters())
    assert pair.head.lm_head.grad is None and pair.head.embeddings.grad is None
    pair.student.zero_grad(set_to_none=True)


def test_auto_variant_picks_plain_dskd_for_a_shared_vocabulary(pair):
    tok = pair.student_tokenizer
    teacher = build_model(ArchSpec("gpt2", 32, 2, 4), tok, seed=7).eval()
    head = TeacherHead.from_model(teacher, len(tok))
    c = teacher.config
    ctx = MethodContext("instruct", 0, tok, tok, toy_context(pair).student_dims,
                        ModelDims(len(tok), c.hidden_size, c.num_hidden_layers, c.num_attention_heads), None)
    m = DSKD()
    m.modules = m.setup(ctx)
    assert m.resolved_variant == "dskd" and "query" not in m.modules
    batch = collate_pair(pair.examples[:2], "instruct", tok, tok, 48, "left")
    student = student_forward(pair.student, batch.student, m.needs, len(tok))
    signals = live_teacher_signals(teacher, batch.teacher, m.needs, head, False)
    out = m.loss(batch, student, signals)
    S = _pieces(batch.student, student.logits, student.hidden_states[-1], student.embedding_weight,
                student.lm_head_weight)
    T = _pieces(batch.teacher, signals.logits, signals.hidden_states[-1], signals.embeddings, signals.lm_head)
    ce, kd, s2t = brute_plain(S, T, m.modules["t2s"], m.modules["s2t"], "fkl", 2.0)
    n = int((batch.student.labels != -100).sum())
    assert out["loss"].item() == pytest.approx(0.5 * student.ce.item() + 0.5 * (ce + kd + s2t) / n, rel=1e-4)


def test_forced_plain_variant_refuses_different_tokenisations(pair):
    m = _method(pair, variant="dskd")
    batch = toy_batch(pair, 2)
    student, teacher = toy_forward(pair, m, batch)
    with pytest.raises(ValueError, match="same tokenisation"):
        m.loss(batch, student, teacher)


def test_config_validation_and_defaults():
    c = DSKD.Config()
    assert (c.variant, c.kd_objective, c.kd_rate, c.kd_temperature, c.projector_lr) == ("auto", "fkl", 0.5, 2.0, 1e-3)
    assert DSKD(c).extra_lr() == 1e-3
    with pytest.raises(ConfigError):
        DSKD.make_config({"variant": "both"})
    with pytest.raises(ConfigError):
        DSKD.make_config({"kd_objective": "kl"})
    assert DSKD.make_config({"kd_objective": "adaptive_kl"}).kd_objective == "adaptive_kl"


def test_plugin_registers_with_survey_category():
    pm = PluginManager(load_entry_points=False)
    pm.add(dskd_module)
    cls = pm.methods()["dskd"].cls
    assert cls.category == "probability-distribution alignment"
    assert cls.needs.student_hidden_states and cls.needs.hidden_states == (-1,)


def test_gated_t2s_kd_on_kept_rows_equals_the_masked_full_computation():
    """The gate computes D only on the rows it keeps: same value and gradient as where(gate, D, 0)."""
    from ctkd_methods._cma import _student_kd
    gen = torch.Generator().manual_seed(11)
    logits = torch.randn(2, 5, 7, generator=gen).requires_grad_()
    m_s = torch.tensor([[0, 1, 1, 1, 0], [1, 1, 0, 0, 0]], dtype=torch.bool)
    t2s = torch.randn(5, 7, generator=gen)
    correct = torch.tensor([True, False, True, False, True])
    kd = KDObjective("srkl", temperature=2.0, teacher_temperature=1.3)
    kept = correct.nonzero().squeeze(-1)
    got = _student_kd(logits, m_s, t2s[kept], kept, kd).sum()       # the kept rows' t2s logits
    (g_got,) = torch.autograd.grad(got, logits)
    want = torch.where(correct, kd(logits[m_s], t2s, use_teacher_temperature=True), 0.0).sum()
    (g_want,) = torch.autograd.grad(want, logits)
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    assert torch.allclose(g_got, g_want, atol=1e-7) and g_want[0, 2].abs().sum() == 0 < g_want[0, 1].abs().sum()


def test_argmax_hits_equals_argmax_with_ties_nan_and_infinite_rows():
    """The candidate-row shortcut gives exactly ``argmax(-1) == target`` (first maximum wins)."""
    from ctkd_methods._cma import argmax_hits
    gen = torch.Generator().manual_seed(12)
    logits = torch.randn(40, 9, generator=gen)
    logits[:12] = torch.randint(0, 3, (12, 9), generator=gen).float()     # many exact ties
    logits[12, 4] = float("nan")                                            # NaN: argmax points at it
    logits[13, 2] = logits[13, 6] = float("nan")
    logits[14] = float("-inf")                                              # all -inf: argmax 0
    logits[15, 3] = float("inf")
    targets = torch.randint(0, 9, (40,), generator=gen)
    targets[:12] = logits[:12].argmax(-1)                                   # hits at the first maximum
    targets[:6] = torch.where(logits[:6, -1] == logits[:6].amax(-1), 8, targets[:6])  # a later tie: miss
    targets[12], targets[13], targets[14], targets[15] = 4, 6, 0, 3
    want = logits.argmax(-1) == targets
    got = argmax_hits(logits, targets)
    assert torch.equal(got, want)
    assert want[:12].any() and not want[:12].all() and want[12] and not want[13] and want[14] and want[15]
    assert not argmax_hits(logits[:0], targets[:0]).numel()
