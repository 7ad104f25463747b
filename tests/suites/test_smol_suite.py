"""The `smol` suite and its GSM-Symbolic generator (reasoning-gym)."""
import copy
import random

import pytest
import yaml

from ctkd_bench.errors import ConfigError
from ctkd_bench.specs import builtin_suite_dir, parse_suite, resolve_suite


def test_smol_validates_offline(capsys):
    from ctkd_bench.cli import main
    with pytest.raises(SystemExit) as done:
        main(["validate", "smol"])
    assert done.value.code in (0, None)
    assert capsys.readouterr().out.startswith("smol: ok")
    suite = resolve_suite("smol")
    assert suite.track("math").generator == "gsm-symbolic" and suite.track("math").task == "math"
    assert suite.model("smollm2-135m-instruct").source == "pip-gguf"
    assert suite.tokenizer("gpt2").source == "realtok"


def test_generator_field_is_validated():
    data = yaml.safe_load((builtin_suite_dir() / "tiny.yaml").read_text())
    assert "generator" not in parse_suite(data).to_dict()["tracks"][0]   # tiny's hash is unchanged
    bad = copy.deepcopy(data)
    bad["tracks"]["math"]["generator"] = "gsm-symbolik"
    with pytest.raises(ConfigError, match=r"^tiny\.tracks\.math\.generator: .*did you mean 'gsm-symbolic'"):
        parse_suite(bad, where="tiny")
    bad["tracks"]["lm"]["generator"] = "gsm-symbolic"
    bad["tracks"]["math"].pop("generator")
    with pytest.raises(ConfigError, match=r"^tiny\.tracks\.lm\.generator: 'gsm-symbolic' generates 'math'"):
        parse_suite(bad, where="tiny")


@pytest.fixture
def gsm():
    pytest.importorskip("reasoning_gym")
    from ctkd_bench.data.tasks import gsm_symbolic
    return gsm_symbolic


def test_gsm_symbolic_examples_are_deterministic_and_well_formed(gsm):
    from ctkd_bench.data.tasks import split_examples
    from ctkd_bench.evaluate.metrics import answer_match
    sizes = {"train": 30, "validation": 5, "test": 10}
    splits = split_examples("gsm-symbolic", sizes, seed=7)
    assert splits == split_examples("gsm-symbolic", sizes, seed=7)
    assert splits["test"] != split_examples("gsm-symbolic", sizes, seed=8)["test"]
    for ex in splits["train"] + splits["test"]:
        assert ex["prompt"].startswith("Question: ") and ex["prompt"].endswith("\nAnswer:")
        assert ex["response"].startswith(" ") and f"\n#### " in ex["response"]
        assert answer_match(ex["response"], ex["answer"]) == 1.0
        assert ex["template"].startswith("gsm-")


def test_gsm_symbolic_skips_a_template_that_raises(gsm, monkeypatch):
    real = gsm.templates()
    failures = []

    def broken(rng, difficulty):
        rng.random()
        failures.append(1)
        raise ValueError("needs more decimals")
    monkeypatch.setattr(gsm, "templates", lambda: ((999, broken),) + real[:2])
    draws = [gsm.sample(random.Random(s)) for s in range(12)]
    assert all(d["template"] in (f"gsm-{real[0][0]}", f"gsm-{real[1][0]}") for d in draws)
    assert failures        # the broken template was drawn, and skipped
    assert draws == [gsm.sample(random.Random(s)) for s in range(12)]
    monkeypatch.setattr(gsm, "templates", lambda: ((999, broken),))
    with pytest.raises(RuntimeError, match="template draws in a row failed"):
        gsm.sample(random.Random(0))
