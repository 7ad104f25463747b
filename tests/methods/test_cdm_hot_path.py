"""CDM's batched step (top-K, screened entropy weights, batched merge, KD) against straightforward
per-row formulations of the official semantics, under every fix_* switch."""
import itertools
import random

import numpy as np
import pytest
import torch

from ctkd_bench.align.dtw import dtw
from ctkd_methods import cdm_vocab
from ctkd_methods._cdm_steps import _row_entropy64, merge_batch, screened_entropy, screened_entropy_weights
from ctkd_methods._topk import topk_ids
from ctkd_methods.cdm import batch_entropy_weights, cdm_kd_loss, merge_matrices, weights_from_entropy

SWITCHES = ("fix_swapped_roles", "fix_candidate_filter", "fix_mask_leak", "fix_distance")


# -- top-K ------------------------------------------------------------------------------------------
def test_topk_ids_same_sets_as_torch_and_ties_decided_by_torch():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(12, 50, generator=g)
    z[3] = torch.round(z[3])                       # ties at the boundary: torch.topk decides
    z[4] = 0.0                                     # all tied
    z[5, 7] = float("nan")
    got, want = topk_ids(z, 10), z.topk(10, dim=-1).indices
    assert torch.equal(got.sort(-1).values, want.sort(-1).values)
    assert torch.equal(got[3:6], want[3:6])
    values = z[torch.arange(12)[:, None], got]
    assert (values[:, :-1] >= values[:, 1:])[[0, 1, 2, 6, 7]].all()      # sorted by value, like torch
    unordered = topk_ids(z, 10, ordered=False)
    assert torch.equal(unordered.sort(-1).values, want.sort(-1).values)
    assert torch.equal(unordered[3:6], want[3:6])                        # torch decided these rows
    clear = [0, 1, 2, 6, 7, 8, 9, 10, 11]
    assert torch.equal(unordered[clear], unordered[clear].sort(-1).values)   # ascending ids, no sort by value


# -- entropy weights --------------------------------------------------------------------------------
@pytest.mark.parametrize("scale", [1e-3, 0.05, 1.0, 8.0])
def test_screened_entropy_bound_and_weights_equal_the_float64_ones(scale):
    g = torch.Generator().manual_seed(1)
    cells = torch.randn(6, 40, 300, generator=g) * scale
    cells[:, ::7, 5] += 25.0                       # some peaked rows
    cells[2] = cells[2, :1]                        # a row of equal entropies: weight 4
    real = torch.rand(6, 40, generator=g) < 0.85
    real[3] = False
    real[4] = False
    real[4, 9] = True                              # one content token
    estimate, bound = screened_entropy(cells)
    assert ((estimate - _row_entropy64(cells.flatten(0, 1)).view(6, 40)).abs() <= bound).all()
    got = screened_entropy_weights(cells, real, weights_from_entropy)
    assert torch.equal(got, batch_entropy_weights(cells[real], real))


@pytest.mark.parametrize("piece_bytes", [1, 8 * 300 * 7, 1 << 40])    # one row, 7 rows, everything
def test_entropies_in_row_pieces_are_bit_identical(monkeypatch, piece_bytes):
    from ctkd_methods import _pieces
    from ctkd_methods.cdm import row_entropy

    g = torch.Generator().manual_seed(3)
    cells = torch.randn(5, 9, 300, generator=g) * 3
    whole_estimate, whole_bound = screened_entropy(cells)        # default pieces
    monkeypatch.setattr(_pieces, "PIECE_BYTES", piece_bytes)
    estimate, bound = screened_entropy(cells)
    assert torch.equal(estimate, whole_estimate) and torch.equal(bound, whole_bound)
    assert torch.equal(_row_entropy64(cells.flatten(0, 1)), row_entropy(cells.flatten(0, 1)))


def test_screened_weights_near_the_weight_boundaries():
    # entropies spread over a range 1e-4 wide: many rows sit within the error bound of a boundary
    g = torch.Generator().manual_seed(2)
    cells = torch.randn(1, 1, 200, generator=g).expand(4, 64, 200).clone()
    cells += torch.randn(4, 64, 200, generator=g) * 1e-4
    real = torch.ones(4, 64, dtype=torch.bool)
    assert torch.equal(screened_entropy_weights(cells, real, weights_from_entropy),
                       batch_entropy_weights(cells[real], real))


# -- merge --------------------------------------------------------------------------------------------
def test_merge_batch_equals_per_row_merge_matrices():
    rng = np.random.default_rng(3)
    sizes = [(5, 3), (2, 6), (7, 7), (0, 4), (3, 0), (1, 1)]
    N, M = 7, 7
    on = np.zeros((len(sizes), N, M), dtype=bool)
    for b, (n, m) in enumerate(sizes):
        if n and m:
            _, path = dtw(rng.integers(0, 4, (n, m)).astype(float))
            on[b][tuple(np.array(path).T)] = True
    m_t, m_s, groups = merge_batch(on, [n for n, _ in sizes], [m for _, m in sizes])
    for b, (n, m) in enumerate(sizes):
        want_t, want_s = merge_matrices(torch.from_numpy(on[b, :n, :m]))
        G = want_s.shape[0]
        assert groups[b] == G
        assert np.allclose(m_t[b, :G, :n], want_t.numpy()) and np.allclose(m_s[b, :G, :m], want_s.numpy())
        assert not m_t[b, G:].any() and not m_t[b, :, n:].any() and not m_s[b, :, m:].any()



@pytest.mark.parametrize("piece_bytes", [4 * 11, 1 << 40])              # one row per piece, everything
def test_merge_rows_equals_the_dense_product_and_its_gradient(monkeypatch, piece_bytes):
    from ctkd_methods import _pieces
    from ctkd_methods._cdm_steps import merge_rows
    monkeypatch.setattr(_pieces, "PIECE_BYTES", piece_bytes)
    rng = np.random.default_rng(5)
    on = rng.random((3, 6, 5)) < 0.3
    on[:, np.arange(5), np.arange(5)] = True                          # every row has a path
    m, _, _ = merge_batch(on, [6, 4, 6], [5, 5, 2])                   # steps averaging several rows
    assert (np.count_nonzero(m, axis=2) > 1).any() and not m[1, 4:].any()
    cells = torch.randn(3, 6, 11, dtype=torch.float64, requires_grad=True)   # the 6 teacher rows
    weight = torch.randn(3, m.shape[1], 11, dtype=torch.float64)
    got = merge_rows(m, cells)
    grad, = torch.autograd.grad((got * weight).sum(), cells)
    want = torch.bmm(torch.from_numpy(m), cells)
    want_grad, = torch.autograd.grad((want * weight).sum(), cells)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, want_grad, rtol=1e-12, atol=1e-12)


class RandomMerge:
    """A merge of random cells (steps averaging several rows) over content rows of [B, L, V] logits:
    ``m`` [B, G, W], the content rows' flat indices ``rows_of`` [B, W], the merge entries (``steps``,
    ``rows`` into the flat logits, ``weight``), and ``dense(logits)`` = `merge_rows` as [B * G, V]."""

    def __init__(self, rng, L: int = 9, V: int = 13, density: float = 0.3):
        from ctkd_methods._cdm_steps import merge_entries
        on = rng.random((3, 6, 5)) < density
        on[:, np.arange(5), np.arange(5)] = True
        with np.errstate(invalid="ignore"):
            m, _, _ = merge_batch(on, [6, 4, 6], [5, 5, 2])
        self.m = np.nan_to_num(m)         # (random cells, not a DTW path: a row's groups may be empty)
        self.B, self.G, self.W = self.m.shape
        self.L, self.V = L, V
        self.rows_of = torch.from_numpy(rng.integers(0, L, (self.B, self.W))) + torch.arange(self.B)[:, None] * L
        self.steps, cells, self.weight = (torch.from_numpy(a) for a in merge_entries(self.m))
        self.rows = self.rows_of.reshape(-1)[cells]

    def dense(self, logits: torch.Tensor) -> torch.Tensor:
        from ctkd_methods._cdm_steps import merge_rows
        cells = logits.flatten(0, 1)[self.rows_of.reshape(-1)].view(self.B, self.W, self.V)
        return merge_rows(self.m, cells).view(self.B * self.G, self.V)


def paths_to_try(monkeypatch):
    """Yields "1" (the C kernels, when there is a compiler) and "0" (the torch path), with
    CTKD_NATIVE set accordingly."""
    from ctkd_bench import native
    from ctkd_methods import _cdm_steps
    for switch in ("1", "0"):
        monkeypatch.setenv("CTKD_NATIVE", switch)
        if switch == "1" and native.library("cdm_merged_read", _cdm_steps.READ_KERNEL,
                                            _cdm_steps.READ_SIGNATURES) is None:
            continue                                                # no compiler: the torch path only
        yield switch


def test_merged_values_and_rows_equal_merge_rows_then_a_gather():
    from ctkd_methods._cdm_steps import merged_rows_at, merged_values
    rng = np.random.default_rng(6)
    merge = RandomMerge(rng)
    logits = torch.randn(merge.B, merge.L, merge.V)
    dense = merge.dense(logits)
    n_steps = merge.B * merge.G
    ids = torch.from_numpy(rng.integers(0, merge.V, (n_steps, 4)))
    got = merged_values(logits.flatten(0, 1), merge.steps, merge.rows, merge.weight, ids)
    assert torch.equal(got, dense.gather(1, ids))                   # same products, same order
    which = torch.tensor([5, 0, 3])
    assert torch.equal(merged_rows_at(logits.flatten(0, 1), merge.steps, merge.rows, merge.weight, which,
                                      n_steps), dense[which])
    padded = torch.from_numpy(np.flatnonzero(~merge.m.reshape(n_steps, merge.W).any(1)))
    assert padded.numel() and (got[padded] == 0).all()


@pytest.mark.parametrize("drop_zero", [False, True])
def test_read_merged_native_and_torch_paths_equal_a_gather_of_the_merged_rows(monkeypatch, drop_zero):
    from ctkd_methods._cdm_steps import read_merged
    rng = np.random.default_rng(8)
    merge = RandomMerge(rng, density=0.4)
    logits = torch.randn(merge.B, merge.L, merge.V + 3)[..., :merge.V]   # a sliced vocabulary: rows 16 apart
    ids = torch.from_numpy(rng.integers(-1, merge.V, (merge.B * merge.G, 6)))
    off = (ids < 0) | (ids == 0) if drop_zero else ids < 0
    want = merge.dense(logits).gather(1, ids.clamp(min=0)).masked_fill(off, -1e4)
    tried = []
    for switch in paths_to_try(monkeypatch):
        values, live = read_merged(logits.flatten(0, 1), merge.steps, merge.rows, merge.weight, ids, drop_zero, -1e4)
        assert torch.equal(values, want) and torch.equal(live, ids.masked_fill(off, -1))
        tried.append(switch)
        with pytest.raises(IndexError, match="vocabulary size"):      # an id past the vocabulary
            read_merged(logits.flatten(0, 1), merge.steps, merge.rows, merge.weight, ids + merge.V, drop_zero, -1e4)
    assert "0" in tried


def test_merged_read_gradient_native_and_torch_equal_autograd_through_the_merge(monkeypatch):
    from ctkd_methods._cdm_steps import MergedRead
    rng = np.random.default_rng(9)
    merge = RandomMerge(rng, density=0.4)
    logits = torch.randn(merge.B, merge.L, merge.V, requires_grad=True)
    ids = torch.from_numpy(rng.integers(-1, merge.V, (merge.B * merge.G, 6)))
    upstream = torch.randn(merge.B * merge.G, 6)
    # autograd through the dense merge and a gather (masked slots carry no gradient)
    read = merge.dense(logits).gather(1, ids.clamp(min=0))
    want, = torch.autograd.grad((read * upstream * (ids >= 0)).sum(), logits)
    grads = {}
    for switch in paths_to_try(monkeypatch):
        out = MergedRead.apply(logits, torch.zeros(ids.shape), merge.steps, merge.rows, merge.weight, ids)
        grads[switch], = torch.autograd.grad((out * upstream).sum(), logits)
        torch.testing.assert_close(grads[switch], want, rtol=1e-6, atol=1e-6)
    assert "0" in grads
    if "1" in grads:
        assert torch.equal(grads["1"], grads["0"])                  # same products, same order


# -- KD: a per-step loop over the official semantics --------------------------------------------------
def reference_kd(z_s, z_t, valid, tables, k, T, fix_swapped_roles, fix_candidate_filter, fix_mask_leak,
                 fix_distance):
    keep_zero = fix_mask_leak
    t2s, s2t = tables["tea2stu"].tolist(), tables["stu2tea"].tolist()
    near = {"t2s": tables["near_t2s"].tolist(), "s2t": tables["near_s2t"].tolist()}

    def allowed(top, source_exact):
        return {c for c in top if c >= 0 and (keep_zero or c != 0)
                and (fix_candidate_filter or not (c < len(source_exact) and source_exact[c] < 0))}

    def direction(tops, pools, exact, lists, source_exact):
        mapper = {}
        for top, pool in zip(tops, pools):
            cands = allowed(pool, source_exact)
            for x in top:
                if exact[x] < 0:
                    hit = next((c for c in lists[x] if c >= 0 and c in cands), None)
                    if hit is not None:
                        mapper[x] = hit
        out = [[exact[x] if exact[x] >= 0 else mapper.get(x, -1) for x in top] for top in tops]
        return [[-1 if (m == 0 and not keep_zero) else m for m in row] for row in out]

    def value(z, i):
        return torch.tensor(-1e4) if i < 0 or (i == 0 and not keep_zero) else z[i]

    terms, mapped, steps = [], 0, 0
    for b in range(z_s.shape[0]):
        gs = [g for g in range(z_s.shape[1]) if valid[b, g]]
        top_t = [z_t[b, g].topk(k).indices.tolist() for g in gs]
        top_s = [z_s[b, g].detach().topk(k).indices.tolist() for g in gs]
        stu_of_t = direction(top_t, top_s, t2s, near["t2s"], t2s)
        t_masked = [[x if m >= 0 else -1 for x, m in zip(tr, mr)] for tr, mr in zip(top_t, stu_of_t)]
        tea_of_s = direction(top_s, top_t if fix_mask_leak else t_masked, s2t, near["s2t"], s2t)
        for i, g in enumerate(gs):
            zs, zt = z_s[b, g], z_t[b, g]
            t1 = torch.stack([value(zt, x) for x in t_masked[i]])
            s1 = torch.stack([value(zs, m) for m in stu_of_t[i]])
            s2 = torch.stack([value(zs, x if m >= 0 else -1) for x, m in zip(top_s[i], tea_of_s[i])])
            t2 = torch.stack([value(zt, m) for m in tea_of_s[i]])
            y, x = (torch.cat([t1, t2]), torch.cat([s1, s2])) if fix_swapped_roles else \
                (torch.cat([t1, s2]), torch.cat([s1, t2]))
            if fix_distance:
                q = torch.softmax(y / T, -1)
                terms.append(T * T * (q * (torch.log_softmax(y / T, -1) - torch.log_softmax(x / T, -1))).sum())
            else:
                p = torch.softmax(y, -1)
                terms.append((p * (T * T * torch.log_softmax(y, -1) - torch.log_softmax(x / T, -1))).sum() / (2 * k))
            mapped += sum(m >= 0 for m in stu_of_t[i]) + sum(m >= 0 for m in tea_of_s[i])
            steps += 1
    return torch.stack(terms).sum() / steps, mapped / (2 * k * steps)


def random_tables(v_t, v_s, seed):
    rng = random.Random(seed)
    words = ["".join(rng.choice("abc") for _ in range(rng.randint(1, 4))) for _ in range(v_t + v_s)]
    t_str, s_str = words[:v_t], words[v_t:]
    s_str[0] = t_str[0]                            # an exact match onto id 0: the zero sentinel
    first = lambda tgt: {w: i for i, w in reversed(list(enumerate(tgt)))}
    ft, fs = first(s_str), first(t_str)
    tea2stu = torch.tensor([ft.get(w, -1) for w in t_str])
    stu2tea = torch.tensor([fs.get(w, -1) for w in s_str])
    near = lambda src, tgt, exact: cdm_vocab.near_candidates(src, tgt, torch.nonzero(exact < 0)[:, 0].tolist(),
                                                             0.5, specials=frozenset())
    return {"tea2stu": tea2stu, "stu2tea": stu2tea,
            "near_t2s": near(t_str, s_str, tea2stu), "near_s2t": near(s_str, t_str, stu2tea)}


@pytest.mark.parametrize("bits", list(itertools.product([False, True], repeat=4)))
def test_kd_loss_and_gradient_equal_the_per_step_reference(bits):
    flags = dict(zip(SWITCHES, bits))
    g = torch.Generator().manual_seed(sum(b << i for i, b in enumerate(bits)))
    tables = random_tables(40, 30, seed=5)
    z_t = torch.randn(3, 5, 40, generator=g)
    z_t[0, 1] = torch.round(z_t[0, 1])             # ties: the same ids as torch.topk
    z_s = torch.randn(3, 5, 30, generator=g, requires_grad=True)
    valid = torch.tensor([[True] * 5, [True] * 3 + [False] * 2, [True] + [False] * 4])
    kd, mapped = cdm_kd_loss(z_s, z_t, valid, tables, top_k=8, temperature=2.0, **flags)
    grad, = torch.autograd.grad(kd, z_s)
    want_kd, want_mapped = reference_kd(z_s, z_t, valid, tables, 8, 2.0, **flags)
    want_grad, = torch.autograd.grad(want_kd, z_s)
    assert kd.item() == pytest.approx(want_kd.item(), rel=1e-5, abs=1e-7)
    assert mapped.item() == pytest.approx(want_mapped)
    assert torch.allclose(grad, want_grad, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("ordered", [True, False])
def test_topk_ids_in_row_pieces_equal_one_call(monkeypatch, ordered):
    from ctkd_methods import _pieces
    g = torch.Generator().manual_seed(4)
    z = torch.randn(23, 50, generator=g)
    z[5] = torch.round(z[5])                       # a tie at the boundary inside a piece
    whole = topk_ids(z, 10, ordered=ordered)
    monkeypatch.setattr(_pieces, "PIECE_BYTES", 4 * 50 * 4)   # four rows per piece
    assert torch.equal(topk_ids(z, 10, ordered=ordered), whole)
