"""ULD: the pure loss against a loop-based re-derivation of the official code, and end to end."""
import math
import random

import pytest
import torch

from ctkd_bench.plugins import get_plugin_manager
from ctkd_bench.toy import toy_batch, toy_forward, toy_pair
from ctkd_methods.uld import ULD, response_rows, uld_loss

IGN = -100


# -- a brute-force reference: the official llm-recipes semantics, written with loops ----------------
def official_window(label_row):
    """(answer_index, answer_size) as llm-recipes derives them: leading -100 run length - 1."""
    size = sum(1 for v in label_row if v != IGN)
    run = 0
    while run < len(label_row) and label_row[run] == IGN:
        run += 1
    return (run - 1 if run > 0 else 0), size


def softmax(row):
    m = max(row)
    e = [math.exp(v - m) for v in row]
    return [v / sum(e) for v in e]


def brute_uld(s_logits, t_logits, s_labels, t_labels, skip_s=True, skip_t=False, reduction="official"):
    per_row, total, pairs, n_student = [], 0.0, 0, 0
    for b in range(len(s_logits)):
        s_start, s_size = official_window(s_labels[b])
        t_start, t_size = official_window(t_labels[b])
        n_student += s_size - (1 if s_labels[b][0] != IGN else 0)
        k = min(s_size - skip_s, t_size - skip_t)
        dists = []
        for i in range(k):
            p = sorted(softmax(s_logits[b][s_start + i]), reverse=True)
            q = sorted(softmax(t_logits[b][t_start + i]), reverse=True)
            width = max(len(p), len(q))
            p, q = p + [0.0] * (width - len(p)), q + [0.0] * (width - len(q))
            dists.append(sum(abs(x - y) for x, y in zip(p, q)))
        if k > 0:
            per_row.append(sum(dists) / k)
        total += sum(dists)
        pairs += max(k, 0)
    if reduction == "official":
        return sum(per_row) / max(len(per_row), 1)
    if reduction == "dskd":
        return total / n_student
    return total / pairs


def random_labels(rng, length, prompt, answer, side):
    """A label row: BOS + prompt (-100), answer tokens (ids), padding (-100) on `side`."""
    body = [IGN] * (1 + prompt) + [rng.randrange(5) for _ in range(answer)]
    pad = [IGN] * (length - len(body))
    return pad + body if side == "left" else body + pad


def random_case(seed, side, batch=3, v_s=5, v_t=7, answers=None):
    rng = random.Random(seed)
    answers = answers or [rng.randint(1, 4) for _ in range(batch)]
    prompts = [rng.randint(0, 3) for _ in answers]
    ls = max(1 + p + a for p, a in zip(prompts, answers)) + rng.randint(0, 2)
    lt = ls + 2
    t_answers = [a + rng.randint(-1, 2) for a in answers]
    t_answers = [max(1, a) for a in t_answers]
    s_labels = torch.tensor([random_labels(rng, ls, p, a, side) for p, a in zip(prompts, answers)])
    t_labels = torch.tensor([random_labels(rng, lt, p + 1, a, side) for p, a in zip(prompts, t_answers)])
    g = torch.Generator().manual_seed(seed)
    s_logits = torch.randn(len(answers), ls, v_s, generator=g, dtype=torch.float64) * 2
    t_logits = torch.randn(len(answers), lt, v_t, generator=g, dtype=torch.float64) * 2
    return s_logits, t_logits, s_labels, t_labels


# -- the pure function ---------------------------------------------------------------------------
def test_response_rows_selects_rows_predicting_targets():
    labels = torch.tensor([[IGN, IGN, 7, 8, IGN], [IGN, IGN, IGN, IGN, 3]])
    rows, sizes = response_rows(labels)
    assert sizes.tolist() == [2, 1]
    assert rows[0, :2].tolist() == [1, 2]
    assert rows[1, :1].tolist() == [3]


def test_hand_computed_single_pair():
    # student window: one pair (answer of 2 tokens, EOS skipped); teacher: one answer token
    s_logits = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0], [5.0, 5.0]]])
    t_logits = torch.tensor([[[0.0, 0.0, 0.0], [9.0, 9.0, 9.0]]])
    s_labels = torch.tensor([[IGN, 4, 1]])        # row 0 predicts token 1, row 1 predicts EOS
    t_labels = torch.tensor([[IGN, 2]])
    value = uld_loss(s_logits, t_logits, s_labels, t_labels)
    # student row 0: [1/2, 1/2, 0]; teacher row 0: [1/3, 1/3, 1/3] -> |1/6|+|1/6|+|1/3|
    assert value.item() == pytest.approx(2 / 3)


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("reduction", ["official", "dskd", "cdm"])
@pytest.mark.parametrize("seed", range(4))
def test_matches_loop_reference(side, reduction, seed):
    s_logits, t_logits, s_labels, t_labels = random_case(seed, side)
    skip = reduction == "official"
    got = uld_loss(s_logits, t_logits, s_labels, t_labels, skip_student_eos=skip, reduction=reduction)
    want = brute_uld(s_logits.tolist(), t_logits.tolist(), s_labels.tolist(), t_labels.tolist(),
                     skip_s=skip, reduction=reduction)
    assert got.item() == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_length_one_responses_and_batch_of_one():
    s_logits, t_logits, s_labels, t_labels = random_case(11, "right", batch=1, answers=[1])
    # a one-token answer (just EOS) has no student pair after the EOS skip: nothing to compare
    assert uld_loss(s_logits, t_logits, s_labels, t_labels).item() == 0.0
    got = uld_loss(s_logits, t_logits, s_labels, t_labels, skip_student_eos=False)
    want = brute_uld(s_logits.tolist(), t_logits.tolist(), s_labels.tolist(), t_labels.tolist(), skip_s=False)
    assert got.item() == pytest.approx(want)


def test_rows_without_pairs_are_left_out_of_the_mean():
    s_logits, t_logits, s_labels, t_labels = random_case(3, "right", batch=2, answers=[1, 3])
    both = uld_loss(s_logits, t_logits, s_labels, t_labels)
    second = uld_loss(s_logits[1:], t_logits[1:], s_labels[1:], t_labels[1:])
    assert both.item() == pytest.approx(second.item())


def test_permuted_distribution_costs_nothing_and_distance_is_bounded():
    g = torch.Generator().manual_seed(0)
    s_logits = torch.randn(2, 6, 9, generator=g)
    perm = torch.randperm(9, generator=g)
    # teacher: same distributions, permuted vocabulary, plus 4 impossible extra tokens
    t_logits = torch.cat([s_logits[..., perm], torch.full((2, 6, 4), -1e4)], dim=-1)
    labels = torch.tensor([[IGN, IGN, 1, 2, 3, 4], [IGN, 5, 6, 7, IGN, IGN]])
    zero = uld_loss(s_logits, t_logits, labels, labels, skip_student_eos=False)
    assert zero.item() == pytest.approx(0.0, abs=1e-6)
    far = uld_loss(s_logits * 50, -t_logits * 0, labels, labels)
    assert 0.0 < far.item() <= 2.0


def test_gradient_reaches_student_logits_only():
    s_logits, t_logits, s_labels, t_labels = random_case(5, "left")
    s_logits.requires_grad_(True)
    t_logits.requires_grad_(True)
    uld_loss(s_logits, t_logits, s_labels, t_labels).backward()
    assert s_logits.grad is not None and s_logits.grad.abs().sum() > 0
    assert t_logits.grad is None


# -- the plugin ----------------------------------------------------------------------------------
def test_registered_with_survey_category():
    cls = get_plugin_manager().method("uld").cls
    assert cls is ULD
    assert cls.category == "probability-distribution alignment"
    assert cls.needs.teacher_signal_kinds() == ["logits"]


def test_reduction_presets_and_overrides():
    assert ULD.make_config().resolved() == (1.0, 1.5, True)
    assert ULD.make_config({"reduction": "dskd"}).resolved() == (0.5, 0.5, False)
    assert ULD.make_config({"reduction": "cdm", "distil_factor": 2}).resolved() == (0.5, 2.0, False)
    with pytest.raises(Exception, match="reduction"):
        ULD.make_config({"reduction": "sum"})


@pytest.mark.parametrize("side", ["right", "left"])
def test_end_to_end_on_toy_pair(side):
    pair = toy_pair("instruct")
    method = ULD()
    batch = toy_batch(pair, n=3, padding_side=side)
    pair.student.zero_grad(set_to_none=True)
    student, teacher = toy_forward(pair, method, batch)
    assert not teacher.logits.requires_grad
    out = method.loss(batch, student, teacher)
    term = uld_loss(student.logits, teacher.logits, batch.student.labels, batch.teacher.labels)
    assert out["loss"].item() == pytest.approx(student.ce.item() + 1.5 * term.item(), rel=1e-6)
    term.backward()
    grads = [p.grad for p in pair.student.parameters() if p.grad is not None]
    assert grads and sum(g.abs().sum() for g in grads) > 0
    assert all(p.grad is None for p in pair.teacher.parameters())


def to_left_padding(x, mask):
    """Move each row's real positions (mask) to the right end, keeping their order."""
    out = torch.zeros_like(x) if x.dtype != torch.long else torch.full_like(x, IGN)
    for b in range(x.shape[0]):
        n = int(mask[b].sum())
        out[b, x.shape[1] - n:] = x[b, :n]
    return out


def test_left_and_right_padding_give_the_same_loss():
    # GPT-2-style teachers change their logits under left padding (absolute positions), so
    # compare the same logits laid out both ways rather than two forward passes.
    pair = toy_pair("instruct")
    method = ULD()
    batch = toy_batch(pair, n=4, padding_side="right")
    with torch.no_grad():
        student, teacher = toy_forward(pair, method, batch)
    sm, tm = batch.student.attention_mask, batch.teacher.attention_mask
    right = uld_loss(student.logits, teacher.logits, batch.student.labels, batch.teacher.labels)
    left = uld_loss(to_left_padding(student.logits, sm), to_left_padding(teacher.logits, tm),
                    to_left_padding(batch.student.labels, sm), to_left_padding(batch.teacher.labels, tm))
    assert right.item() == pytest.approx(left.item(), rel=1e-6)


# -- the fast sort and the pair-only computation against torch.sort on padded rows ----------------
def test_sort_descending_values_and_gradient_equal_torch_sort():
    from ctkd_methods.uld import sort_descending
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 4, 37, generator=g) * 5
    x[0, 0, :5] = 0.0                                  # ties and signed zeros
    x[0, 1, 3] = -0.0
    x[1, 2, :4] = torch.tensor([float("inf"), -float("inf"), 1e-40, -1e-40])
    want = torch.sort(x, dim=-1, descending=True).values
    assert torch.equal(sort_descending(x), want)
    y = x[2].clone().requires_grad_(True)              # no ties: the gradient is determined
    w = torch.randn(4, 37, generator=g)
    (sort_descending(y) * w).sum().backward()
    ref = y.detach().clone().requires_grad_(True)
    (torch.sort(ref, dim=-1, descending=True).values * w).sum().backward()
    assert torch.equal(y.grad, ref.grad)
    x64 = x.double()                                   # other dtypes: torch.sort itself
    assert torch.equal(sort_descending(x64), torch.sort(x64, dim=-1, descending=True).values)


def padded_reference(s_logits, t_logits, s_labels, t_labels, skip_s, reduction):
    """The [B, W] computation over padded rows with torch.sort (the form before the pair-only one)."""
    from ctkd_bench.align.ot import sorted_w1
    from ctkd_methods.uld import at_least_fp32, gather_rows
    s_rows, n_s = response_rows(s_labels)
    t_rows, n_t = response_rows(t_labels)
    k = torch.minimum((n_s - int(skip_s)).clamp(min=0), n_t.clamp(min=0))
    width = int(k.max())
    p_s = torch.softmax(at_least_fp32(gather_rows(s_logits, s_rows[:, :width])), dim=-1)
    p_t = torch.softmax(at_least_fp32(gather_rows(t_logits, t_rows[:, :width])), dim=-1)
    is_pair = torch.arange(width) < k.unsqueeze(1)
    dist = sorted_w1(p_s, p_t) * is_pair
    if reduction == "dskd":
        return dist.sum() / n_s.sum().clamp(min=1)
    if reduction == "cdm":
        return dist.sum() / is_pair.sum().clamp(min=1)
    has_pairs = k > 0
    return (dist.sum(1) / k.clamp(min=1))[has_pairs].sum() / has_pairs.sum().clamp(min=1)


@pytest.mark.parametrize("reduction", ["official", "dskd", "cdm"])
@pytest.mark.parametrize("seed", range(3))
def test_float32_loss_equals_the_padded_torch_sort_form_exactly(reduction, seed):
    s_logits, t_logits, s_labels, t_labels = random_case(seed, "left", batch=4, v_s=40, v_t=57)
    s_logits, t_logits = s_logits.float().requires_grad_(True), t_logits.float()
    skip = reduction == "official"
    got = uld_loss(s_logits, t_logits, s_labels, t_labels, skip_student_eos=skip, reduction=reduction)
    want = padded_reference(s_logits, t_logits, s_labels, t_labels, skip, reduction)
    assert torch.equal(got, want)
    g_got, = torch.autograd.grad(got, s_logits)
    g_want, = torch.autograd.grad(want, s_logits)
    assert torch.allclose(g_got, g_want, rtol=0, atol=1e-7)
