"""Suite specs: parsing, hashing, profiles and one-line errors naming the field."""
import copy

import pytest
import yaml

from ctkd_bench.errors import ConfigError
from ctkd_bench.specs import CellSpec, builtin_suite_dir, load_suite, parse_suite


@pytest.fixture
def tiny_data():
    return yaml.safe_load((builtin_suite_dir() / "tiny.yaml").read_text())


def test_tiny_parses_and_is_hashable(tiny_data):
    spec = parse_suite(tiny_data)
    assert spec.name == "tiny"
    assert {t.name for t in spec.tracks} == {"lm", "math", "instruct", "embed"}
    assert hash(spec) == hash(parse_suite(copy.deepcopy(tiny_data)))
    assert spec.hash == parse_suite(copy.deepcopy(tiny_data)).hash


def test_hash_changes_with_budget(tiny_data):
    other = copy.deepcopy(tiny_data)
    other["budget"]["steps"] += 1
    assert parse_suite(other).hash != parse_suite(tiny_data).hash


def test_track_steps_override_the_budget_for_that_track_only(tiny_data):
    tiny_data["tracks"]["lm"].pop("steps", None)
    base = parse_suite(tiny_data)
    tiny_data["tracks"]["lm"]["steps"] = base.budget.steps + 50
    spec = parse_suite(tiny_data)
    assert spec.budget_for("lm").steps == base.budget.steps + 50
    assert spec.budget_for("lm").lr == base.budget.lr
    assert spec.budget_for("embed") == spec.budget == base.budget
    assert spec.hash != base.hash
    tiny_data["tracks"]["lm"]["steps"] = 0            # 0: the budget's steps, hashed as if absent
    assert parse_suite(tiny_data).hash == base.hash


def test_track_noise_is_parsed_and_hashed_only_when_set(tiny_data):
    tiny_data["tracks"]["instruct"].pop("noise", None)
    base = parse_suite(tiny_data)
    assert base.track("instruct").noise == 0.0
    tiny_data["tracks"]["instruct"]["noise"] = 0.5
    noisy = parse_suite(tiny_data)
    assert noisy.track("instruct").noise == 0.5 and noisy.hash != base.hash
    tiny_data["tracks"]["instruct"]["noise"] = 0          # 0: no noise, hashed as if absent
    assert parse_suite(tiny_data).hash == base.hash


def test_profile_overrides_nested_fields(tiny_data):
    base = parse_suite(tiny_data)
    test = parse_suite(tiny_data, profile="test")
    assert test.budget.steps < base.budget.steps
    assert test.model("teacher-gpt2").train.steps < base.model("teacher-gpt2").train.steps
    assert test.model("teacher-gpt2").arch == "gpt2"  # untouched fields survive the merge
    assert test.hash != base.hash


def test_cell_id_is_stable_and_distinguishes_seeds():
    a = CellSpec("tiny", "h", "lm", "p", "uld", (("lam", 1.5),), 0)
    assert a.id == CellSpec("tiny", "h", "lm", "p", "uld", (("lam", 1.5),), 0).id
    assert a.id != CellSpec("tiny", "h", "lm", "p", "uld", (("lam", 1.5),), 1).id
    assert a.id != CellSpec("tiny", "h", "lm", "p", "uld", (("lam", 2.0),), 0).id


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d.pop("tracks"), "tiny.tracks"),
    (lambda d: d.update(bugdet={}), "tiny.bugdet"),
    (lambda d: d["budget"].update(steps=-3), "tiny.budget.steps"),
    (lambda d: d["budget"].update(steps="many"), "tiny.budget.steps"),
    (lambda d: d["budget"].update(lr=1e9), "tiny.budget.lr"),
    (lambda d: d["tracks"]["lm"].update(pair="nope"), "tiny.tracks.lm.pair"),
    (lambda d: d["tracks"]["lm"].update(task="poetry"), "tiny.tracks.lm.task"),
    (lambda d: d["tracks"]["math"].update(steps=-1), "tiny.tracks.math.steps"),
    (lambda d: d["tracks"]["math"].update(steps=2.5), "tiny.tracks.math.steps"),
    (lambda d: d["tracks"]["instruct"].update(noise=1.5), "tiny.tracks.instruct.noise"),
    (lambda d: d["tracks"]["instruct"].update(noise="half"), "tiny.tracks.instruct.noise"),
    (lambda d: d["tracks"]["math"].update(noise=0.5), "tiny.tracks.math.noise"),   # math cannot corrupt
    (lambda d: d["models"]["student-llama"].update(tokenizer="gone"), "tiny.models.student-llama.tokenizer"),
    (lambda d: d["models"]["student-llama"].update(source="ftp"), "tiny.models.student-llama.source"),
    (lambda d: d["pairs"]["gpt2-bpe_to_llama-unigram"].update(teacher="x"), "teacher"),
    (lambda d: d.update(name="../evil"), "tiny.name"),
    (lambda d: d.update(seeds=[]), "tiny.seeds"),
    (lambda d: d.update(seeds=[-1]), "tiny.seeds"),
    (lambda d: d["tokenizers"].update({"a/b": {"family": "bpe"}}), "tiny.tokenizers"),
])
def test_bad_suite_names_the_field(tiny_data, mutate, field):
    mutate(tiny_data)
    with pytest.raises(ConfigError) as err:
        parse_suite(tiny_data, where="tiny")
    assert field in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_key_suggests_a_fix(tiny_data):
    tiny_data["budget"]["stepz"] = 3
    with pytest.raises(ConfigError, match="did you mean 'steps'"):
        parse_suite(tiny_data, where="tiny")


def test_load_suite_reports_yaml_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_suite(bad)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="empty"):
        load_suite(empty)
    with pytest.raises(ConfigError, match="cannot read"):
        load_suite(tmp_path / "missing.yaml")


def test_yaml_is_loaded_safely(tmp_path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError):
        load_suite(evil)


def test_busy_machine_note_only_when_threads_would_fight():
    from ctkd_bench.cli.run import busy_machine_note
    assert "OMP_NUM_THREADS=1" in busy_machine_note({}, load=3.9, cores=2)
    assert busy_machine_note({}, load=0.4, cores=2) == ""
    assert busy_machine_note({"OMP_NUM_THREADS": "2"}, load=9.0, cores=2) == ""
    assert busy_machine_note({}, load=9.0, cores=1) == ""
