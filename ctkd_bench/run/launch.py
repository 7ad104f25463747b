"""``ctkd-bench run ... --accelerate-config FILE``: the same command again, under
``accelerate launch --config_file FILE`` (DDP, FSDP or DeepSpeed inside each cell)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ..errors import UsageError


def launch_command(config: Path, run_args: list[str]) -> list[str]:
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
            "-m", "ctkd_bench", "run", *run_args]


def relaunch(config: Path, run_args: list[str]) -> int:
    """Run `ctkd-bench run RUN_ARGS` under accelerate; returns its exit status."""
    if not Path(config).is_file():
        raise UsageError(f"--accelerate-config: no such file {config}")
    env = dict(os.environ, CTKD_ACCELERATE="1")  # the launched ranks train through accelerate
    return subprocess.call(launch_command(config, run_args), env=env)


def run_args(suite: str, params: dict) -> list[str]:
    """The command-line arguments that reproduce a `run` invocation (minus --accelerate-config)."""
    args = [suite]
    for name in ("methods", "seeds", "profile", "out", "executor"):
        if params.get(name) is not None:
            args += [f"--{name}", str(params[name])]
    if params.get("retry_failed"):
        args.append("--retry-failed")
    if params.get("make_report") is False:
        args.append("--no-report")
    return args
