"""CDM: weights, DTW merge, the vectorised dynamic map against a sequential loop, KD, end to end."""
import math
import random

import numpy as np
import pytest
import torch

from ctkd_bench import native
from ctkd_bench.align.editdist import edit_distance
from ctkd_bench.batch import TeacherSignals
from ctkd_bench.plugins import get_plugin_manager
from ctkd_bench.toy import toy_batch, toy_context, toy_forward, toy_pair
from ctkd_methods import cdm_vocab
from ctkd_methods.cdm import (CDM, alignment_matrices, batch_entropy_weights, cdm_distance, cdm_kd_loss,
                              entropy_weights)

import test_cdm_hot_path as hot_path     # same folder: the per-step KD reference


def test_entropy_weights_hand_values():
    # entropies: 0 (one-hot), ln 2, ln 4 -> normalised 0, 0.5, 1 -> int(3 sigmoid(4h - 2) + 3)
    big = 1e4
    logits = torch.tensor([[big, 0, 0, 0], [big, big, 0, 0], [0.0, 0, 0, 0]])
    assert entropy_weights(logits).tolist() == [3, 4, 5]
    assert entropy_weights(torch.zeros(2, 5)).tolist() == [4, 4]      # equal entropies: middle
    assert entropy_weights(torch.randn(1, 7)).tolist() == [4]          # one content token


def test_merge_matrices_many_to_one_both_ways():
    # teacher "ca" "t" vs student "cat": both teacher rows average onto the one student step
    m_t, m_s = alignment_matrices(torch.tensor([[1.0], [2.0]]), torch.ones(2), torch.ones(1))
    assert m_t.tolist() == [[0.5, 0.5]] and m_s.tolist() == [[1.0]]
    # teacher "cat" vs student "ca" "t": one step averaging both student rows
    m_t, m_s = alignment_matrices(torch.tensor([[1.0, 2.0]]), torch.ones(1), torch.ones(2))
    assert m_t.tolist() == [[1.0]] and m_s.tolist() == [[0.5, 0.5]]


def test_merge_follows_weighted_dtw():
    # costs favour (0,0) (1,1) (2,1): student row 1 takes teacher rows 1 and 2
    cost = torch.tensor([[0.0, 5.0], [5.0, 0.0], [5.0, 1.0]])
    m_t, m_s = alignment_matrices(cost, torch.tensor([3, 4, 5]), torch.tensor([3, 3]))
    assert m_s.tolist() == [[1.0, 0.0], [0.0, 1.0]]
    assert m_t.tolist() == [[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]]


# -- the dynamic map against the official sequential semantics ------------------------------------
def norm_dist(a, b):
    return 0.0 if len(a) + len(b) == 0 else edit_distance(a, b) / (len(a) + len(b))


def loop_map(src_top, cand_top, exact, src_str, tgt_str, thr):
    """Row-major over slots; a found candidate overwrites the per-sample map; ties -> lowest id."""
    mapper = {}
    for g, row in enumerate(src_top):
        for x in row:
            if exact[x] >= 0:
                continue
            best, best_d = None, math.inf
            for c in sorted(set(cand_top[g]) - {-1}):
                d = norm_dist(src_str[x], tgt_str[c])
                if d < thr and d < best_d:
                    best, best_d = c, d
            if best is not None:
                mapper[x] = best
    return [[exact[x] if exact[x] >= 0 else mapper.get(x, -1) for x in row] for row in src_top]


def dynamic_map_native(*args, **kwargs):
    lib = native.library("cdm_dynamic_map", cdm_vocab.KERNEL, cdm_vocab.SIGNATURES)
    if lib is None:
        pytest.skip("no C compiler here: the numpy path runs instead")
    return cdm_vocab.dynamic_map_native(lib, *args, **kwargs)


MAPS = [cdm_vocab.dynamic_map_dense, cdm_vocab.dynamic_map_lists, dynamic_map_native]


@pytest.mark.parametrize("impl", MAPS)
@pytest.mark.parametrize("seed", range(5))
def test_dynamic_map_equals_sequential_loop(seed, impl):
    rng = random.Random(seed)
    words = ["".join(rng.choice("abcde") for _ in range(rng.randint(0, 5))) for _ in range(40)]
    src_str, tgt_str = words[:20], words[20:] + ["abc", "abd"]
    exact = torch.tensor([tgt_str.index(s) if s in tgt_str else -1 for s in src_str])
    missing = torch.nonzero(exact < 0)[:, 0].tolist()
    near = cdm_vocab.near_candidates(src_str, tgt_str, missing, 0.3, specials=frozenset())
    G, K = 6, 5
    src_top = torch.tensor([rng.sample(range(len(src_str)), K) for _ in range(G)])
    cand_top = torch.tensor([rng.sample(range(len(tgt_str)), K) for _ in range(G)])
    cand_top[cand_top % 7 == 3] = -1                     # some removed candidates
    got = impl(src_top[None], cand_top[None], exact, near, torch.ones(1, G, dtype=torch.bool))
    want = loop_map(src_top.tolist(), cand_top.tolist(), exact.tolist(), src_str, tgt_str, 0.3)
    assert got[0].tolist() == want


def test_near_candidates_order_and_threshold():
    near = cdm_vocab.near_candidates(["abcd"], ["abcx", "abcd ", "zz", "abce", "abcd"], [0], 0.3)
    # "abcd" 0, "abcd " 1/9, then "abcx" and "abce" at 1/8 by id; "zz" is too far
    assert near[0].tolist() == [4, 1, 0, 3]


# -- the distance ------------------------------------------------------------------------------------
def test_official_distance_by_hand_and_true_kl():
    x, y = torch.tensor([[[0.0, 1.0]]]), torch.tensor([[[1.0, 0.0]]])
    valid = torch.ones(1, 1, dtype=torch.bool)
    T = 2.0
    p = torch.softmax(y[0, 0], -1)
    want = (p * (T * T * torch.log_softmax(y[0, 0], -1) - torch.log_softmax(x[0, 0] / T, -1))).sum() / 2
    assert cdm_distance(x, y, valid, T).item() == pytest.approx(want.item())
    q = torch.softmax(y[0, 0] / T, -1)
    kl = (q * (q.log() - torch.log_softmax(x[0, 0] / T, -1))).sum() * T * T
    assert cdm_distance(x, y, valid, T, true_kl=True).item() == pytest.approx(kl.item())


def test_padded_steps_do_not_count():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(2, 3, 4, generator=g), torch.randn(2, 3, 4, generator=g)
    valid = torch.tensor([[True, True, False], [True, False, False]])
    flat = cdm_distance(torch.cat([x[0, :2], x[1, :1]])[None], torch.cat([y[0, :2], y[1, :1]])[None],
                        torch.ones(1, 3, dtype=torch.bool), 2.0)
    assert cdm_distance(x, y, valid, 2.0).item() == pytest.approx(flat.item())


def identity_tables(v):
    ids = torch.arange(v)
    empty = torch.full((v, 1), -1)
    return {"tea2stu": ids, "stu2tea": ids, "near_t2s": empty, "near_s2t": empty}


def test_identical_vocabularies_map_exactly_and_fixed_loss_vanishes():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(1, 3, 12, generator=g)
    valid = torch.ones(1, 3, dtype=torch.bool)
    fixed = dict(fix_swapped_roles=True, fix_distance=True, fix_mask_leak=True, fix_candidate_filter=True)
    kd, mapped = cdm_kd_loss(z, z.clone(), valid, identity_tables(12), top_k=4, **fixed)
    assert kd.item() == pytest.approx(0.0, abs=1e-6) and mapped.item() == 1.0


def test_gradients_student_only_and_faithful_target_carries_gradient():
    g = torch.Generator().manual_seed(2)
    z_s = torch.randn(1, 3, 12, generator=g, requires_grad=True)
    z_t = torch.randn(1, 3, 12, generator=g, requires_grad=True)
    valid = torch.ones(1, 3, dtype=torch.bool)
    grads = []
    for fix in (False, True):
        z_s.grad = None
        kd, _ = cdm_kd_loss(z_s, z_t, valid, identity_tables(12), top_k=4, fix_swapped_roles=fix)
        kd.backward()
        assert z_t.grad is None
        grads.append(z_s.grad.clone())
    assert not torch.allclose(grads[0], grads[1])


# -- the plugin ----------------------------------------------------------------------------------
def test_registered_under_both_names():
    pm = get_plugin_manager()
    assert pm.method("cdm").cls is CDM and pm.method("CMD").cls is CDM
    assert CDM.aliases == ("cmd",) and CDM.category == "multi-level alignment"
    assert CDM.needs.teacher_signal_kinds() == ["logits"]


@pytest.fixture(scope="module")
def prepared():
    pair = toy_pair("instruct")
    method = CDM()
    method.prepare(toy_context(pair))
    return pair, method


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("fixed", [False, True])
def test_end_to_end_on_toy_pair(prepared, side, fixed):
    pair, method = prepared
    if fixed:
        flags = dict(fix_swapped_roles=True, fix_candidate_filter=True, fix_mask_leak=True,
                     fix_distance=True, fix_row_shift=True)
        method = CDM(CDM.make_config(flags))
        for name in ("tables", "strings", "specials", "token_cost"):
            setattr(method, name, getattr(prepared[1], name))
    batch = toy_batch(pair, n=3, padding_side=side)
    pair.student.zero_grad(set_to_none=True)
    student, teacher = toy_forward(pair, method, batch)
    out = method.loss(batch, student, teacher)
    assert torch.isfinite(out["loss"]) and 0.0 < out["mapped_frac"].item() <= 1.0
    assert out["loss"].item() == pytest.approx(0.5 * student.ce.item() + 0.5 * out["kd"].item(), rel=1e-5)
    (out["loss"] - 0.5 * student.ce).backward()
    assert sum(p.grad.abs().sum() for p in pair.student.parameters() if p.grad is not None) > 0
    assert all(p.grad is None for p in pair.teacher.parameters())


def test_batch_of_one_with_an_empty_response(prepared):
    pair, method = prepared
    batch = toy_batch(pair, examples=[{"id": "e", "prompt": "Reverse: cat\nAnswer:", "response": ""}])
    student, teacher = toy_forward(pair, method, batch)
    out = method.loss(batch, student, teacher)
    assert torch.isfinite(out["loss"])


# -- the batched hot paths against straightforward per-row references --------------------------------
def reference_merged_steps(method, batch, s_logits, t_logits):
    """The per-row construction (official order): content rows, weights, edit-distance DTW, merge."""
    from ctkd_bench.align.editdist import pairwise_edit_distance
    shift = int(method.config.fix_row_shift)
    s_str, t_str = method.strings
    out_s, out_t = [], []
    for b in range(s_logits.shape[0]):
        s_pos = torch.nonzero(batch.student.labels[b] != -100)[:, 0]
        t_pos = torch.nonzero(batch.teacher.labels[b] != -100)[:, 0]
        rows_s, rows_t = s_logits[b, (s_pos - shift).clamp(min=0)], t_logits[b, (t_pos - shift).clamp(min=0)]
        a = [t_str[i] for i in batch.teacher.input_ids[b, t_pos].tolist()]
        c = [s_str[i] for i in batch.student.input_ids[b, s_pos].tolist()]
        cost = torch.from_numpy(pairwise_edit_distance(a, c)).double()
        both_eos = torch.tensor([x in method.specials for x in a])[:, None] & torch.tensor([x in method.specials for x in c])[None, :]
        cost = cost.masked_fill(both_eos, 0.0)
        m_t, m_s = alignment_matrices(cost, entropy_weights(rows_t), entropy_weights(rows_s))
        out_s.append(m_s.to(rows_s.dtype) @ rows_s)
        out_t.append(m_t.to(rows_t.dtype) @ rows_t)
    width = max(z.shape[0] for z in out_s)
    valid = torch.tensor([[g < z.shape[0] for g in range(width)] for z in out_s])
    pad = lambda zs: torch.stack([torch.nn.functional.pad(z, (0, 0, 0, width - z.shape[0])) for z in zs])
    return pad(out_s), pad(out_t), valid


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("shift", [False, True])
def test_batched_merge_equals_the_per_row_construction(prepared, side, shift):
    pair, prepared_method = prepared
    method = CDM(CDM.make_config({"fix_row_shift": shift}))
    for name in ("tables", "strings", "specials", "token_cost"):
        setattr(method, name, getattr(prepared_method, name))
    examples = pair.examples[:5] + [{"id": "e", "prompt": "Reverse: cat\nAnswer:", "response": ""}]
    batch = toy_batch(pair, examples=examples, padding_side=side)
    with torch.no_grad():
        student, teacher = toy_forward(pair, method, batch)
    got = method.merged_steps(batch, student.logits, teacher.logits)
    want = reference_merged_steps(method, batch, student.logits, teacher.logits)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        assert torch.equal(g, w) if g.dtype == torch.bool else torch.allclose(g, w, rtol=1e-6, atol=1e-6)


def test_token_cost_table_and_per_call_paths_equal_pairwise_distances():
    from ctkd_bench.align.editdist import pairwise_edit_distance
    from ctkd_methods._token_cost import TokenCost
    a, b = ["ab", "</s>", "abc", "", "x"], ["abd", "<|im_end|>", "b", "ab"]
    specials = frozenset({"</s>", "<|im_end|>"})
    ia, ib = [2, 1, 0, 0, 3, 4], [3, 1, 0, 2, 2]
    want = pairwise_edit_distance([a[i] for i in ia], [b[j] for j in ib])
    want[1, 1] = 0                                       # both end-of-sequence strings
    for max_pairs in (0, 1 << 22):                       # per-call distances / the full table
        cost = TokenCost(a, b, specials, max_pairs=max_pairs)
        for _ in range(2):                               # computed, then memoised (no table)
            got = cost(ia, ib)
            assert got.dtype == np.float64 and (got == want).all()
            got[:] = -1                                  # callers may write into what they get
    assert TokenCost(a, b, specials, max_pairs=0).table is None


def test_token_cost_of_a_padded_batch_equals_each_row_pair():
    from ctkd_methods._token_cost import TokenCost
    rng = np.random.default_rng(3)
    a, b = ["ab", "</s>", "abc", "", "x", "yz"], ["abd", "<|im_end|>", "b", "ab", "xy"]
    specials = frozenset({"</s>", "<|im_end|>"})
    a_ids, b_ids = rng.integers(0, len(a), (4, 7)), rng.integers(0, len(b), (4, 5))
    n_a, n_b = [7, 3, 0, 5], [5, 5, 2, 0]
    for max_pairs in (0, 1 << 22):
        cost = TokenCost(a, b, specials, max_pairs=max_pairs)
        got = cost.batch(a_ids, b_ids, n_a, n_b)
        assert got.shape == (4, 7, 5) and got.dtype == np.float64
        for r in range(4):
            assert (got[r, :n_a[r], :n_b[r]] == cost(a_ids[r, :n_a[r]], b_ids[r, :n_b[r]])).all()
            outside = np.ones((7, 5), dtype=bool)
            outside[:n_a[r], :n_b[r]] = False
            assert (got[r][outside] == 0).all()


def test_native_dynamic_map_refuses_source_ids_outside_its_tables():
    exact, near = torch.tensor([0, -1, 1]), torch.tensor([[-1], [0], [-1]])
    src, cand = torch.tensor([[[0, 3]]]), torch.tensor([[[0, 1]]])    # id 3: past the 3-entry tables
    with pytest.raises(IndexError):
        cdm_vocab.dynamic_map_lists(src, cand, exact, near, torch.ones(1, 1, dtype=torch.bool))
    with pytest.raises(IndexError, match="source ids"):
        dynamic_map_native(src, cand, exact, near, torch.ones(1, 1, dtype=torch.bool))


@pytest.mark.parametrize("seed", range(4))
def test_native_dynamic_map_equals_the_numpy_one_on_large_random_batches(seed):
    # many rows and steps, repeated source ids across steps (the "last step wins" rule), removed
    # and blocked candidates, padded steps, both zero_unmapped settings
    rng = random.Random(seed)
    words = ["".join(rng.choice("abcd") for _ in range(rng.randint(0, 4))) for _ in range(90)]
    src_str, tgt_str = words[:50], words[50:]
    exact = torch.tensor([tgt_str.index(s) if s in tgt_str else -1 for s in src_str])
    exact[rng.randrange(50)] = 0                                    # an exact target 0
    near = cdm_vocab.near_candidates(src_str, tgt_str, torch.nonzero(exact < 0)[:, 0].tolist(), 0.45,
                                     specials=frozenset())
    B, G, K = 5, 9, 12
    src_top = torch.tensor([[rng.sample(range(50), K) for _ in range(G)] for _ in range(B)])
    cand_top = torch.tensor([[rng.sample(range(40), K) for _ in range(G)] for _ in range(B)])
    cand_top[torch.rand(B, G, K, generator=torch.Generator().manual_seed(seed)) < 0.2] = -1
    valid = torch.arange(G)[None, :] < torch.tensor([9, 4, 0, 7, 1])[:, None]
    blocked = torch.zeros(40, dtype=torch.bool)
    blocked[rng.sample(range(40), 8)] = True
    for zero_unmapped in (False, True):
        want = cdm_vocab.dynamic_map_lists(src_top, cand_top, exact, near, valid, blocked, zero_unmapped)
        got = dynamic_map_native(src_top, cand_top, exact, near, valid, blocked, zero_unmapped)
        assert torch.equal(got, want)
        assert torch.equal(cdm_vocab.dynamic_map_dense(src_top, cand_top, exact, near, valid, blocked,
                                                       zero_unmapped), want)


@pytest.mark.parametrize("impl", MAPS)
def test_dynamic_map_batched_rows_and_padded_steps_equal_the_loop(impl):
    rng = random.Random(7)
    words = ["".join(rng.choice("abc") for _ in range(rng.randint(1, 4))) for _ in range(30)]
    src_str, tgt_str = words[:15], words[15:]
    exact = torch.tensor([tgt_str.index(s) if s in tgt_str else -1 for s in src_str])
    near = cdm_vocab.near_candidates(src_str, tgt_str, torch.nonzero(exact < 0)[:, 0].tolist(), 0.5,
                                     specials=frozenset())
    B, G, K = 3, 5, 4
    src_top = torch.tensor([[rng.sample(range(15), K) for _ in range(G)] for _ in range(B)])
    cand_top = torch.tensor([[rng.sample(range(15), K) for _ in range(G)] for _ in range(B)])
    valid = torch.tensor([[True] * 5, [True] * 3 + [False] * 2, [True] + [False] * 4])
    got = impl(src_top, cand_top, exact, near, valid)
    for b in range(B):
        g_real = int(valid[b].sum())
        want = loop_map(src_top[b, :g_real].tolist(), cand_top[b, :g_real].tolist(), exact.tolist(),
                        src_str, tgt_str, 0.5)
        assert got[b, :g_real].tolist() == want
        assert torch.equal(got[b, g_real:], exact[src_top[b, g_real:]])   # padded steps: exact map only


# -- the whole batched loss against the per-row merge and the per-step KD reference -----------------------
@pytest.mark.parametrize("flags", [{}, {"fix_row_shift": True, "fix_mask_leak": True},
                                   dict.fromkeys(hot_path.SWITCHES + ("fix_row_shift",), True)])
def test_method_loss_and_gradient_equal_the_per_row_reference(prepared, flags):
    pair, base = prepared
    method = CDM(CDM.make_config(flags))
    for name in ("tables", "strings", "specials", "token_cost"):
        setattr(method, name, getattr(base, name))
    batch = toy_batch(pair, examples=pair.examples[:6], padding_side="left")
    with torch.no_grad():
        student, teacher = toy_forward(pair, method, batch)
    # float64 on both sides: in float32 the two summation orders differ by up to ~1e-5 of the KD,
    # as much as one wrongly mapped slot would change it
    teacher = TeacherSignals(method.needs, {"logits": teacher.logits.double()})
    logits = student.logits.double().requires_grad_(True)
    out = method.loss(batch, type(student)(logits=logits, ce=student.ce.double()), teacher)
    grad, = torch.autograd.grad(out["loss"], logits)
    ref_logits = student.logits.double().requires_grad_(True)
    m_s, m_t, valid = reference_merged_steps(method, batch, ref_logits, teacher.logits)
    k = min(100, m_s.shape[-1], m_t.shape[-1])
    switches = {name: flags.get(name, False) for name in hot_path.SWITCHES}
    kd, _ = hot_path.reference_kd(m_s, m_t.detach(), valid, method.tables, k, 2.0, **switches)
    want_grad, = torch.autograd.grad(0.5 * kd, ref_logits)
    assert out["kd"].item() == pytest.approx(kd.item(), rel=1e-11, abs=1e-14)
    assert torch.allclose(grad, want_grad, rtol=1e-9, atol=1e-15)


def test_near_candidates_in_row_blocks_equal_one_block(monkeypatch):
    # blocks bound the memory of a length class (a 262k vocabulary's class against a 49k one);
    # each source id's list must not depend on which block it was in
    rng = random.Random(7)
    words = ["".join(rng.choice("abcde") for _ in range(rng.randint(1, 5))) for _ in range(120)]
    src, tgt = words[:60], words[60:]
    ids = list(range(60))
    whole = cdm_vocab.near_candidates(src, tgt, ids, 0.4)
    monkeypatch.setattr(cdm_vocab, "NEAR_BLOCK_CELLS", 7)       # a block of one row
    assert torch.equal(cdm_vocab.near_candidates(src, tgt, ids, 0.4), whole)
    assert (whole[:, 0] >= 0).any() and (whole >= 0).sum() > 60


def test_memoised_teacher_weights_equal_fresh_ones(prepared):
    pair, method = prepared
    batch = toy_batch(pair, n=4)
    with torch.no_grad():
        student, teacher = toy_forward(pair, method, batch)
    cells, _, real, sizes, _ = CDM.content_cells(batch.teacher.labels, teacher.logits, 0)
    fresh = CDM()
    keys = CDM.teacher_keys(batch)
    first = fresh.teacher_weights(keys, cells, real, sizes)                 # computed, then stored
    assert set(fresh._teacher_w) == set(keys) and [i for i, _ in keys] == batch.ids
    again = fresh.teacher_weights(keys, cells * 0, real, sizes)             # served from the memo
    assert np.array_equal(first, again)
    assert np.array_equal(first, batch_entropy_weights(cells[real], real).numpy())
    shorter = real.clone()
    shorter[0, int(sizes[0]) - 1] = False                                   # a length change recomputes
    sizes2 = sizes.clone()
    sizes2[0] -= 1
    recomputed = fresh.teacher_weights(keys, cells, shorter, sizes2)
    assert np.array_equal(recomputed, batch_entropy_weights(cells[shorter], shorter).numpy())


def test_memoised_teacher_topk_equals_the_topk_of_the_merged_steps(prepared, monkeypatch):
    import ctkd_methods.cdm as cdm_module
    from ctkd_methods._cdm_steps import merge_rows
    pair, method = prepared
    batch = toy_batch(pair, examples=pair.examples[:6], padding_side="left")
    with torch.no_grad():
        student, teacher = toy_forward(pair, method, batch)
    fresh = CDM()
    for name in ("tables", "strings", "specials", "token_cost"):
        setattr(fresh, name, getattr(method, name))
    merge = fresh.merge(batch, student.logits, teacher.logits)
    m_t = merge.m_t.copy()
    m_t[0, 0, :2], m_t[1, 1, :3] = 0.5, 1 / 3            # two steps that average teacher rows
    merge = merge._replace(m_t=m_t)
    k = 7
    want = cdm_module.real_step_topk(merge_rows(m_t, merge.cells_t()), merge.valid, k)
    whole = (np.count_nonzero(merge.m_t, axis=2) == 1) & (merge.m_t.max(2) == 1.0)
    assert whole.sum() > 0 and (merge.valid.numpy() & ~whole).sum() > 0       # both kinds of step
    rows_selected = []
    real_topk = cdm_module.topk_ids
    monkeypatch.setattr(cdm_module, "topk_ids", lambda z, *a, **kw: rows_selected.append(len(z)) or real_topk(z, *a, **kw))
    for _ in range(2):                                   # filled, then read from the memo
        got = fresh.teacher_topk(merge.keys, merge, k)
        assert torch.equal(got[merge.valid], want[merge.valid])              # same sets, same order
    # the first call selects over every content row once, then the averaged steps; the second call
    # finds both in its memos
    averaged = int((merge.valid.numpy() & ~whole).sum())
    assert rows_selected == [int(merge.n_t.sum()), averaged]
    m_t[0, 0, :2] = 0.25, 0.75                          # new weights for one averaged step: selected again
    merge = merge._replace(m_t=m_t)
    want = cdm_module.real_step_topk(merge_rows(m_t, merge.cells_t()), merge.valid, k)
    rows_selected.clear()
    assert torch.equal(fresh.teacher_topk(merge.keys, merge, k)[merge.valid], want[merge.valid])
    assert rows_selected == [1]


@pytest.mark.parametrize("impl", MAPS)
@pytest.mark.parametrize("seed", range(3))
def test_blocked_targets_act_as_removed_candidates(seed, impl):
    rng = random.Random(seed)
    words = ["".join(rng.choice("abcde") for _ in range(rng.randint(1, 4))) for _ in range(40)]
    src_str, tgt_str = words[:20], words[20:]
    exact = torch.tensor([tgt_str.index(s) if s in tgt_str else -1 for s in src_str])
    near = cdm_vocab.near_candidates(src_str, tgt_str, torch.nonzero(exact < 0)[:, 0].tolist(), 0.4,
                                     specials=frozenset())
    G, K = 6, 5
    src_top = torch.tensor([rng.sample(range(len(src_str)), K) for _ in range(G)])
    cand_top = torch.tensor([rng.sample(range(len(tgt_str)), K) for _ in range(G)])
    source_exact = torch.tensor([rng.choice([-1, 3]) for _ in range(15)])     # shorter than V_tgt
    blocked = cdm_vocab.blocked_targets(source_exact, len(tgt_str), block_zero=True, official_filter=True)
    assert blocked[0] and blocked[:15].tolist()[1:] == (source_exact[1:] < 0).tolist() and not blocked[15:].any()
    removed = cand_top.masked_fill(blocked[cand_top], -1)
    got = impl(src_top[None], cand_top[None], exact, near, torch.ones(1, G, dtype=torch.bool), blocked, True)
    want = loop_map(src_top.tolist(), removed.tolist(), exact.tolist(), src_str, tgt_str, 0.4)
    want = [[-1 if t == 0 else t for t in row] for row in want]              # an exact 0 reads as unmapped
    assert got[0].tolist() == want


def test_flattened_near_lists_follow_an_edited_table():
    exact = torch.tensor([-1, -1])
    near = torch.tensor([[1, -1], [0, 1]])
    lens, flat, start, searchable = cdm_vocab._flat_near_lists(near, exact)
    assert lens.tolist() == [1, 2] and flat.tolist() == [1, 0, 1] and start.tolist() == [0, 1]
    near[0, 1] = 0                                       # edited in place: flattened again
    assert cdm_vocab._flat_near_lists(near, exact)[1].tolist() == [1, 0, 0, 1]
    exact[1] = 0
    assert cdm_vocab._flat_near_lists(near, exact)[3].tolist() == [True, False]


def test_memos_follow_the_teacher_input_not_just_the_example_id(prepared):
    # the same id and response under another prompt: other teacher logits, so no memo hit
    pair, method = prepared
    example = dict(pair.examples[0])
    reprompted = dict(example, prompt="Sort: b a c\nAnswer:")
    used = CDM()
    for name in ("tables", "strings", "specials", "token_cost"):
        setattr(used, name, getattr(method, name))
    fresh = CDM()
    for name in ("tables", "strings", "specials", "token_cost"):
        setattr(fresh, name, getattr(method, name))
    first, second = toy_batch(pair, examples=[example]), toy_batch(pair, examples=[reprompted])
    assert first.ids == second.ids and CDM.teacher_keys(first) != CDM.teacher_keys(second)
    with torch.no_grad():
        used.loss(first, *toy_forward(pair, used, first))
        student, teacher = toy_forward(pair, used, second)
        assert used.loss(second, student, teacher)["kd"].item() == fresh.loss(second, student, teacher)["kd"].item()
    assert len(used._teacher_w) == len(used._teacher_top) == 2
