"""The conformance kit: good methods pass, each broken method fails the check made for it."""
import json
import types

import pytest
import torch

import kit_methods as km
from ctkd_bench import hookimpl
from ctkd_bench.plugins import PluginManager
from plugin_dists import run_cli
from ctkd_bench.testing import CHECKS, ConformanceError, check_method, conformance_cases
from ctkd_bench.testing.harness import Harness
from ctkd_bench.testing.padding import roll_rows, to_left_padding
from ctkd_bench.testing.robustness import ONE_TOKEN_RESPONSE, ONE_TOKEN_TEXT
from ctkd_bench.align.spans import encode_with_spans
from ctkd_bench.toy import toy_pair

pytest_plugins = ["ctkd_bench.testing"]


def statuses(report):
    return {(r.family, r.check): r.status for r in report.results}


def test_good_method_passes_every_check_on_both_families(ctkd_check):
    report = ctkd_check(km.Good)
    ran = {check for _, check in statuses(report)}
    assert ran == set(CHECKS) and {f for f, _ in statuses(report)} == {"-", "causal", "encoder"}
    assert "extra modules: 2" in report.by_check("gradients", "causal")[0].message  # weight and bias
    overhead = report.by_check("overhead", "causal")[0]
    assert overhead.status == "info" and "vs SFT" in overhead.message


def test_views_are_built_from_examples_carrying_the_fake_generation():
    km.WithViews.seen_examples.clear()
    report = check_method(km.WithViews, only=["loss", "gradients", "padding_invariance"])
    assert report.ok, report.format()
    assert km.WithViews.seen_examples
    assert all(ex["generation"] == ex["response"] for ex in km.WithViews.seen_examples)


BROKEN = [
    # class, only these checks, failing check, words in the problem, words in the fix
    (km.BadCategory, ["registration"], "registration", "category 'distillation'", "attribute"),
    (km.NoDefault, ["registration"], "registration", "without arguments", "default"),
    (km.SetupReturnsDict, ["setup"], "setup", "returned dict", "nn.Module"),
    (km.AliasesTeacher, ["setup"], "setup", "shares memory with the teacher lm_head", ".clone()"),
    (km.UnusedModule, ["loss", "gradients"], "gradients", "no gradient reaches modules.weight", "setup()"),
    (km.VectorLoss, ["loss"], "loss", "shape [4]", "reduce"),
    (km.Detached, ["loss"], "loss", "not connected", "detach"),
    (km.Undeclared, ["needs"], "needs", "topk_logprobs", "Needs("),
    (km.NoStudentStates, ["loss"], "loss", "NoneType", "student_hidden_states=True"),
    (km.InPlace, ["teacher"], "teacher", "modified teacher.hidden_states[-1] in place", "out-of-place"),
    (km.PadSensitive, ["padding_invariance"], "padding_invariance", "right padding", "attention_mask"),
    (km.Nondeterministic, ["determinism"], "determinism", "under the same seed", "randomness"),
    (km.NanOnEmpty, ["empty_response", "all_empty_responses"], "all_empty_responses", "is nan", "clamp"),
]


@pytest.mark.parametrize("cls, only, failing, problem, fix", BROKEN, ids=[b[0].__name__ for b in BROKEN])
def test_each_broken_method_fails_its_check_and_says_what_to_fix(cls, only, failing, problem, fix):
    report = check_method(cls, only=only, tracks=["causal"], overhead=False)
    failed = {r.check for r in report.failures}
    assert failed == {failing}, report.format()
    result = report.failures[0]
    assert problem in result.message and fix in result.fix, report.format()
    with pytest.raises(ConformanceError, match="fix:"):
        report.assert_ok()


def test_declared_but_unread_signal_is_reported_not_failed():
    report = check_method(km.UnusedModule, only=["needs"], tracks=["causal"])
    (needs,) = report.by_check("needs")
    assert needs.status == "info" and "never read here: hidden_states" in needs.message


def test_exemption_skips_only_exemptable_checks():
    exempt = type("Exempt", (km.PadSensitive,), {"conformance_exempt": {
        "padding_invariance": "official code averages over padded positions", "loss": "not allowed"}})
    report = check_method(exempt, only=["loss", "padding_invariance"], tracks=["causal"])
    assert statuses(report)[("causal", "padding_invariance")] == "skip"
    assert "averages over padded" in report.by_check("padding_invariance")[0].message
    assert statuses(report)[("causal", "loss")] == "pass"


def test_roll_rows_moves_each_rows_padding_to_the_front():
    x = torch.tensor([[1, 2, 0, 0], [3, 4, 5, 6], [7, 0, 0, 0]])
    assert roll_rows(x, torch.tensor([2, 4, 1]), (1,)).tolist() == [[0, 0, 1, 2], [3, 4, 5, 6], [0, 0, 0, 7]]
    att = torch.arange(8.).view(2, 1, 2, 2)  # [B, H, L, L]: both position dims move
    rolled = roll_rows(att, torch.tensor([1, 2]), (2, 3))
    assert rolled[0, 0].tolist() == [[3., 2.], [1., 0.]] and torch.equal(rolled[1], att[1])


def test_relayout_keeps_real_positions_and_matches_left_collation():
    h = Harness(km.Good, km.Good.Config(), "instruct")
    try:
        examples = h.examples(3)
        step = h.step(examples)
        left = to_left_padding(step, h.batch(examples, "left"), torch.Generator().manual_seed(0))
        for b in range(3):
            r_mask = step.batch.student.attention_mask[b].bool()
            l_mask = left.batch.student.attention_mask[b].bool()
            assert torch.equal(step.student.logits[b][r_mask], left.student.logits[b][l_mask])
            assert not torch.equal(step.student.logits[b][~r_mask], left.student.logits[b][~l_mask]) \
                or not (~r_mask).any()
            t_r = step.batch.teacher.attention_mask[b].bool()
            t_l = left.batch.teacher.attention_mask[b].bool()
            assert torch.equal(step.teacher.hidden_states[-1][b][t_r], left.teacher.hidden_states[-1][b][t_l])
    finally:
        h.close()


def test_edge_case_texts_are_one_token():
    causal, encoder = toy_pair("instruct"), toy_pair("embed")
    for tok in (causal.student_tokenizer, causal.teacher_tokenizer):
        assert len(encode_with_spans(tok, ONE_TOKEN_RESPONSE)[0]) == 1
    assert len(encode_with_spans(encoder.student_tokenizer, ONE_TOKEN_TEXT)[0]) == 1


def test_conformance_cases_cover_each_check_of_each_family():
    cases = conformance_cases(km.Good)
    names = [str(c) for c in cases]
    assert "registration" in names and "causal-padding_invariance" in names and "encoder-empty_text" in names
    assert "encoder-empty_prompt" not in names and len(names) == len(set(names))
    bad = [c for c in conformance_cases(km.VectorLoss) if c.check == "loss" and c.family == "causal"][0]
    with pytest.raises(AssertionError, match="shape"):
        bad.run()


@pytest.fixture
def registry(monkeypatch):
    """The CLI sees a plugin manager holding the kit's test methods."""
    module = types.ModuleType("kit_plugin")
    module.ctkd_register_methods = hookimpl(lambda register: [register(c) for c in (km.Good, km.VectorLoss)])
    pm = PluginManager(load_entry_points=False)
    pm.add(module)
    monkeypatch.setattr("ctkd_bench.plugins.get_plugin_manager", lambda: pm)
    monkeypatch.setattr("ctkd_bench.testing.runner.get_plugin_manager", lambda: pm)
    return pm


def test_cli_check_exits_1_and_prints_what_to_fix(registry, capsys):
    code, out, _ = run_cli(capsys, "check", "kit-vectorloss", "--only", "loss", "--track", "causal")
    assert code == 1
    assert "FAIL  causal   loss" in out and "fix: reduce over positions" in out


def test_cli_check_config_overrides_and_json(registry, capsys):
    code, out, _ = run_cli(capsys, "check", "kit-good", "--only", "loss", "--track", "causal",
                           "--set", "weight=2.5", "--json")
    assert code == 0
    (report,) = json.loads(out)
    assert report["ok"] and [r["check"] for r in report["results"]] == ["setup", "loss"]
    code, _, err = run_cli(capsys, "check", "kit-good", "--set", "wieght=1")
    assert code == 2 and "unknown config field (did you mean 'weight'?)" in err
    code, _, err = run_cli(capsys, "check", "kit-good", "--only", "vibes")
    assert code == 2 and "unknown check(s) vibes" in err
    code, _, err = run_cli(capsys, "check", "kit-vectorloss", "--track", "math")
    assert code == 2 and "none matches --track math" in err  # it declares instruct and embed
