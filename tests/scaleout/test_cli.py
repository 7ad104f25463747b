"""`ctkd-bench run` scale-out options: bad values are one line with exit code 2, before any work."""
import pytest
from click.testing import CliRunner

from ctkd_bench.cli import _add_builtin_commands, cli
from ctkd_bench.run.launch import launch_command, run_args

_add_builtin_commands()


@pytest.mark.parametrize("args, needle", [
    (["--executor", "rey"], "unknown executor 'rey'"),
    (["--executor", "ray", "--executor-opt", "gpus"], "expected KEY=VALUE"),
    (["--executor", "local", "--executor-opt", "partition=gpu"], "--executor-opt partition: unknown option"),
    (["--workers", "0"], "--workers"),
    (["--accelerate-config", "nope.yaml"], "no such file"),
    (["--accelerate-config", "suites/accelerate/ddp.yaml", "--workers", "2"], "local executor and 1 worker"),
])
def test_scaleout_usage_errors_exit_2_with_one_line(args, needle, tmp_path, monkeypatch):
    monkeypatch.delenv("CTKD_ACCELERATE", raising=False)
    result = CliRunner().invoke(cli, ["run", "tiny", "--profile", "test", "--out", str(tmp_path / "r"), *args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], result.output
    assert not (tmp_path / "r").exists()


def test_accelerate_config_relaunches_the_same_run_under_accelerate():
    args = run_args("tiny", dict(methods="sft", seeds=None, profile="test", out="runs/x", retry_failed=True,
                                 make_report=False))
    assert args == ["tiny", "--methods", "sft", "--profile", "test", "--out", "runs/x", "--retry-failed",
                    "--no-report"]
    cmd = launch_command("suites/accelerate/ddp.yaml", args)
    assert cmd[1:6] == ["-m", "accelerate.commands.launch", "--config_file", "suites/accelerate/ddp.yaml", "-m"]
    assert cmd[6:8] == ["ctkd_bench", "run"] and cmd[8:] == args
