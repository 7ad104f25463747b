"""VocAgnoLM: pure pieces against hand values / loop brute force, and the plugin on the toy pair."""
from __future__ import annotations

import math

import pytest
import torch

from ctkd_bench.errors import ConfigError
from ctkd_bench.plugins import PluginInfo, validate_method_class
from ctkd_bench.toy import toy_batch, toy_forward, toy_pair
from ctkd_methods.vocagnolm import (VocAgnoLM, aggregate_over_ranges, batch_ranges, select_top,
                                    student_token_losses, teacher_guided_loss, teacher_token_losses)

# -- brute force ------------------------------------------------------------------------------------


def brute_loss(logits, labels, t_lp, t_mask, lo, hi, ratio, agg, score, scope, include_unmapped, normalize):
    """Loop-based restatement of the method description (no shared code with the module)."""
    B, S, _ = logits.shape
    entries = []  # (b, i, ce, mapped, score)
    for b in range(B):
        for i in range(1, S):
            if labels[b, i] == -100:
                continue
            ce = -torch.log_softmax(logits[b, i - 1].double(), -1)[labels[b, i]].item()
            vals = [-t_lp[b, j - 1].item() for j in range(lo[b, i], hi[b, i])
                    if j >= 1 and t_mask[b, j] and t_mask[b, j - 1]]
            if not vals:
                entries.append((b, i, ce, False, None))
                continue
            a = {"max": max, "min": min, "mean": lambda v: sum(v) / len(v)}[agg](vals)
            sc = ce - a if score == "difference" else ce / max(a, 1e-6)
            entries.append((b, i, ce, True, sc))
    groups = [entries] if scope == "batch" else [[e for e in entries if e[0] == b] for b in range(B)]
    kept = set()
    for g in groups:
        mapped = [e for e in g if e[3]]
        k = math.ceil(len(mapped) * ratio - 1e-9)
        ranked = sorted(mapped, key=lambda e: -e[4])  # sorted() is stable: earlier token wins ties
        kept |= {(e[0], e[1]) for e in ranked[:k]}
    if include_unmapped:
        kept |= {(e[0], e[1]) for e in entries if not e[3]}
    total = sum(e[2] for e in entries if (e[0], e[1]) in kept)
    denom = len(kept) if normalize == "selected" else len(entries)
    return total / max(denom, 1), kept


def random_case(seed, B=3, S=9, T=11, V=7, left=False):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, S, V, generator=g)
    labels = torch.randint(0, V, (B, S), generator=g)
    labels[:, :3] = -100
    t_lp = -torch.rand(B, T, generator=g) * 4
    t_mask = torch.ones(B, T, dtype=torch.long)
    t_mask[0, -2:] = 0
    if left:
        t_mask = t_mask.flip(-1)
    lo = torch.randint(0, T, (B, S), generator=g)
    hi = (lo + torch.randint(0, 4, (B, S), generator=g)).clamp_max(T)
    return logits, labels, t_lp, t_mask, lo, hi


# -- pure functions -------------------------------------------------------------------------------


def test_student_token_losses_sit_at_the_predicted_token():
    logits = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0], [0.0, 0.0]]])
    labels = torch.tensor([[-100, 1, 0]])
    got = student_token_losses(logits, labels)
    assert got[0, 0] == 0
    assert got[0, 1].item() == pytest.approx(math.log(2.0))      # row 0 predicts token 1
    assert got[0, 2].item() == pytest.approx(-math.log(3 / 4))   # row 1 predicts token 2


def test_teacher_token_losses_shift_and_validity_on_both_padding_sides():
    lp = torch.tensor([[-1.0, -2.0, -3.0, 0.0], [-9.0, -1.0, -2.0, -3.0]])
    mask = torch.tensor([[1, 1, 1, 1], [0, 1, 1, 1]])
    loss, valid = teacher_token_losses(lp, mask)
    assert loss[0].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert valid[0].tolist() == [False, True, True, True]
    assert valid[1].tolist() == [False, False, True, True]  # first real token has no prediction
    assert loss[1, 2:].tolist() == [1.0, 2.0]


def test_aggregate_over_ranges_by_hand():
    values = torch.tensor([[5.0, 1.0, 3.0, 2.0]])
    valid = torch.tensor([[False, True, True, True]])
    lo, hi = torch.tensor([[0, 1, 2, 0]]), torch.tensor([[2, 4, 2, 1]])
    for how, want in (("max", [1.0, 3.0, 0.0, 0.0]), ("min", [1.0, 1.0, 0.0, 0.0]),
                      ("mean", [1.0, 2.0, 0.0, 0.0])):
        agg, mapped = aggregate_over_ranges(values, valid, lo, hi, how)
        assert agg[0].tolist() == pytest.approx(want)
        assert mapped[0].tolist() == [True, True, False, False]  # empty range; only an invalid entry


@pytest.mark.parametrize("scope", ["batch", "sequence"])
@pytest.mark.parametrize("ratio", [0.4, 0.5, 1.0])
def test_select_top_fraction_and_ties(scope, ratio):
    score = torch.tensor([[1.0, 3.0, 3.0, 0.0, 2.0], [5.0, 5.0, 1.0, 0.0, 4.0]])
    cand = torch.tensor([[True, True, True, False, True], [True, True, False, True, True]])
    kept = select_top(score, cand, ratio, scope)
    assert not (kept & ~cand).any()
    if scope == "batch":
        assert kept.sum() == math.ceil(cand.sum().item() * ratio)
    else:
        assert kept.sum(-1).tolist() == [math.ceil(n * ratio) for n in cand.sum(-1).tolist()]
    if scope == "sequence" and ratio == 0.4:   # 4 candidates per row -> 2 kept
        assert kept[0].tolist() == [False, True, True, False, False]
        assert kept[1].tolist() == [True, True, False, False, False]
    if scope == "batch" and ratio == 0.4:      # 8 candidates -> 4: 5, 5, 4, then the earlier of the two 3.0s
        assert kept.nonzero().tolist() == [[0, 1], [1, 0], [1, 1], [1, 4]]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("opts", [
    dict(agg="max", score="difference", scope="batch", include_unmapped=True, normalize="selected"),
    dict(agg="mean", score="ratio", scope="sequence", include_unmapped=False, normalize="all"),
    dict(agg="min", score="difference", scope="sequence", include_unmapped=True, normalize="all"),
])
def test_teacher_guided_loss_matches_brute_force(seed, opts):
    logits, labels, t_lp, t_mask, lo, hi = random_case(seed, left=seed == 1)
    got = teacher_guided_loss(logits, labels, t_lp, t_mask, lo, hi, top_ratio=0.4, aggregation=opts["agg"],
                              score=opts["score"], scope=opts["scope"],
                              include_unmapped=opts["include_unmapped"], normalize=opts["normalize"])
    want, kept = brute_loss(logits, labels, t_lp, t_mask, lo, hi, 0.4, opts["agg"], opts["score"],
                            opts["scope"], opts["include_unmapped"], opts["normalize"])
    assert got["loss"].item() == pytest.approx(want, rel=1e-5)
    assert {tuple(x) for x in got["kept"].nonzero().tolist()} == kept


def test_full_ratio_without_unmapped_is_plain_ce():
    logits, labels, t_lp, t_mask, _, _ = random_case(7)
    lo = torch.full(labels.shape, 2)
    hi = torch.full(labels.shape, 5)  # every token mapped to valid teacher tokens
    got = teacher_guided_loss(logits, labels, t_lp, t_mask, lo, hi, top_ratio=1.0)["loss"]
    want = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 7), labels[:, 1:].reshape(-1))
    assert got.item() == pytest.approx(want.item(), rel=1e-6)


def test_single_target_token_is_trained():
    logits = torch.zeros(1, 3, 4)
    labels = torch.tensor([[-100, -100, 2]])
    lo, hi = torch.tensor([[0, 0, 1]]), torch.tensor([[0, 0, 2]])
    out = teacher_guided_loss(logits, labels, torch.full((1, 2), -1.0), torch.ones(1, 2), lo, hi)
    assert out["kept"].tolist() == [[False, False, True]]
    assert out["loss"].item() == pytest.approx(math.log(4))


def test_batch_ranges_agrees_with_overlap_scan():
    s = torch.tensor([[[0, 0], [0, 3], [3, 4], [4, 9], [9, 9]]])
    t = torch.tensor([[[0, 0], [0, 2], [2, 5], [5, 6], [6, 9], [9, 9]]])
    lo, hi = batch_ranges(s, t)
    assert lo.tolist() == [[0, 1, 2, 2, 0]] and hi.tolist() == [[0, 3, 3, 5, 0]]


# -- the plugin on the toy pair ---------------------------------------------------------------------


def _to_left(x, lengths, width):
    """Move each row's first `n` entries (right padded) to the end of the row (left padded)."""
    out = torch.zeros_like(x)
    for b, n in enumerate(lengths):
        out[b, width - n:] = x[b, :n]
    return out


def test_plugin_contract():
    validate_method_class(VocAgnoLM, PluginInfo("vocagnolm", "ctkd-bench", "0", "ctkd_methods.vocagnolm"))
    assert VocAgnoLM.category == "text alignment"
    assert VocAgnoLM.tracks == ("lm", "math", "instruct")
    with pytest.raises(ConfigError):
        VocAgnoLM.make_config({"aggregation": "median"})


@pytest.mark.parametrize("n", [1, 4])
def test_plugin_loss_is_padding_invariant_and_trains_only_the_student(n):
    pair = toy_pair("instruct")
    method = VocAgnoLM()
    right = toy_batch(pair, n, padding_side="right")
    left = toy_batch(pair, n, padding_side="left")
    student, teacher = toy_forward(pair, method, right)
    out = method.loss(right, student, teacher)
    assert torch.isfinite(out["loss"]) and 0 < out["kept_fraction"] <= 1
    # the same tensors laid out left-padded give the same loss
    ls, lt = right.student.lengths.tolist(), right.teacher.lengths.tolist()
    Ws, Wt = left.student.input_ids.shape[1], left.teacher.input_ids.shape[1]
    lo, hi = batch_ranges(left.student.offsets, left.teacher.offsets)
    moved = teacher_guided_loss(_to_left(student.logits, ls, Ws), left.student.labels,
                                _to_left(teacher.token_logprobs, lt, Wt), left.teacher.attention_mask, lo, hi)
    assert moved["loss"].item() == pytest.approx(out["loss"].item(), rel=1e-5)
    out["loss"].backward()
    assert all(p.grad is None for p in pair.teacher.parameters())
    assert pair.student.get_output_embeddings().weight.grad.abs().sum() > 0
    pair.student.zero_grad(set_to_none=True)


def test_plugin_length_one_response():
    pair = toy_pair("instruct")
    method = VocAgnoLM()
    batch = toy_batch(pair, examples=[{"id": "x", "prompt": "Reverse: cat\nAnswer:", "response": "x"}])
    student, teacher = toy_forward(pair, method, batch)
    out = method.loss(batch, student, teacher)
    assert torch.isfinite(out["loss"]) and out["kept_fraction"] > 0
    pair.student.zero_grad(set_to_none=True)
