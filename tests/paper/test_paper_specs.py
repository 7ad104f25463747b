"""Paper suites: offline validation, the track `data` section, per-set metrics, token F1."""
import copy
import json
import re

import pytest
from click.testing import CliRunner

from ctkd_bench.cli import _add_builtin_commands, cli
from ctkd_bench.data.sources import load_track_data, parse_track_data
from ctkd_bench.errors import ConfigError
from ctkd_bench.evaluate.metrics import token_f1
from ctkd_bench.evaluate.sets import evaluate_sets
from ctkd_bench.specs import builtin_suite_dir, load_suite, parse_suite

_add_builtin_commands()
PAPER_SUITES = sorted(p.stem for p in builtin_suite_dir().glob("paper-*.yaml"))


def test_every_paper_named_in_the_brief_has_a_suite():
    assert {"paper-dskd-qwen-gpt2", "paper-dskd-mistral-tinyllama", "paper-alm-math", "paper-vocagnolm-math",
            "paper-emo", "paper-multilevelot"} <= set(PAPER_SUITES)


@pytest.fixture
def no_network(monkeypatch):
    """Validation must not load data or models: any attempt fails the test."""
    import datasets
    import transformers

    def refuse(*args, **kwargs):
        raise AssertionError("validate touched a dataset or model")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets, "load_dataset", refuse)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", refuse)


@pytest.mark.parametrize("suite", PAPER_SUITES)
def test_paper_suite_validates_offline(suite, no_network, monkeypatch, tmp_path):
    result = CliRunner().invoke(cli, ["validate", suite])
    assert result.exit_code == 0, result.output
    assert f"{suite}: ok" in result.output
    monkeypatch.setenv("CTKD_STANDIN_DIR", str(tmp_path))
    result = CliRunner().invoke(cli, ["validate", suite, "--profile", "standin"])
    assert result.exit_code == 0, result.output
    spec = load_suite(builtin_suite_dir() / f"{suite}.yaml", "standin")
    assert all(m.source == "local" and m.path.startswith(str(tmp_path)) for m in spec.models)
    assert all(src.source == "local" for t in spec.tracks for _, src in t.data.test)


def test_standin_profile_without_its_variable_names_the_field(monkeypatch):
    monkeypatch.delenv("CTKD_STANDIN_DIR", raising=False)
    result = CliRunner().invoke(cli, ["validate", "paper-emo", "--profile", "standin"])
    assert result.exit_code == 2
    assert result.output.strip().endswith("environment variable CTKD_STANDIN_DIR is not set")
    assert "models.teacher-llm2vec-banking77.path" in result.output and "Traceback" not in result.output


def test_dskd_suite_has_its_five_evaluation_sets_and_paper_budget():
    spec = load_suite(builtin_suite_dir() / "paper-dskd-qwen-gpt2.yaml")
    track = spec.track("dolly")
    assert [name for name, _ in track.data.test] == ["dolly", "self-inst", "vicuna", "sinst", "uinst"]
    assert track.task == "instruct" and track.test == 10000
    assert (spec.budget.lr, spec.budget.examples_per_step, spec.budget.max_length) == (5e-4, 32, 512)
    assert spec.model("teacher-qwen").path == "Qwen/Qwen1.5-1.8B"
    mot = load_suite(builtin_suite_dir() / "paper-multilevelot.yaml")
    assert mot.track("fairytaleqa").primary_metric == "f1"
    assert dict(mot.track("fairytaleqa").data.test)["test"].split == "test"     # the YAML merge key


# --------------------------------------------------------------------------- the `data` section
@pytest.fixture
def tiny_data():
    import yaml
    return yaml.safe_load((builtin_suite_dir() / "tiny.yaml").read_text())


def test_generated_tracks_hash_as_without_the_data_field(tiny_data):
    spec = parse_suite(copy.deepcopy(tiny_data))
    assert all("data" not in t for t in spec.to_dict()["tracks"])
    other = copy.deepcopy(tiny_data)
    other["tracks"]["instruct"]["data"] = {"train": {"source": "local", "path": "x"},
                                           "test": {"source": "local", "path": "x"}}
    assert parse_suite(other).hash != spec.hash
    assert hash(parse_suite(copy.deepcopy(other))) == hash(parse_suite(other))


@pytest.mark.parametrize("data, message", [
    ({"train": {"source": "hf", "path": "a"}}, "data.test: required field is missing"),
    ({"train": {"source": "web", "path": "a"}, "test": {"source": "hf", "path": "a"}},
     "data.train.source: 'web' is not one of hf, local"),
    ({"train": {"source": "hf", "path": "a", "feilds": {}}, "test": {"source": "hf", "path": "a"}},
     "data.train.feilds: unknown field (did you mean 'fields'?)"),
    ({"train": {"source": "hf"}, "test": {"source": "hf", "path": "a"}}, "data.train.path: required field"),
    ({"train": {"source": "hf", "path": "a"}, "test": {}}, "data.test: expected a source or a non-empty"),
    ({"train": {"source": "hf", "path": "a"}, "test": {"bad/name": {"source": "hf", "path": "a"}}},
     "not a valid evaluation-set name"),
])
def test_bad_data_sections_name_the_field(tiny_data, data, message):
    tiny_data["tracks"]["instruct"]["data"] = data
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_suite(tiny_data)


def test_primary_metric_must_be_one_of_the_tasks_metrics(tiny_data):
    tiny_data["tracks"]["instruct"]["primary_metric"] = "bleu"
    with pytest.raises(ConfigError, match=r"tracks.instruct.primary_metric: 'bleu' is not a metric of task"):
        parse_suite(tiny_data)
    tiny_data["tracks"]["instruct"]["primary_metric"] = "f1"
    assert parse_suite(tiny_data).track("instruct").primary_metric == "f1"


def _write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_local_jsonl_with_templates_caps_and_several_sets(tmp_path):
    _write(tmp_path / "d" / "train.jsonl", [{"q": f"q{i}", "a": f"a{i}"} for i in range(5)])
    _write(tmp_path / "s1" / "valid.jsonl", [{"q": "x", "a": "y"}] * 4)
    _write(tmp_path / "s2.jsonl", [{"q": "u", "a": "v"}])
    fields = {"prompt": "Q: {q} {{literal}}\nA:", "response": " {a}"}
    data = parse_track_data({
        "train": {"source": "local", "path": str(tmp_path / "d"), "fields": fields},
        "test": {"one": {"source": "local", "path": str(tmp_path / "s1"), "data_files": "valid.jsonl", "fields": fields},
                 "two": {"source": "local", "path": str(tmp_path / "s2.jsonl"), "fields": fields}}}, "t.data")
    splits, sets = load_track_data(data, "t", False, {"train": 3, "validation": 0, "test": 2}, "t.data")
    assert [e["prompt"] for e in splits["train"]] == ["Q: q0 {literal}\nA:", "Q: q1 {literal}\nA:",
                                                       "Q: q2 {literal}\nA:"]
    assert splits["train"][0]["response"] == " a0" and splits["train"][0]["id"] == "t-train-0"
    assert {k: len(v) for k, v in sets.items()} == {"one": 2, "two": 1}
    assert len(splits["test"]) == 3 and splits["validation"] == []
    assert sets["two"][0]["id"] == "t-two-0"


def test_local_encoder_labels_and_missing_columns(tmp_path):
    _write(tmp_path / "train.jsonl", [{"sentence": "good", "polarity": "pos"}, {"sentence": "bad", "polarity": "neg"}])
    src = {"source": "local", "path": str(tmp_path), "fields": {"text": "sentence", "label": "polarity"},
           "labels": ["neg", "pos"]}
    data = parse_track_data({"train": src, "test": src}, "t.data")
    splits, sets = load_track_data(data, "t", True, {"train": 9, "validation": 0, "test": 9}, "t.data")
    assert [(e["text"], e["label"]) for e in splits["train"]] == [("good", 1), ("bad", 0)] and sets == {}
    bad = parse_track_data({"train": dict(src, fields={"text": "{sentense}", "label": "polarity"}), "test": src}, "t.data")
    with pytest.raises(ConfigError, match=r"t.data.train.fields: column 'sentense' is not in the data"):
        load_track_data(bad, "t", True, {"train": 9, "validation": 0, "test": 9}, "t.data")
    with pytest.raises(ConfigError, match=r"t.data.train.fields.response: required"):
        load_track_data(data, "t", False, {"train": 9, "validation": 0, "test": 9}, "t.data")


def test_hub_source_offline_is_one_config_error(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'MiniLLM/dolly' on the Hub (LocalEntryNotFoundError)\nmore lines")
    monkeypatch.setattr(datasets, "load_dataset", offline)
    data = parse_track_data({"train": {"source": "hf", "path": "MiniLLM/dolly", "fields": {"response": "output"}},
                             "test": {"source": "hf", "path": "MiniLLM/dolly"}}, "s.tracks.dolly.data")
    with pytest.raises(ConfigError) as err:
        load_track_data(data, "dolly", False, {"train": 1, "validation": 0, "test": 1}, "s.tracks.dolly.data")
    text = str(err.value)
    assert text.startswith("s.tracks.dolly.data.train: cannot load hub dataset 'MiniLLM/dolly' (ConnectionError")
    assert "\n" not in text and "local:<folder>" in text


# --------------------------------------------------------------------------- metrics
def test_evaluate_sets_reports_each_set_and_the_unweighted_mean():
    scores = {"a": {"rouge_l": 0.2, "f1": 0.5}, "b": {"rouge_l": 0.6, "f1": 0.1}}
    calls = []

    def one(examples):
        calls.append(examples[0]["set"])
        return dict(scores[examples[0]["set"]]), {"task_hash": examples[0]["set"]}
    metrics, meta = evaluate_sets(one, {"a": [{"set": "a"}] * 3, "b": [{"set": "b"}]})
    assert calls == ["a", "b"]
    assert metrics["rouge_l"] == pytest.approx(0.4) and metrics["f1"] == pytest.approx(0.3)
    assert metrics["rouge_l/a"] == 0.2 and metrics["f1/b"] == 0.1
    assert meta == {"sets": {"a": {"task_hash": "a"}, "b": {"task_hash": "b"}}}


@pytest.mark.parametrize("pred, gold, expected", [
    ("The cat sat", "a cat sat down", 2 * (2 / 2) * (2 / 3) / (2 / 2 + 2 / 3)),   # articles dropped
    ("by the river!", "By the River", 1.0),
    ("river river", "river", 2 * 0.5 * 1.0 / 1.5),                              # bags, not sets
    ("", "", 1.0), ("x", "", 0.0), ("dog", "cat", 0.0),
])
def test_token_f1(pred, gold, expected):
    assert token_f1(pred, gold) == pytest.approx(expected)


def test_lmeval_env_info_is_collected_once_per_process():
    from ctkd_bench.evaluate import lmeval

    calls = []

    def original(storage):
        calls.append(1)
        storage["pretty_env_info"] = "env"
    lmeval._ENV_INFO.clear()
    wrapped = lmeval._memoised_env_info(original)
    first, second = {}, {}
    wrapped(first)
    wrapped(second)
    assert calls == [1] and first == second == {"pretty_env_info": "env"}
    lmeval._ENV_INFO.clear()


def test_data_from_shorthand_equals_the_explicit_fields():
    short = parse_track_data({"train": {"from": "hf:openai/gsm8k", "name": "main"},
                              "test": {"from": "local:/d/x.jsonl"}}, "t.data")
    explicit = parse_track_data({"train": {"source": "hf", "path": "openai/gsm8k", "name": "main"},
                                 "test": {"source": "local", "path": "/d/x.jsonl"}}, "t.data")
    assert short == explicit and not short.multi_test
    with pytest.raises(ConfigError, match=r"t.data.train.from: give either 'from' or 'source'/'path'"):
        parse_track_data({"train": {"from": "hf:a", "path": "b"}, "test": {"from": "hf:a"}}, "t.data")
    with pytest.raises(ConfigError, match=r"t.data.test.from: expected '<source>:<location>'"):
        parse_track_data({"train": {"from": "hf:a"}, "test": {"from": "gsm8k"}}, "t.data")


@pytest.mark.parametrize("task, stop, expected", [
    ("instruct", "", ["\n", "</s>"]), ("math", "", ["\n\n", "</s>"]),       # the defaults, as before `stop`
    ("instruct", "eos", ["</s>"]), ("instruct", "###", ["###", "</s>"]),
])
def test_generation_stop_strings(task, stop, expected):
    from ctkd_bench.evaluate.lmeval import _task_yaml, stop_strings

    assert stop_strings(task, stop, "</s>") == expected
    assert f"until: {json.dumps(expected)}" in _task_yaml(task, "t", "f.jsonl", 8, "</s>", stop)


def test_stop_is_hashed_only_when_set(tiny_data):
    base = parse_suite(copy.deepcopy(tiny_data))
    assert all("stop" not in t for t in base.to_dict()["tracks"])
    tiny_data["tracks"]["instruct"]["stop"] = "eos"
    spec = parse_suite(tiny_data)
    assert spec.track("instruct").stop == "eos" and spec.hash != base.hash
    assert load_suite(builtin_suite_dir() / "paper-dskd-qwen-gpt2.yaml").track("dolly").stop == "eos"


def test_lmeval_git_hash_outside_a_repository_is_asked_once_and_quietly(tmp_path, monkeypatch, capfd):
    from ctkd_bench.evaluate import lmeval

    monkeypatch.chdir(tmp_path)                       # not a git repository
    monkeypatch.setattr(lmeval, "_GIT", {})
    calls = []
    real_run = lmeval.subprocess.run
    monkeypatch.setattr(lmeval.subprocess, "run", lambda *a, **k: calls.append(a) or real_run(*a, **k))
    assert lmeval.quiet_git_hash() is None and lmeval.quiet_git_hash() is None
    assert len(calls) == 1
    assert "fatal" not in capfd.readouterr().err
