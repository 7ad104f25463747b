"""Each paper suite end to end on its `standin` profile: tiny random models of the papers'
architecture classes with real tokenizers, tiny jsonl data in the papers' column formats;
prepare -> teacher cache -> 2 training steps of SFT and the paper's method -> evaluation -> records."""
import json

import pytest

from ctkd_bench.plugins import get_plugin_manager
from ctkd_bench.run.runner import Runner
from ctkd_bench.specs import builtin_suite_dir, resolve_suite

pytestmark = pytest.mark.slow

# suite -> (the paper's own method, the stand-in model folders it uses)
SUITES = {
    "paper-dskd-qwen-gpt2": ("dskd", ("qwen2-qwen", "gpt2-gpt2")),
    "paper-dskd-mistral-tinyllama": ("dskd", ("mistral-mistral", "llama-unigram")),
    "paper-alm-math": ("alm", ("llama-deepseek", "gemma2-mistral")),
    "paper-vocagnolm-math": ("vocagnolm", ("qwen2-qwen", "llama-unigram")),
    "paper-emo": ("emo", ("mistral-mistral", "bert-bert")),
    "paper-multilevelot": ("multilevelot", ("qwen2-qwen", "opt-gpt2")),
}


def test_every_paper_suite_is_run_here():
    assert set(SUITES) == {p.stem for p in builtin_suite_dir().glob("paper-*.yaml")}


@pytest.fixture(scope="module")
def standin_dir(tmp_path_factory):
    from ctkd_bench.align.realtok import TokenizerUnavailable
    from ctkd_bench.testing.standin import build_standins

    names = tuple(sorted({m for _, models in SUITES.values() for m in models}))
    try:  # real tokenizers are built into the ambient $CTKD_CACHE (shared with the align tests)
        return build_standins(tmp_path_factory.mktemp("standin"), names)
    except TokenizerUnavailable as err:
        pytest.skip(str(err))


def _records(out):
    return {(r["track"], r["method"]): r for r in
            (json.loads(p.read_text()) for p in (out / "cells").glob("*.json"))}


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_paper_suite_runs_end_to_end_on_standins(suite, standin_dir, tmp_path, monkeypatch):
    method, _ = SUITES[suite]
    monkeypatch.setenv("CTKD_STANDIN_DIR", str(standin_dir))
    monkeypatch.setenv("CTKD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    spec = resolve_suite(suite, "standin")
    pm = get_plugin_manager()
    runner = Runner(spec, tmp_path / "run", [pm.method("sft"), pm.method(method)], [0], echo=lambda *a: None)
    runner.run()
    records = _records(tmp_path / "run")
    assert len(records) == 4 * len(spec.tracks)
    for track in spec.tracks:
        for role in ("teacher", "untrained", "sft", method):
            rec = records[(track.name, role)]
            assert rec["status"] == "ok", (track.name, role, rec["reason"])
            assert 0.0 <= rec["metrics"][rec["primary_metric"]] <= 1.0
        trained = records[(track.name, method)]
        assert trained["costs"]["steps"] == 2 and trained["costs"]["examples"] == 4
        if method != "emo":   # EMO reads attentions and hidden states, not token distributions
            assert trained["costs"]["teacher_tokens"] > 0
        if track.data.multi_test:   # DSKD's five sets: each scored, the headline is their mean
            names = [n for n, _ in track.data.test]
            assert names == ["dolly", "self-inst", "vicuna", "sinst", "uinst"]
            for rec in (records[(track.name, r)] for r in ("teacher", "sft", method)):
                m = rec["metrics"]
                assert {f"{k}/{n}" for k in ("rouge_l", "exact_match", "f1") for n in names} <= set(m)
                assert m["rouge_l"] == pytest.approx(sum(m[f"rouge_l/{n}"] for n in names) / len(names))
                assert set(rec["lm_eval"]["sets"]) == set(names)
    if suite == "paper-multilevelot":
        assert records[("fairytaleqa", "sft")]["primary_metric"] == "f1"
        assert records[("dialogsum", "sft")]["primary_metric"] == "rouge_l"
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["profile"] == "standin" and info["suite"] == suite
