"""SpanKL: the loss against brute force, the alignment and the twin map by hand, the kit."""
from importlib import metadata

import pytest
import torch

from ctkd_bench import Side
from ctkd_bench.toy import toy_pair
from ctkd_spankl.align import aligned_predictions
from ctkd_spankl.loss import exact_match_kl
from ctkd_spankl.method import SpanKL
from ctkd_spankl.vocab import exact_match_map

pytest_plugins = ["ctkd_bench.testing"]


def brute_force_kl(student_logprobs, teacher_logprobs, student_ids):
    out = []
    for s_lp, t_lp, ids in zip(student_logprobs.tolist(), teacher_logprobs.tolist(), student_ids.tolist()):
        twins = [(lp, i) for lp, i in zip(t_lp, ids) if i >= 0]
        total = sum(torch.tensor(lp).exp().item() for lp, _ in twins)
        kl = 0.0
        for lp, i in twins:
            q = torch.tensor(lp).exp().item() / total
            kl += q * (torch.tensor(q).log().item() - s_lp[i])
        out.append(kl)
    return torch.tensor(out)


def test_exact_match_kl_matches_brute_force():
    gen = torch.Generator().manual_seed(0)
    student = torch.log_softmax(torch.randn(5, 11, generator=gen), -1)
    teacher = torch.log_softmax(torch.randn(5, 11, generator=gen), -1).topk(4).values
    ids = torch.tensor([[3, 7, -1, 0], [-1, -1, -1, -1], [10, 9, 8, 1], [-1, 2, -1, -1], [5, -1, 6, 4]])
    kl, has_twin = exact_match_kl(student, teacher, ids)
    assert has_twin.tolist() == [True, False, True, True, True]
    assert torch.allclose(kl, brute_force_kl(student, teacher, ids), atol=1e-6)
    assert kl[1] == 0 and (kl >= -1e-7).all()


def test_kl_vanishes_when_the_student_matches_the_renormalised_teacher():
    teacher = torch.log(torch.tensor([[0.5, 0.3, 0.2]]))
    ids = torch.tensor([[2, -1, 0]])                         # q = (0.5, 0.2) / 0.7 on ids 2 and 0
    student = torch.log(torch.tensor([[0.2 / 0.7, 1e-30, 0.5 / 0.7]]))
    kl, _ = exact_match_kl(student, teacher, ids)
    assert abs(kl.item()) < 1e-6


def side(spans, labels, padding_side="right", width=None):
    """A one-row-per-list Side from token spans and labels (ids are irrelevant here)."""
    width = width or max(len(s) for s in spans)
    B = len(spans)
    offsets = torch.zeros(B, width, 2, dtype=torch.long)
    lab = torch.full((B, width), -100)
    mask = torch.zeros(B, width, dtype=torch.long)
    for b, (sp, lb) in enumerate(zip(spans, labels)):
        sl = slice(0, len(sp)) if padding_side == "right" else slice(width - len(sp), width)
        offsets[b, sl] = torch.tensor(sp)
        lab[b, sl] = torch.tensor(lb)
        mask[b, sl] = 1
    return Side(torch.zeros(B, width, dtype=torch.long), mask, lab, offsets, [], padding_side)


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_aligned_predictions_pair_positions_with_the_same_prefix(padding_side):
    # text "ab cd": student [BOS, "ab", " cd", EOS], teacher [BOS, "a", "b", " cd", EOS];
    # row 1 is "x" with the prompt "x" (no targets but EOS).
    s = side([[(0, 0), (0, 2), (2, 5), (5, 5)], [(0, 0), (0, 1), (1, 1)]],
             [[-100, 1, 1, 1], [-100, -100, 1]], padding_side)
    t = side([[(0, 0), (0, 1), (1, 2), (2, 5), (5, 5)], [(0, 0), (0, 1), (1, 1)]],
             [[-100, 1, 1, 1, 1], [-100, -100, 1]], padding_side)
    rows, s_pos, t_pos = aligned_predictions(s, t)
    # left padding shifts row 1 by its padding: 4 - 3 = 1 (student) and 5 - 3 = 2 (teacher)
    s_pad, t_pad = (1, 2) if padding_side == "left" else (0, 0)
    expected = [(0, 0, 0), (0, 1, 2), (0, 2, 3), (1, 1 + s_pad, 1 + t_pad)]
    assert sorted(zip(rows.tolist(), s_pos.tolist(), t_pos.tolist())) == expected


def test_twin_map_on_the_toy_pair():
    pair = toy_pair("instruct")
    t_tok, s_tok = pair.teacher_tokenizer, pair.student_tokenizer
    twins = exact_match_map(t_tok, s_tok)
    assert len(twins) == len(t_tok)
    assert twins[t_tok.convert_tokens_to_ids("Ġdog")] == s_tok.convert_tokens_to_ids("▁dog")
    assert twins[t_tok.eos_token_id] == s_tok.eos_token_id
    assert twins[t_tok.bos_token_id] == -1 and twins[t_tok.pad_token_id] == -1
    mapped = twins[twins >= 0]
    assert len(mapped.unique()) == len(mapped)              # injective
    for tid in (twins >= 0).nonzero().flatten().tolist()[:50]:
        if tid != t_tok.eos_token_id:
            assert t_tok.decode([tid]).strip() == s_tok.decode([twins[tid].item()]).strip()


def test_spankl_passes_the_conformance_kit(ctkd_check):
    ctkd_check(SpanKL)


def test_registered_through_the_entry_point():
    try:
        dist = metadata.distribution("ctkd-spankl")
    except metadata.PackageNotFoundError:
        pytest.skip("ctkd-spankl is not installed (pip install -e plugins/examples/spankl)")
    eps = [ep for ep in dist.entry_points if ep.group == "ctkd_bench"]
    assert [(ep.name, ep.value) for ep in eps] == [("spankl", "ctkd_spankl.method")]
    from ctkd_bench.plugins import PluginManager
    assert PluginManager().method("spankl").cls.__name__ == "SpanKL"
