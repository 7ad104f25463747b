"""CLI: usage and config errors are one line on stderr with exit code 2, no traceback."""
import json

import pytest
from click.testing import CliRunner

from ctkd_bench.cli import _add_builtin_commands, cli

_add_builtin_commands()


def invoke(*args):
    return CliRunner().invoke(cli, list(args))


def test_methods_json_lists_sft_from_its_entry_point():
    result = invoke("methods", "--json")
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.output)}
    assert rows["sft"]["distribution"] == "ctkd-bench"
    for key in ("name", "category", "summary", "tracks", "needs", "distribution", "version"):
        assert key in rows["sft"]


@pytest.mark.parametrize("args, needle", [
    (["run", "no-such-suite"], "unknown suite 'no-such-suite'"),
    (["run", "tiny", "--methods", "sfft"], "did you mean 'sft'"),
    (["run", "tiny", "--seeds", "a,b"], "--seeds"),
    (["run", "tiny", "--profile", "huge"], "profile 'huge'"),
    (["validate", "missing.yaml"], "does not exist"),
])
def test_usage_errors_exit_2_with_one_line(args, needle):
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    lines = [l for l in result.output.splitlines() if l.strip()]
    assert len(lines) == 1 and needle in lines[0], result.output
    assert "Traceback" not in result.output


def test_bad_suite_file_names_the_field(tmp_path):
    suite = tmp_path / "mine.yaml"
    suite.write_text("name: mine\ntokenizers: {t: {family: bpe}}\nmodels: {m: {tokenizer: t}}\n"
                     "pairs: {p: {teacher: m, student: m}}\ntracks: {lm: {pair: p}}\nbudget: {steps: 0}\n")
    result = invoke("validate", str(suite))
    assert result.exit_code == 2
    assert "mine.budget.steps" in result.output


def test_bad_method_config_names_the_field(tmp_path):
    suite = tmp_path / "cfg.yaml"
    suite.write_text("name: cfg\ntokenizers: {t: {family: bpe}}\nmodels: {m: {tokenizer: t}}\n"
                     "pairs: {p: {teacher: m, student: m}}\ntracks: {lm: {pair: p}}\n"
                     "methods: {sft: {weight: 2}}\n")
    result = invoke("validate", str(suite))
    assert result.exit_code == 2
    assert "methods.sft.weight" in result.output
