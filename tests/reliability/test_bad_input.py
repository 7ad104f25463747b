"""Bad input corpus: every malformed suite or method config is one line naming the field, exit 2,
no traceback, and `run` writes nothing (its --out folder is never created)."""
from __future__ import annotations

import os

import pytest
from click.testing import CliRunner

from ctkd_bench.cli import _add_builtin_commands, cli
from rel_suite import DELETE, suite_data, write_suite

_add_builtin_commands()

# (case id, dotted overrides of the valid suite, text the one error line must contain).
# The suite file is bad.yaml, so every field path starts with "bad.".
CASES = [
    ("missing-name", {"name": DELETE}, "bad.name: required field is missing"),
    ("missing-tokenizers", {"tokenizers": DELETE}, "bad.tokenizers: required field is missing"),
    ("missing-tracks", {"tracks": DELETE}, "bad.tracks: required field is missing"),
    ("missing-track-pair", {"tracks.lm.pair": DELETE}, "bad.tracks.lm.pair: required field is missing"),
    ("missing-pair-student", {"pairs.gpt2_to_llama.student": DELETE},
     "bad.pairs.gpt2_to_llama.student: required field is missing"),
    ("empty-models", {"models": {}}, "bad.models: expected a non-empty mapping"),
    ("track-not-mapping", {"tracks.lm": 5}, "bad.tracks.lm: expected a mapping"),
    ("name-wrong-type", {"name": 123}, "bad.name: 123 is not a valid name"),
    ("steps-wrong-type", {"budget.steps": "ten"}, "bad.budget.steps: expected int"),
    ("lr-wrong-type", {"budget.lr": "fast"}, "bad.budget.lr: expected float"),
    ("steps-bool", {"budget.steps": True}, "bad.budget.steps: expected int"),
    ("description-wrong-type", {"description": 5}, "bad.description: expected a string"),
    ("seeds-wrong-type", {"seeds": "0,1"}, "bad.seeds: expected a non-empty list"),
    ("seed-float", {"seed": 1.5}, "bad.seed: expected int"),
    ("unknown-top-key", {"budgte": {"steps": 3}}, "bad.budgte: unknown field (did you mean 'budget'?)"),
    ("unknown-budget-key", {"budget.step": 3}, "bad.budget.step: unknown field (did you mean 'steps'?)"),
    ("unknown-track-key", {"tracks.lm.trian": 3}, "bad.tracks.lm.trian: unknown field (did you mean 'train'?)"),
    ("unknown-model-key", {"models.student.hidden": 3}, "bad.models.student.hidden: unknown field"),
    ("negative-steps", {"budget.steps": -5}, "bad.budget.steps: must be >= 1"),
    ("absurd-steps", {"budget.steps": 10**12}, "bad.budget.steps: must be <= "),
    ("zero-examples-per-step", {"budget.examples_per_step": 0}, "bad.budget.examples_per_step: must be >= 1"),
    ("warmup-above-one", {"budget.warmup": 2.0}, "bad.budget.warmup: must be <= 1.0"),
    ("unknown-schedule", {"budget.schedule": "cosin"}, "bad.budget.schedule: 'cosin' is not one of"),
    ("negative-timeout", {"budget.cell_timeout_s": -1}, "bad.budget.cell_timeout_s: must be >= 0.0"),
    ("negative-hidden", {"models.student.hidden_size": -3}, "bad.models.student.hidden_size: must be >= 1"),
    ("teacher-train-zero-steps", {"models.teacher.train.steps": 0}, "bad.models.teacher.train.steps: must be >= 1"),
    ("tiny-vocab", {"tokenizers.bpe-t.vocab_size": 4}, "bad.tokenizers.bpe-t.vocab_size: must be >= 8"),
    ("empty-train-split", {"tracks.lm.train": 0}, "bad.tracks.lm.train: must be >= 1"),
    ("empty-test-split", {"tracks.lm.test": 0}, "bad.tracks.lm.test: must be >= 1"),
    ("negative-seed", {"seeds": [0, -1]}, "bad.seeds: expected a non-empty list of non-negative"),
    ("unknown-task", {"tracks.lm.task": "maths"}, "bad.tracks.lm.task: unknown task 'maths' (did you mean 'math'?)"),
    ("unknown-track-name", {"tracks.poetry": {"pair": "gpt2_to_llama"}}, "bad.tracks.poetry.task: unknown task"),
    ("unknown-pair", {"tracks.lm.pair": "gpt2_to_lama"}, "bad.tracks.lm.pair: unknown pair 'gpt2_to_lama'"),
    ("unknown-model", {"pairs.gpt2_to_llama.teacher": "teachr"},
     "bad.pairs.gpt2_to_llama.teacher: unknown model 'teachr' (did you mean 'teacher'?)"),
    ("unknown-tokenizer", {"models.student.tokenizer": "uni"}, "bad.models.student.tokenizer: unknown tokenizer"),
    ("unknown-source", {"models.student.source": "biuld"}, "bad.models.student.source: 'biuld' is not one of"),
    ("unknown-family", {"tokenizers.bpe-t.family": "bpee"}, "bad.tokenizers.bpe-t.family: 'bpee' is not one of"),
    ("unknown-arch", {"models.student.arch": "lama"}, "bad.models.student.arch: 'lama' is not one of"),
    ("suite-name-slash", {"name": "a/b"}, "bad.name: 'a/b' is not a valid name"),
    ("suite-name-dotdot", {"name": "x..y"}, "bad.name: 'x..y' is not a valid name"),
    ("track-name-backslash", {"tracks": {"l\\m": {"pair": "gpt2_to_llama", "task": "lm"}}},
     "bad.tracks: 'l\\\\m' is not a valid name"),
    ("model-name-dotdot", {"models": {"../m": {"tokenizer": "uni-s"}}}, "bad.models: '../m' is not a valid name"),
    ("tokenizer-name-slash", {"tokenizers.t/x": {"family": "bpe"}}, "bad.tokenizers: 't/x' is not a valid name"),
    ("pair-name-slash", {"pairs.p/q": {"teacher": "teacher", "student": "student"}},
     "bad.pairs: 'p/q' is not a valid name"),
    ("method-name-slash", {"methods": {"../sft": {}}}, "bad.methods: '../sft' is not a valid name"),
    ("method-unknown", {"methods": {"nosuch": {}}}, "methods.nosuch: config given for an unknown method 'nosuch'"),
    ("method-unknown-dym", {"methods": {"ulld": {}}}, "methods.ulld: config given for an unknown method 'ulld' "
                                                       "(did you mean 'uld'?)"),
    ("method-config-not-mapping", {"methods": {"sft": 3}}, "bad.methods.sft: expected a mapping"),
    ("method-unknown-key", {"methods": {"uld": {"distil_factr": 1.0}}},
     "methods.uld.distil_factr: unknown config field (did you mean 'distil_factor'?)"),
    ("method-wrong-type", {"methods": {"uld": {"student_temperature": "hot"}}},
     "methods.uld.student_temperature: expected a number"),
    ("method-wrong-type-optional", {"methods": {"uld": {"distil_factor": "x"}}},
     "methods.uld.distil_factor: expected a number"),
    ("method-bad-choice", {"methods": {"uld": {"reduction": "mine"}}}, "methods.uld.reduction"),
    ("profile-not-mapping", {"profiles": {"test": 3}}, None),  # only fails with --profile test: see below
]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_one_line(result, needle: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert "Traceback" not in result.output, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: ") and needle in lines[0], result.output


@pytest.mark.parametrize("case, overrides, needle", [c for c in CASES if c[2]], ids=[c[0] for c in CASES if c[2]])
def test_bad_suite_is_one_line_exit_2_and_writes_nothing(tmp_path, case, overrides, needle):
    path = write_suite(tmp_path / "bad.yaml", **overrides)
    assert_one_line(invoke("validate", path), needle)
    out = tmp_path / "out"
    assert_one_line(invoke("run", path, "--methods", "sft,uld", "--out", out), needle)
    assert not out.exists()


def test_bad_profile_names_the_profile(tmp_path):
    path = write_suite(tmp_path / "bad.yaml", profiles={"test": 3})
    assert_one_line(invoke("validate", path, "--profile", "test"), "bad.profiles.test: expected a mapping")
    path = write_suite(tmp_path / "bad.yaml", profiles={"test": {"budget": {"stpes": 2}}})
    assert_one_line(invoke("validate", path, "--profile", "test"),
                    "bad.budget.stpes: unknown field (did you mean 'steps'?)")


@pytest.mark.parametrize("text, needle", [
    ("name: [unclosed\n", "bad.yaml: not valid YAML (line 2)"),
    ("", "bad.yaml: the suite file is empty"),
    ("- a\n- b\n", "bad: expected a mapping, got list"),
    ("just a string\n", "bad: expected a mapping, got str"),
], ids=["yaml-syntax", "empty-file", "list-not-mapping", "scalar-not-mapping"])
def test_unparseable_suite_file(tmp_path, text, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    out = tmp_path / "out"
    assert_one_line(invoke("run", path, "--out", out), needle)
    assert not out.exists()


def test_unreadable_suite_file(tmp_path):
    out = tmp_path / "out"
    if os.geteuid() != 0:
        path = write_suite(tmp_path / "bad.yaml")
        path.chmod(0)
        assert_one_line(invoke("run", path, "--out", out), "cannot read suite file")
    # root reads anything: a folder named like a suite, and a dangling symlink, are unreadable for all
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    assert_one_line(invoke("run", folder, "--out", out), "cannot read suite file")
    link = tmp_path / "link.yaml"
    link.symlink_to(tmp_path / "gone.yaml")
    assert_one_line(invoke("validate", link), "does not exist")
    assert not out.exists()


@pytest.mark.parametrize("args, needle", [
    (["--methods", "sfft"], "unknown method 'sfft' (did you mean 'sft'?)"),
    (["--seeds", "0,-1"], "--seeds: expected non-negative integers"),
    (["--profile", "nope"], "profile 'nope' is not defined"),
], ids=["unknown-method", "negative-seed", "unknown-profile"])
def test_bad_run_options_write_nothing(tmp_path, args, needle):
    path = write_suite(tmp_path / "bad.yaml")
    out = tmp_path / "out"
    assert_one_line(invoke("run", path, "--out", out, *args), needle)
    assert not out.exists()
