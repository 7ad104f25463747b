"""Run the CLI in a child process that may be killed (SIGKILL) by the fault hook, and inspect
what it left on disk. Children are forked from the test process (no re-import of torch per run)."""
from __future__ import annotations

import json
import os
import signal
import sys
import traceback
from pathlib import Path

import pandas as pd

from ctkd_bench.results.store import RunStore

KILLED = -signal.SIGKILL


def run_cli(args: list[str], log: Path, env: dict[str, str] | None = None) -> int:
    """`ctkd-bench ARGS` in a forked child; its exit status, or -signal when it was killed."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 99
        try:
            import torch
            torch.set_num_threads(1)   # no OpenMP pool inherited across fork
            os.environ.update(env or {})
            from click.testing import CliRunner
            from ctkd_bench.cli import _add_builtin_commands, cli
            _add_builtin_commands()
            result = CliRunner().invoke(cli, [str(a) for a in args])
            text = result.output
            if result.exception is not None and not isinstance(result.exception, SystemExit):
                text += "".join(traceback.format_exception(result.exception))
            Path(log).write_text(text)
            code = result.exit_code
        except BaseException:
            Path(log).write_text(traceback.format_exc())
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def cell_files(out: Path) -> dict[str, tuple[int, bytes]]:
    """cell file name -> (mtime_ns, content) for every finished record."""
    folder = Path(out) / "cells"
    if not folder.is_dir():
        return {}
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.glob("*.json"))}


def assert_readable(out: Path) -> None:
    """Everything a reader could open right now parses: records, run info, results tables."""
    out = Path(out)
    store = RunStore(out)
    records = store.records()
    assert store.problems == [], store.problems
    for path in (out / "cells").glob("*"):
        assert path.suffix == ".json" or path.name.startswith("."), path   # else: a leftover temp file
    assert len({r.cell_id for r in records}) == len(records)
    if (out / "run.json").exists():
        assert json.loads((out / "run.json").read_text())["suite"]
    if (out / "results.parquet").exists():
        pd.read_parquet(out / "results.parquet")
    if (out / "results.csv").exists():
        pd.read_csv(out / "results.csv")
    for name in ("index.html", "leaderboard.md"):
        path = out / "report" / name
        if path.exists():
            assert path.read_text().strip()
