"""What an executor is: something that runs a list of pending cells and reports back.

The runner prepares everything shared (tokenizers, trained teachers, teacher-signal
caches) in its own process, lists the cells still to run and hands them to an
executor. An executor that runs cells elsewhere calls `run_cell_job` there: it
rebuilds the environment from the on-disk caches and writes the cell's record
into the same run directory, so resume and reports never care where a cell ran.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import yaml

from ...errors import UsageError
from ...specs import SuiteSpec


@dataclass(frozen=True)
class CellTask:
    """One unit of work: a track's reference rows (method "") or one method cell."""
    track: str
    method: str = ""
    seed: int = 0

    @property
    def label(self) -> str:
        return f"{self.track}/{self.method}/s{self.seed}" if self.method else f"{self.track}/references"


@dataclass(frozen=True)
class RunOptions:
    """The run-level settings a worker needs besides the suite (all picklable)."""
    seeds: tuple[int, ...]
    retry_failed: bool = False
    cache_root: str = ""


def run_cell_job(suite: SuiteSpec, run_dir: str, track: str, method: str, seed: int,
                 options: RunOptions) -> dict:
    """Run one task in this process from the caches; write its record(s) into `run_dir`.

    Returns a summary the parent folds into its counts and timings:
    ``{"task", "counts", "timings", "lines"}``.
    """
    if options.cache_root:  # a worker on another machine/process must read the same caches
        os.environ["CTKD_CACHE"] = options.cache_root
    from ...plugins import get_plugin_manager
    from ..progress import quiet_libraries
    from ..runner import Runner
    quiet_libraries()
    lines: list[str] = []
    regs = [get_plugin_manager().method(method)] if method else []
    runner = Runner(suite, Path(run_dir), regs, list(options.seeds), retry_failed=options.retry_failed,
                    echo=lines.append)
    task = CellTask(track, method, seed)
    runner.run_task(task)
    return {"task": task.label, "counts": dict(runner.counts), "timings": dict(runner.timings), "lines": lines}


def parse_value(text: str) -> Any:
    """An option value as YAML reads it: 4 -> int, 0.5 -> float, true -> bool, else the string."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (int, float, bool, str)) and value is not None else text


class Executor:
    """Base class. Subclasses set `name`, `summary`, `options` and implement `map`."""
    name = ""
    summary = ""
    # option name -> help text; "*" means any further key is passed through (e.g. to Slurm)
    options: dict[str, str] = {}

    def __init__(self, workers: int = 1, **opts: Any):
        if workers < 1:
            raise UsageError(f"--workers: expected a positive integer, got {workers}")
        unknown = sorted(set(opts) - set(self.options)) if "*" not in self.options else []
        if unknown:
            from ...util import did_you_mean
            raise UsageError(f"--executor-opt {unknown[0]}: unknown option for executor {self.name!r}"
                             f"{did_you_mean(unknown[0], self.options)}; known: "
                             f"{', '.join(sorted(self.options)) or 'none'}")
        self.workers, self.opts = workers, dict(opts)

    @property
    def in_process(self) -> bool:
        """True when cells run inside the runner's own process (the runner then calls them directly)."""
        return False

    def map(self, suite: SuiteSpec, run_dir: Path, tasks: list[CellTask],
            options: RunOptions) -> Iterator[dict]:
        """Run every task (via `run_cell_job`) and yield each summary as it completes."""
        raise NotImplementedError


def failed_summary(task: CellTask, exc: BaseException) -> dict:
    """The summary of a task whose worker died before writing a record; the cell stays pending."""
    line = f"  {task.label}: worker failed ({type(exc).__name__}: {str(exc)[:300]}); it will run on resume"
    return {"task": task.label, "counts": {"failed": 1}, "timings": {}, "lines": [line]}
