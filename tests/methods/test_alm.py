"""ALM: pure pieces against hand values / a loop brute force, and the plugin on the toy pair."""
from __future__ import annotations

import math

import pytest
import torch

from ctkd_bench import Needs
from ctkd_bench.errors import ConfigError
from ctkd_bench.plugins import PluginInfo, validate_method_class
from ctkd_bench.toy import toy_batch, toy_context, toy_forward, toy_pair
from ctkd_methods._alm_extras import (gradmag_combine, last_block_parameters, latents_loss, space_mask,
                                      starts_with_whitespace)
from ctkd_bench.align.groups import batch_chunk_matrices
from ctkd_methods.alm import (ALM, alm_loss, binarised_divergence, chunk_ids, chunk_logliks,
                              last_index_per_chunk, loss_memberships, merge_matrix, token_and_space_logprobs)

# -- brute force ------------------------------------------------------------------------------------


def bce64(lt, lp, tau):
    y = math.exp(lt / tau - 1e-6)
    yh = math.exp(lp / tau - 1e-6)
    return -(y * math.log(yh) + (1 - y) * math.log(1 - yh))


def brute_row(t_lp, t_sp, t_chunks, s_lp, s_sp, s_chunks, tau, merge, append, thr):
    """One row, from the description: returns (sum of divergences, #valid groups, double-merged count)."""
    def side(lp, sp, chunks):
        out = []
        for toks in chunks:
            toks = [j for j in toks if j >= 1]
            main = min(sum(lp[j - 1] for j in toks), 0.0)
            out.append((main, sp[max(toks)] if toks else sp[0], len(toks)))
        return out
    t, s = side(t_lp, t_sp, t_chunks), side(s_lp, s_sp, s_chunks)
    C = len(t)
    gid = [sum(1 for c2 in range(c) if math.exp(t[c2][1]) > thr) for c in range(C)] if merge else list(range(C))
    groups = {}
    for c in range(C):
        if t[c][2] > 0:
            groups.setdefault(gid[c], []).append(c)
    merged_count = [sum(t[c][2] for c in groups.get(g, [])) for g in range(C)]
    total = 0.0
    for g, members in groups.items():
        last = max(members)
        lt = sum(t[c][0] for c in members) + (t[last][1] if append else 0.0)
        lp = sum(s[c][0] for c in members) + (s[last][1] if append else 0.0)
        total += bce64(lt, lp, tau)
    double = sum(1 for g in range(C)
                 if sum(merged_count[c] for c in range(C) if gid[c] == g and t[c][2] > 0) > 0)
    return total, len(groups), double


def member_tensor(chunks_per_row, L):
    C = max(len(r) for r in chunks_per_row)
    m = torch.zeros(len(chunks_per_row), L, C, dtype=torch.bool)
    for b, row in enumerate(chunks_per_row):
        for c, toks in enumerate(row):
            for j in toks:
                m[b, j, c] = True
    return m


# rows: chunk -> token positions; chunk 0 is an empty (prompt-like) slot in row 0
T_CHUNKS = [[[], [1, 2], [3], [4, 5], [6], [7]], [[1], [2, 3, 4], [5], [6, 7]]]
S_CHUNKS = [[[], [1], [2, 3], [4], [5, 6], [7]], [[1, 2], [3], [4], [5, 6]]]


def case(seed, L=8):
    g = torch.Generator().manual_seed(seed)
    t_lp, s_lp = -torch.rand(2, L, generator=g) * 3, -torch.rand(2, L, generator=g) * 3
    t_sp = torch.log(torch.rand(2, L, generator=g) * 0.3)     # probabilities around the 0.1 threshold
    s_sp = torch.log(torch.rand(2, L, generator=g))
    return t_lp, t_sp, s_lp, s_sp


# -- pure functions -------------------------------------------------------------------------------


def test_token_and_space_logprobs_by_hand():
    logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25], [0.1, 0.6, 0.3]]]))
    ids = torch.tensor([[0, 2]])
    tok, sp = token_and_space_logprobs(logits, ids, torch.tensor([True, False, True]))
    assert tok[0].tolist() == pytest.approx([math.log(0.25), 0.0])
    assert sp[0].tolist() == pytest.approx([math.log(0.75), math.log(0.4)])


def test_space_logprob_exact_when_the_space_mass_underflows():
    logits = torch.tensor([[[0.0, -200.0, -200.0, 1.0], [0.0, 1.0, 2.0, 3.0]]], requires_grad=True)
    mask = torch.tensor([False, True, True, False])
    tok, sp = token_and_space_logprobs(logits, torch.tensor([[0, 1]]), mask)
    lse = [math.log(1 + math.exp(1)), math.log(1 + math.e + math.e ** 2 + math.e ** 3)]
    assert sp[0, 0].item() == pytest.approx(math.log(2) - 200 - lse[0], rel=1e-6)
    assert sp[0, 1].item() == pytest.approx(math.log(math.e + math.e ** 2) - lse[1], rel=1e-6)
    assert tok[0, 0].item() == pytest.approx(-200 - lse[0], rel=1e-6)
    (sp.sum() + tok.sum()).backward()
    assert torch.isfinite(logits.grad).all()


def reference_token_and_space_logprobs(logits, ids, space_mask):
    """The plain-autograd implementation the analytic-gradient one replaced (kept as the reference)."""
    logits = logits.float()
    top = logits.detach().amax(-1, keepdim=True)
    scaled = torch.exp(logits - top)
    lse = top.squeeze(-1) + scaled.sum(-1).log()
    token = logits[:, :-1].gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1) - lse[:, :-1]
    token = torch.cat([token, token.new_zeros(token.shape[0], 1)], dim=1).clamp(max=0.0)
    mass = scaled @ space_mask.to(scaled.dtype)
    space = top.squeeze(-1) + mass.clamp_min(1e-30).log() - lse
    low = mass < 1e-30
    if bool(low.any()):
        where = low.nonzero(as_tuple=True)
        exact = logits[where].masked_fill(~space_mask.bool(), float("-inf")).logsumexp(-1) - lse[where]
        space = space.index_put(where, exact)
    return token, space.clamp(max=0.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_token_and_space_logprobs_equal_the_autograd_reference(dtype):
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(3, 7, 11, generator=g, dtype=torch.float64) * 4
    logits[1, 2, :] = torch.linspace(-150, 0, 11, dtype=torch.float64)    # space mass underflows (row 1, 2)
    mask = torch.zeros(11, dtype=torch.bool)
    mask[[0, 3, 4]] = True
    ids = torch.randint(0, 11, (3, 7), generator=g)
    g_tok, g_sp = torch.randn(3, 7, generator=g), torch.randn(3, 7, generator=g)
    got, want = [], []
    for fn, out in ((token_and_space_logprobs, got), (reference_token_and_space_logprobs, want)):
        x = logits.to(dtype).clone().requires_grad_()
        tok, sp = fn(x, ids, mask)
        ((tok * g_tok).sum() + (sp * g_sp).sum()).backward()
        out += [tok.detach(), sp.detach(), x.grad]
    assert bool((want[1] < -60).any())                        # the underflow path ran
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    torch.testing.assert_close(got[2], want[2], rtol=1e-5, atol=1e-6)


def test_token_and_space_logprobs_gradcheck():
    g = torch.Generator().manual_seed(4)
    logits = (torch.randn(2, 4, 5, generator=g, dtype=torch.float64) * 2).requires_grad_()
    mask = torch.tensor([True, False, True, False, False])
    ids = torch.randint(0, 5, (2, 4), generator=g)
    from ctkd_methods._alm_loss import _TokenSpaceLogprobs
    assert torch.autograd.gradcheck(lambda x: _TokenSpaceLogprobs.apply(x, ids, mask), (logits,))


def test_last_index_per_chunk_rules():
    m = torch.tensor([[[1, 0, 0], [1, 0, 1], [0, 0, 0], [0, 0, 1], [0, 0, 1]]], dtype=torch.bool)
    assert last_index_per_chunk(m).tolist() == [[1, 0, 1]]   # empty -> 0; first run's end wins


def test_merge_matrix_by_hand():
    space = torch.log(torch.tensor([[0.5, 0.05, 0.02, 0.9, 0.01]]))
    count = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0]])
    M = merge_matrix(space, count, 0.1)[0]
    assert M.tolist() == [[1, 0, 0, 0, 0], [0, 1, 0, 0, 0], [0, 1, 0, 0, 0], [0, 1, 0, 0, 0], [0, 0, 0, 0, 0]]


def test_binary_ce_against_formula_and_finite_at_extremes():
    lt = torch.tensor([-0.5, -3.0, -1e-7, -500.0, -1e4], dtype=torch.float64)
    lp = torch.tensor([-1.0, -2.0, -1e-7, -800.0, -1e-5], dtype=torch.float64)
    got = binarised_divergence(lt, lp, 100.0)
    want = [bce64(a, b, 100.0) for a, b in zip(lt.tolist(), lp.tolist())]
    assert got.tolist() == pytest.approx(want, rel=1e-4)
    assert torch.isfinite(got).all()
    for kind in ("reverse_binary_kl", "abs_exp", "abs"):
        assert torch.isfinite(binarised_divergence(lt, lp, 100.0, kind)).all()


def test_chunk_logliks_brute_force():
    t_lp, t_sp, _, _ = case(0)
    m = member_tensor(T_CHUNKS, 8)
    main, space, count = chunk_logliks(t_lp, t_sp, m)
    for b, row in enumerate(T_CHUNKS):
        for c, toks in enumerate(row):
            toks = [j for j in toks if j >= 1]
            assert main[b, c].item() == pytest.approx(min(sum(t_lp[b, j - 1].item() for j in toks), 0.0))
            assert space[b, c].item() == pytest.approx(t_sp[b, max(toks) if toks else 0].item())
            assert count[b, c].item() == len(toks)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("mode", ["merge_by_space_prob+append_space", "append_space", "naive"])
@pytest.mark.parametrize("fix", [False, True])
def test_alm_loss_matches_brute_force(seed, mode, fix):
    t_lp, t_sp, s_lp, s_sp = case(seed)
    got = alm_loss(t_lp, t_sp, member_tensor(T_CHUNKS, 8), s_lp, s_sp, member_tensor(S_CHUNKS, 8),
                   tau=100.0, mode=mode, threshold=0.1, fix_double_merge=fix)["loss"]
    merge, append = "merge" in mode, "append" in mode
    rows = [brute_row(t_lp[b].tolist(), t_sp[b].tolist(), T_CHUNKS[b], s_lp[b].tolist(), s_sp[b].tolist(),
                      S_CHUNKS[b], 100.0, merge, append, 0.1) for b in range(2)]
    denominator = sum(r[1] for r in rows) if (fix or not merge) else sum(r[2] for r in rows)
    assert got.item() == pytest.approx(sum(r[0] for r in rows) / max(denominator, 1), rel=1e-5)


def test_double_merge_quirk_changes_the_denominator():
    t_lp, t_sp, s_lp, s_sp = case(0)
    t_sp[:] = math.log(0.5)
    t_sp[:, 2] = math.log(0.01)                 # row 0: chunk 1 ends at token 2 -> merged with chunk 2
    args = (t_lp, t_sp, member_tensor(T_CHUNKS, 8), s_lp, s_sp, member_tensor(S_CHUNKS, 8))
    faithful = alm_loss(*args, fix_double_merge=False)["loss"]
    fixed = alm_loss(*args, fix_double_merge=True)["loss"]
    assert faithful.item() != pytest.approx(fixed.item())


def test_student_equal_to_teacher_has_zero_gradient_on_student_logprobs():
    t_lp, t_sp, _, _ = case(1)
    m = member_tensor(T_CHUNKS, 8)
    s_lp = t_lp.clone().requires_grad_(True)
    s_sp = t_sp.clone().requires_grad_(True)
    loss = alm_loss(t_lp, t_sp, m, s_lp, s_sp, m.clone())["loss"]
    assert loss.item() > 0                      # binary entropy of y, not zero
    gl, gs = torch.autograd.grad(loss, [s_lp, s_sp])
    assert gl.abs().max() < 1e-4 and gs.abs().max() < 1e-4


def test_loss_memberships_compacts_and_drops_inexact_chunks():
    chunk_s = torch.tensor([[0, 1, 1, 2, 3, -1]])
    chunk_t = torch.tensor([[0, 1, 2, 2, 3, 3]])
    exact = torch.tensor([[True, True, False, True]])
    keep_s = torch.tensor([[False, True, True, True, True, False]])
    keep_t = torch.tensor([[False, True, True, True, True, True]])
    m_s, m_t = loss_memberships(chunk_s, chunk_t, exact, keep_s, keep_t)
    assert m_t.shape[-1] == 2                   # chunks 1 and 3 (2 is inexact, 0 not kept)
    assert m_s[0].nonzero().tolist() == [[1, 0], [2, 0], [4, 1]]
    assert m_t[0].nonzero().tolist() == [[1, 0], [4, 1], [5, 1]]


def test_latents_loss_by_hand():
    s = torch.tensor([[[1.0, 0.0], [2.0, 2.0]]])
    t = torch.tensor([[[0.0, 1.0], [1.0, 3.0], [9.0, 9.0]]])
    got = latents_loss(s, t, torch.tensor([[0, 1]]), torch.tensor([[0, 1]]), torch.tensor([[True, True]]))
    scale = [(0 + 1) / 2, (1 + 9) / 2]          # per-channel mean square of the teacher states
    want = ((1 / scale[0] + 1 / scale[1]) + (1 / scale[0] + 1 / scale[1])) / 4
    assert got.item() == pytest.approx(want, rel=1e-6)


def test_gradmag_gives_unit_norm_per_loss_gradients():
    p = torch.tensor([1.0, 2.0], requires_grad=True)
    l1, l2 = (3 * p).sum(), (p ** 2).sum()      # gradients [3, 3] and [2, 4]
    total, w = gradmag_combine([l1, l2], [p])
    (g,) = torch.autograd.grad(total, [p])
    n1, n2 = math.sqrt(18), math.sqrt(20)
    want = (torch.tensor([3.0, 3.0]) / n1 + torch.tensor([2.0, 4.0]) / n2) / (1 / n1 + 1 / n2)
    assert w.tolist() == pytest.approx([1 / n1, 1 / n2], rel=1e-5)
    assert g.tolist() == pytest.approx(want.tolist(), rel=1e-5)


def test_space_mask_forms():
    assert all(starts_with_whitespace(t) for t in ("Ġcat", "Ċ", "ĉx", "▁the", "<0x0A>", "<0x20>", "\n", " a"))
    assert not any(starts_with_whitespace(t) for t in ("cat", "##s", "<0x41>", "", "Ã¼"))
    pair = toy_pair("instruct")
    tok = pair.teacher_tokenizer
    mask = space_mask(tok, len(tok))
    assert mask[tok.eos_token_id] and mask[tok.convert_tokens_to_ids("Ġdog")]
    assert not mask[tok.convert_tokens_to_ids("Reverse")]


# -- the plugin on the toy pair ---------------------------------------------------------------------


def _method(pair, **overrides):
    method = ALM(ALM.make_config(overrides))
    ctx = toy_context(pair)
    method.prepare(ctx)
    method.modules = method.setup(ctx)
    return method


def test_plugin_contract():
    validate_method_class(ALM, PluginInfo("alm", "ctkd-bench", "0", "ctkd_methods.alm"))
    assert ALM.category == "text alignment" and ALM.tracks == ("lm", "math", "instruct")
    for bad in ({"losses": ["kl"]}, {"alm_mode": "space_merge"}, {"divergence": "kl"}):
        with pytest.raises(ConfigError):
            ALM.make_config(bad)


@pytest.mark.parametrize("side", ["right", "left"])
def test_chunk_ids_equal_the_toolkit_chunks(side):
    pair = toy_pair("instruct")
    batch = toy_batch(pair, 6, padding_side=side)
    ids_s, ids_t, exact = chunk_ids(batch.student, batch.teacher)
    ref = batch_chunk_matrices(batch.student, batch.teacher)
    assert torch.equal(ids_s, ref.student_chunk) and torch.equal(ids_t, ref.teacher_chunk)
    assert torch.equal(exact, ref.valid)


def test_needs_follow_the_config():
    assert ALM().needs == Needs(logits=True)                 # default: no hidden states anywhere
    assert ALM(ALM.make_config({"gradmag": True})).needs == Needs(logits=True, student_hidden_states=True)
    latents = ALM(ALM.make_config({"losses": ["alm", "latents"]})).needs
    assert latents.hidden_states == (-1,) and latents.student_hidden_states
    for config in ({}, {"gradmag": True}, {"losses": ["sft", "latents"]}):    # within the class superset
        needs = ALM(ALM.make_config(config)).needs
        assert set(needs.hidden_states) <= set(ALM.needs.hidden_states) and needs.logits


def test_last_block_parameters_are_the_last_layer():
    pair = toy_pair("instruct")
    method = _method(pair, gradmag=True)
    student, _ = toy_forward(pair, method, toy_batch(pair, 2))
    found = {id(p) for p in last_block_parameters(student.hidden_states)}
    want = {id(p) for p in pair.student.model.layers[-1].parameters()} | {id(pair.student.model.norm.weight)}
    assert found == want


@pytest.mark.parametrize("overrides", [{}, {"gradmag": True, "losses": ["sft", "alm", "latents"]},
                                       {"chunks_on_prompt": True, "fix_double_merge": True}])
def test_plugin_padding_invariant_and_gradients(overrides):
    pair = toy_pair("instruct")
    method = _method(pair, **overrides)
    values = []
    for side in ("right", "left"):
        batch = toy_batch(pair, 3, padding_side=side)
        student, teacher = toy_forward(pair, method, batch)
        out = method.loss(batch, student, teacher)
        values.append(out["loss"].item())
    assert math.isfinite(values[0]) and values[0] == pytest.approx(values[1], rel=1e-4)
    out["loss"].backward()
    assert all(p.grad is None for p in pair.teacher.parameters())
    assert pair.student.model.layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0
    if method.modules is not None:
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method.modules.parameters())
        method.modules.zero_grad(set_to_none=True)
    pair.student.zero_grad(set_to_none=True)


def test_plugin_batch_of_one_with_length_one_response():
    pair = toy_pair("instruct")
    method = _method(pair)
    batch = toy_batch(pair, examples=[{"id": "x", "prompt": "Reverse: cat\nAnswer:", "response": "x"}])
    student, teacher = toy_forward(pair, method, batch)
    out = method.loss(batch, student, teacher)
    assert torch.isfinite(out["loss"]) and out["alm_chunks"] >= 1
    pair.student.zero_grad(set_to_none=True)
