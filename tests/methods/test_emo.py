"""EMO: token maps by hand, the tensor loss against a per-example restatement of the official loops,
and the plugin on the toy encoder pair."""
from __future__ import annotations

import math

import pytest
import torch

from ctkd_bench.errors import ConfigError
from ctkd_bench.method import ModelDims
from ctkd_bench.plugins import PluginInfo, validate_method_class
from ctkd_bench.toy import toy_batch, toy_context, toy_forward, toy_pair
from ctkd_methods import _emo_tokens as tok
from ctkd_bench.align.cka import linear_cka
from ctkd_methods._emo_align import batch_alignment, row_plan
from ctkd_methods._emo_loss import attention_received, batched_linear_cka
from ctkd_methods._emo_sinkhorn import sinkhorn_plan
from ctkd_methods.emo import EMO, emo_loss, ira_layer_pairs

# -- token-string work -----------------------------------------------------------------------------


def test_reciprocal_map_by_hand():
    teacher = ["▁the", "▁cat", "s", "▁sat"]
    student = ["the", "cats", "sat", "x"]
    # t->s: ▁the->the, ▁cat->cats, s->the? no: d(s,sat)=2, d(s,x)=1 -> x; ▁sat->sat
    # s->t: the->▁the, cats->▁cat (d 2 vs ▁sat 3), sat->▁sat, x->s
    assert tok.reciprocal_map(teacher, student) == {"▁the": "the", "▁cat": "cats", "s": "x", "▁sat": "sat"}
    assert tok.reciprocal_map(["ab"], ["ab", "b"]) == {"ab": "ab"}           # exact match first
    assert tok.reciprocal_map(["ab", "cb"], ["xb"]) == {"ab": "xb"}          # tie: first occurrence


def test_otis_token_map_and_mass_sources():
    teacher = ["<s>", "▁an", "s", "▁dog", "</s>"]
    student = ["[CLS]", "ans", "dog", "dog", "[SEP]"]
    mapping = tok.otis_token_map(teacher, student, "<s>", "[CLS]")
    assert mapping == {"<s>": "[CLS]", "▁an": "ans", "s": "ans", "▁dog": "dog", "</s>": "ans"}
    # later teacher positions overwrite: "ans" takes the last teacher token mapped to it (</s>, 4)
    assert tok.mass_sources(mapping, teacher, student) == [0, 4, 3, 3, -1]


def test_word_excluded_mask_and_top_map():
    text = "the cat 42 sat"
    spans = [(0, 0), (0, 3), (3, 7), (7, 10), (10, 14), (14, 14)]
    assert tok.word_excluded_mask(text, spans) == [False, True, False, True, False, False]
    mapping = {"a": "A", "b": "B", "c": "C", "d": "D", "e": "E", "f": "F"}   # n = 6 -> keep top 2
    tokens = ["<s>", "a", "b", "c", "d", "e"]
    importance = [0.9, 0.1, 0.5, 0.8, 0.7, 0.2]
    excluded = [False, False, False, True, False, False]
    assert tok.top_reciprocal_map(mapping, tokens, importance, excluded) == {"d": "D"}  # top: <s>, d
    assert tok.top_reciprocal_map(mapping, tokens[1:], importance[1:], excluded[1:]) == {"d": "D", "b": "B"}


def test_ira_rows_pair_by_order_or_by_mapping():
    mapping = {"x": "Y", "y": "X"}
    teacher, student = ["<s>", "x", "y", "x"], ["[CLS]", "X", "Y"]
    assert tok.ira_rows(mapping, teacher, student) == ([1, 2], [1, 2])               # by order
    assert tok.ira_rows(mapping, teacher, student, pair_by_mapping=True) == ([1, 2], [2, 1])


def test_ira_layer_pairs():
    assert ira_layer_pairs(2, 2, 1) == [(-1, -1)]
    assert ira_layer_pairs(2, 5, 2) == [(-2, -4), (-1, -2)]     # lpb 2: teacher layers 1 and 3
    assert ira_layer_pairs(4, 2, 1) == [(-1, -1)]               # lpb 0: python index -1


# -- the tensor loss against the official loops -----------------------------------------------------


def official_sinkhorn(C, a, b, eps=0.1, iters=100):
    K = torch.exp(-C / eps)
    u = torch.ones(C.shape[0], 1, dtype=C.dtype)
    v = torch.ones(C.shape[1], 1, dtype=C.dtype)
    a, b = a.view(-1, 1) / a.sum(), b.view(-1, 1) / b.sum()
    for _ in range(iters):
        u_prev = u.clone()
        v = b / (K.t() @ u + 1e-9)
        u = a / (K @ v + 1e-9)
        if (u - u_prev).abs().max() < 1e-9:
            break
    P = torch.diag(u.squeeze(1)) @ K @ torch.diag(v.squeeze(1))
    return (P * C).sum()


def official_cka_loss(X, Y, eps=1e-8):
    X, Y = X.double(), Y.double()
    X, Y = X - X.mean(0, keepdim=True), Y - Y.mean(0, keepdim=True)
    num = torch.norm(X.t() @ Y, "fro")
    return 1 - num / torch.sqrt((torch.norm(X.t() @ X, "fro") + eps) * (torch.norm(Y.t() @ Y, "fro") + eps))


def random_attention(g, B, H, L, lengths):
    logits = torch.randn(B, H, L, L, generator=g)
    keys = torch.arange(L)[None, :] < torch.tensor(lengths)[:, None]
    att = logits.masked_fill(~keys[:, None, None, :], -math.inf).softmax(-1)
    return att * keys[:, None, :, None]


def make_case(seed=0):
    g = torch.Generator().manual_seed(seed)
    B, S, T, ds, dt = 2, 6, 7, 5, 3
    ls, lt = [6, 4], [7, 5]
    case = dict(
        logits=torch.randn(B, 3, generator=g), targets=torch.tensor([2, 0]),
        s_hidden=torch.randn(B, S, ds, generator=g), t_hidden=torch.randn(B, T, dt, generator=g),
        W=torch.randn(ds, dt, generator=g) * 0.5, bias=torch.randn(ds, generator=g) * 0.1,
        s_att=random_attention(g, B, 2, S, ls), t_att=random_attention(g, B, 3, T, lt),
        source=torch.tensor([[0, 2, -1, 2, 5, 6], [1, 3, 4, -1, -1, -1]]),
        rows=[([0, 2, 3, 5], [1, 2, 4, 5]), ([1, 4], [0, 3])], ls=ls, lt=lt)
    return case


def brute_emo(c, kd_rate=0.5):
    ce, ira, otis = 0.0, 0.0, 0.0
    for b in range(2):
        ce += -torch.log_softmax(c["logits"][b].double(), -1)[c["targets"][b]] / 2
        Sb, Tb = c["ls"][b], c["lt"][b]
        A = c["t_att"][b, :, :Tb, :Tb].mean(0)
        t_mass = torch.softmax(A.sum(0), 0)
        raw = torch.tensor([t_mass[j] if j >= 0 else t_mass.min() for j in c["source"][b, :Sb].tolist()])
        s_mass = torch.softmax(raw, 0)
        S = c["s_hidden"][b, :Sb]
        Tp = c["t_hidden"][b, :Tb] @ c["W"].t() + c["bias"]
        C = 1 - torch.softmax(S @ Tp.t() / math.sqrt(S.shape[1]), dim=1)
        otis += official_sinkhorn(C.double(), s_mass.double(), t_mass.double()) / 2
        t_rows, s_rows = c["rows"][b]
        X = c["s_att"][b, :, s_rows, :Sb].mean(0)
        Y = c["t_att"][b, :, t_rows, :Tb].mean(0)
        ira += official_cka_loss(X, Y) if len(s_rows) > 1 else 1.0
    return (1 - kd_rate) * ce + kd_rate * (0.1 * ira + otis), ira, otis


def run_emo(c, **kw):
    masks_s = (torch.arange(6)[None] < torch.tensor(c["ls"])[:, None]).long()
    masks_t = (torch.arange(7)[None] < torch.tensor(c["lt"])[:, None]).long()
    projected = c["t_hidden"] @ c["W"].t() + c["bias"]
    return emo_loss(c["logits"], c["targets"], c["s_hidden"], projected, masks_s, masks_t, c["t_att"],
                    c["source"], [c["s_att"]], [c["t_att"]], c["rows"], **kw)


def test_emo_loss_matches_official_loops():
    c = make_case()
    out = run_emo(c)
    want, ira, otis = brute_emo(c)
    assert out["ira"].item() == pytest.approx(float(ira), rel=1e-6)
    assert out["otis"].item() == pytest.approx(float(otis), rel=1e-4)
    assert out["loss"].item() == pytest.approx(float(want), rel=1e-4)


def _to_left(x, lengths):
    out = torch.zeros_like(x)
    W = x.shape[1]
    for b, n in enumerate(lengths):
        out[b, W - n:] = x[b, :n]
    return out


def test_emo_loss_is_padding_side_invariant():
    c = make_case(1)
    right = run_emo(c)["loss"]
    ls, lt = c["ls"], c["lt"]
    left = dict(c)
    left["s_hidden"], left["t_hidden"] = _to_left(c["s_hidden"], ls), _to_left(c["t_hidden"], lt)
    for key, lens in (("s_att", ls), ("t_att", lt)):   # move queries and keys
        att = c[key].transpose(1, 2)
        att = _to_left(att, lens).transpose(1, 2).transpose(1, 3)
        left[key] = _to_left(att, lens).transpose(1, 3)
    shift_s = [6 - n for n in ls]
    shift_t = [7 - n for n in lt]
    src = torch.where(c["source"] >= 0, c["source"] + torch.tensor(shift_t)[:, None], -1)
    left["source"] = _to_left(src, ls)
    left["rows"] = [([r + shift_t[b] for r in t], [r + shift_s[b] for r in s]) for b, (t, s) in enumerate(c["rows"])]
    masks_s = _to_left(torch.ones(2, 6, dtype=torch.long), ls)
    masks_t = _to_left(torch.ones(2, 7, dtype=torch.long), lt)
    projected = left["t_hidden"] @ c["W"].t() + c["bias"]
    out = emo_loss(left["logits"], left["targets"], left["s_hidden"], projected, masks_s, masks_t,
                   left["t_att"], left["source"], [left["s_att"]], [left["t_att"]], left["rows"])
    assert out["loss"].item() == pytest.approx(right.item(), rel=1e-5)


def test_quirk_switches_change_what_they_say():
    c = make_case(2)
    base = run_emo(c)
    summed = run_emo(c, ira_batch_mean=True)
    assert summed["ira"].item() == pytest.approx(base["ira"].item() / 2)
    assert run_emo(c, fix_student_mass=True)["otis"].item() != pytest.approx(base["otis"].item())


def test_batched_cka_equals_the_toolkit_cka_per_example():
    g = torch.Generator().manual_seed(9)
    X, Y = torch.randn(4, 5, 6, generator=g), torch.randn(4, 5, 3, generator=g)
    counts = [5, 3, 1, 0]
    rows = torch.arange(5)[None] < torch.tensor(counts)[:, None]
    got = batched_linear_cka(X, Y, rows)
    for b, n in enumerate(counts):
        want = linear_cka(X[b, :n], Y[b, :n]).item() if n else 0.0
        assert got[b].item() == pytest.approx(want, abs=1e-12)


def test_degenerate_ira_rows_give_one():
    c = make_case(3)
    c["rows"] = [([], []), ([2], [1])]
    assert run_emo(c)["ira"].item() == pytest.approx(2.0)


def test_emo_gradients_reach_student_tensors_only():
    c = make_case(4)
    for key in ("logits", "s_hidden", "s_att"):
        c[key] = c[key].clone().requires_grad_(True)
    run_emo(c)["loss"].backward()
    for key in ("logits", "s_hidden", "s_att"):
        assert c[key].grad is not None and c[key].grad.abs().sum() > 0


# -- the plugin ------------------------------------------------------------------------------------


def _method(pair, **overrides):
    method = EMO(EMO.make_config(overrides))
    ctx = toy_context(pair)
    method.prepare(ctx)
    method.modules = method.setup(ctx)
    return method


def test_plugin_contract_and_needs():
    validate_method_class(EMO, PluginInfo("emo", "ctkd-bench", "0", "ctkd_methods.emo"))
    assert EMO.category == "multi-level alignment" and EMO.tracks == ("embed",)
    assert EMO.make_config({}).projector_lr == 1e-3
    with pytest.raises(ConfigError):
        EMO.make_config({"ira_layers": 0})
    pair = toy_pair("embed")
    ctx = toy_context(pair)
    ctx.student_dims = ModelDims(100, 8, 2, 2)
    ctx.teacher_dims = ModelDims(100, 8, 5, 2)
    method = EMO(EMO.make_config({"ira_layers": 2}))
    method.prepare(ctx)
    assert method.needs.attentions == (-4, -2, -1) and EMO.needs.attentions == (-1,)


def test_plugin_alignment_points_at_the_mapped_tokens():
    pair = toy_pair("embed")
    method = _method(pair)
    batch = toy_batch(pair, 4)   # encoder batches are always right-padded (collate_pair)
    _, teacher = toy_forward(pair, method, batch)
    rows, source = method._alignment(batch, attention_received(teacher.attentions[-1], batch.teacher.attention_mask))
    for b in range(len(batch)):
        s_pos = batch.student.attention_mask[b].nonzero().view(-1).tolist()
        t_pos = batch.teacher.attention_mask[b].nonzero().view(-1).tolist()
        t_tokens = batch.teacher.tokens[b]
        mapping = tok.otis_token_map(t_tokens, batch.student.tokens[b], "<s>", "[CLS]")
        for i, p in enumerate(s_pos):
            j = source[b, p].item()
            if j >= 0:
                assert j in t_pos and mapping[t_tokens[t_pos.index(j)]] == batch.student.tokens[b][i]
        assert (source[b][batch.student.attention_mask[b] == 0] == -1).all()


def reference_alignment(method, batch, received):
    """The per-example loop the vectorised `_alignment` replaced (kept as the reference): IRA rows
    [(teacher rows, student rows)] and the OTIS mass source [B, S], positions in the padded batch."""
    c, s_side, t_side = method.config, batch.student, batch.teacher
    t_special = method._specials[2:]
    source = torch.full(s_side.attention_mask.shape, -1, dtype=torch.long)
    rows = []
    for b in range(len(batch)):
        pos_s = s_side.attention_mask[b].nonzero().view(-1).tolist()
        pos_t = t_side.attention_mask[b].nonzero().view(-1).tolist()
        s_tokens, t_tokens = list(s_side.tokens[b]), list(t_side.tokens[b])
        reciprocal = tok.reciprocal_map([t for t in t_tokens if t not in method._specials[0]],
                                        [s for s in s_tokens if s not in method._specials[1]])
        src = tok.mass_sources(tok.otis_token_map(t_tokens, s_tokens, *t_special), t_tokens, s_tokens)
        excluded = [False] * len(t_tokens)
        if c.stopword_filter:
            excluded = tok.word_excluded_mask(batch.texts[b], [tuple(t_side.offsets[b, p].tolist()) for p in pos_t])
        top = tok.top_reciprocal_map(reciprocal, t_tokens, [received[b, p].item() for p in pos_t], excluded)
        t_rows, s_rows = tok.ira_rows(top, t_tokens, s_tokens, c.ira_pair_by_mapping)
        rows.append(([pos_t[i] for i in t_rows], [pos_s[i] for i in s_rows]))
        for p, j in zip(pos_s, src):
            source[b, p] = pos_t[j] if j >= 0 else -1
    return rows, source


@pytest.mark.parametrize("overrides", [{}, {"ira_pair_by_mapping": True}, {"stopword_filter": False}])
def test_vectorised_alignment_equals_the_per_example_reference(overrides):
    pair = toy_pair("embed")
    method = _method(pair, **overrides)
    short = [dict(ex) for ex in pair.examples[:12]]
    long = [dict(short[i], id=f"long{i}", text=" ".join(e["text"] for e in short[i:i + 4])) for i in range(0, 12, 3)]
    batch = toy_batch(pair, examples=short[:4] + long)
    _, teacher = toy_forward(pair, method, batch)
    received = attention_received(teacher.attentions[-1], batch.teacher.attention_mask)
    for importance in (received, torch.zeros_like(received), received.flip(-1)):   # ties: earlier first
        rows, source = method._alignment(batch, importance)
        want_rows, want_source = reference_alignment(method, batch, importance)
        assert torch.equal(source, want_source)
        got = [(rows.teacher[b][rows.real[b]].tolist(), rows.student[b][rows.real[b]].tolist())
               for b in range(len(batch))]
        assert got == want_rows
    assert (want_source >= 0).sum() > len(batch)


def test_memoised_row_plans_follow_truncation_and_equal_a_fresh_computation():
    """`prepare` memoises each training text's plan; a truncated copy of a text (other tokens) must
    not hit it, and memoised plans must give what the token functions give from scratch."""
    pair = toy_pair("embed")
    method = _method(pair)
    examples = [dict(ex) for ex in pair.examples[:6]]
    assert all(ex["text"] in method._row_plans for ex in examples)
    for max_len in (48, 7):                        # 7: truncated, tokens differ from prepare's
        batch = toy_batch(pair, examples=examples, max_len=max_len)
        _, teacher = toy_forward(pair, method, batch)
        received = attention_received(teacher.attentions[-1], batch.teacher.attention_mask)
        rows, source = method._alignment(batch, received)
        want_rows, want_source = reference_alignment(method, batch, received)
        assert torch.equal(source, want_source)
        assert [(rows.teacher[b][rows.real[b]].tolist(), rows.student[b][rows.real[b]].tolist())
                for b in range(len(batch))] == want_rows
        assert all(method._row_plans[ex["text"]][0] == batch.teacher.tokens[b] for b, ex in enumerate(examples))
    assert any(len(toks) == 7 for toks in batch.teacher.tokens)


@pytest.mark.parametrize("pair_by_mapping", [False, True])
@pytest.mark.parametrize("side", ["right", "left"])
def test_batch_alignment_equals_the_per_example_functions(pair_by_mapping, side):
    """Synthetic sentences with large reciprocal maps (>= 3 IRA rows), tied importances, exclusions."""
    g = torch.Generator().manual_seed(0)
    pieces = [a + b for a in "abcdef" for b in "ghijkl"]
    plans, sentences, importances, excludeds = [], [], [], []
    for n_t, n_s in ((34, 30), (40, 36), (6, 5), (27, 19)):
        t_tokens = ["<s>"] + ["▁" * int(torch.rand(1, generator=g) < 0.2) + pieces[int(i)]
                              for i in torch.randint(0, 36, (n_t,), generator=g)] + ["</s>"]
        s_tokens = ["[CLS]"] + [pieces[int(i)] for i in torch.randint(0, 36, (n_s,), generator=g)] + ["[SEP]"]
        reciprocal = tok.reciprocal_map(t_tokens[1:-1], s_tokens[1:-1])
        source = torch.randint(-1, len(t_tokens), (len(s_tokens),), generator=g).tolist()
        excluded = (torch.rand(len(t_tokens), generator=g) < 0.2).tolist()
        importance = (torch.rand(len(t_tokens), generator=g) * 4).round() / 4       # many ties
        importance += torch.tensor([float(t in reciprocal) for t in t_tokens])      # map entries rank high
        plans.append(row_plan(reciprocal, source, t_tokens, s_tokens, excluded))
        sentences.append((reciprocal, t_tokens, s_tokens, source))
        importances.append(importance)
        excludeds.append(excluded)
    S, T = max(len(x[2]) for x in sentences) + 1, max(len(x[1]) for x in sentences) + 2
    real_s, real_t = torch.zeros(4, S, dtype=torch.bool), torch.zeros(4, T, dtype=torch.bool)
    received = torch.full((4, T), 9.0)                     # padding: large, must never rank
    starts = []
    for b, (_, t_tokens, s_tokens, _) in enumerate(sentences):
        o_s, o_t = (S - len(s_tokens), T - len(t_tokens)) if side == "left" else (0, 0)
        real_s[b, o_s:o_s + len(s_tokens)] = True
        real_t[b, o_t:o_t + len(t_tokens)] = True
        received[b, o_t:o_t + len(t_tokens)] = importances[b]
        starts.append((o_s, o_t))
    rows, source = batch_alignment(plans, real_s, real_t, received, pair_by_mapping)
    longest = 0
    for b, (reciprocal, t_tokens, s_tokens, src) in enumerate(sentences):
        o_s, o_t = starts[b]
        top = tok.top_reciprocal_map(reciprocal, t_tokens, importances[b].tolist(), excludeds[b])
        t_rows, s_rows = tok.ira_rows(top, t_tokens, s_tokens, pair_by_mapping)
        assert rows.teacher[b][rows.real[b]].tolist() == [o_t + i for i in t_rows]
        assert rows.student[b][rows.real[b]].tolist() == [o_s + i for i in s_rows]
        assert source[b][real_s[b]].tolist() == [o_t + j if j >= 0 else -1 for j in src]
        assert (source[b][~real_s[b]] == -1).all()
        longest = max(longest, len(t_rows))
    assert longest >= 3


@pytest.mark.parametrize("n", [1, 4])
def test_plugin_loss_and_gradients(n):
    pair = toy_pair("embed")
    method = _method(pair)
    batch = toy_batch(pair, n)
    student, teacher = toy_forward(pair, method, batch)
    out = method.loss(batch, student, teacher)
    assert torch.isfinite(out["loss"]) and out["ira"].item() >= 0
    out["loss"].backward()
    assert all(p.grad is None for p in pair.teacher.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method.modules.parameters())
    assert pair.student.bert.encoder.layer[-1].attention.self.query.weight.grad.abs().sum() > 0
    pair.student.zero_grad(set_to_none=True)


# -- Sinkhorn gradients ----------------------------------------------------------------------------


def _ot_problem(seed, B=3, n=7, m=9):
    g = torch.Generator().manual_seed(seed)
    C = 1 - torch.softmax(torch.randn(B, n, m, generator=g) * 2, -1)
    a = torch.softmax(torch.randn(B, n, generator=g) * 0.2, -1)
    b = torch.softmax(torch.randn(B, m, generator=g), -1)
    a[0, -2:] = 0                                   # padding on both marginals
    b[1, :3] = 0
    return C, a / a.sum(-1, keepdim=True), b / b.sum(-1, keepdim=True)


@pytest.mark.parametrize("seed", range(3))
def test_implicit_sinkhorn_gradient_equals_unrolled(seed):
    C, a, b = _ot_problem(seed)
    grads = []
    for mode in ("unrolled", "implicit"):
        Cg = C.clone().requires_grad_(True)
        plan = sinkhorn_plan(Cg, a, b, 0.1, 100, gradient=mode)
        (plan * Cg).sum().backward()
        grads.append(Cg.grad)
    assert torch.allclose(grads[0], grads[1], atol=1e-4 * grads[0].abs().max().item())


def reference_implicit_gradient(P, G, eps):
    """The implicit backward as first written (Schur complement always on the columns), kept as the
    reference for the shorter-side solve."""
    P, G = P.double(), G.double()
    rows, cols = P.sum(-1), P.sum(-2)
    live_r, live_c = rows > 0, cols > 0
    GP = G * P
    r, c = GP.sum(-1), GP.sum(-2)
    inv_rows = torch.where(live_r, 1.0 / rows.clamp_min(1e-300), torch.zeros_like(rows))
    schur = torch.diag_embed(torch.where(live_c, cols, torch.ones_like(cols)))
    schur = schur - P.transpose(1, 2) @ (P * inv_rows.unsqueeze(-1))
    ones = live_c.double()
    schur = schur + ones.unsqueeze(-1) * ones.unsqueeze(-2)
    rhs = c - (P.transpose(1, 2) @ (r * inv_rows).unsqueeze(-1)).squeeze(-1)
    y = torch.linalg.solve(schur, rhs.unsqueeze(-1)).squeeze(-1)
    x = (r - (P @ y.unsqueeze(-1)).squeeze(-1)) * inv_rows
    return P * (x.unsqueeze(-1) + y.unsqueeze(-2) - G) / eps


@pytest.mark.parametrize("n,m", [(4, 9), (9, 4), (6, 6)])
def test_implicit_gradient_equals_the_reference_on_either_side(n, m):
    C, a, b = _ot_problem(7, B=3, n=n, m=m)
    C, a, b = C.double().requires_grad_(True), a.double(), b.double()
    a, b = a / a.sum(-1, keepdim=True), b / b.sum(-1, keepdim=True)
    G = torch.randn(C.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    plan = sinkhorn_plan(C, a, b, 0.1, 200, tol=1e-12)
    (plan * G).sum().backward()
    want = reference_implicit_gradient(plan.detach(), G, 0.1)
    torch.testing.assert_close(C.grad, want, rtol=1e-9, atol=1e-12)


def test_implicit_sinkhorn_gradcheck():
    C, a, b = _ot_problem(5, B=2, n=4, m=5)        # row 0: two padded rows; row 1: three padded columns
    C, a, b = C.double().requires_grad_(True), a.double(), b.double()
    a, b = a / a.sum(-1, keepdim=True), b / b.sum(-1, keepdim=True)   # equal mass in float64
    w = torch.rand(C.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert torch.autograd.gradcheck(
        lambda c: (sinkhorn_plan(c, a, b, 1.0, 400, tol=1e-12) * w).sum(), (C,), eps=1e-6, atol=1e-5, fast_mode=True)


def test_emo_gradient_matches_the_official_unrolled_loop():
    c = make_case(5)
    c["s_hidden"] = c["s_hidden"].clone().requires_grad_(True)
    run_emo(c)["loss"].backward()
    ours = c["s_hidden"].grad.clone()
    c["s_hidden"].grad = None
    brute_emo(c)[0].backward()
    assert torch.allclose(ours.double(), c["s_hidden"].grad.double(), atol=1e-4 * ours.abs().max().item())
