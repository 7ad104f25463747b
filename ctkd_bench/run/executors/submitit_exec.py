"""``submitit``: the pending cells as one Slurm job array (or submitit's local executor).

Options (``--executor-opt key=value``): ``cluster`` (slurm | local | debug; default: Slurm when
``sbatch`` exists, else local), ``folder`` (submitit logs; default RUN_DIR/submitit), and any
submitit parameter, passed through: ``timeout_min``, ``gpus_per_node``, ``cpus_per_task``,
``mem_gb``, ``slurm_partition``, ``slurm_account``, ``slurm_qos``, ... ``--workers N`` caps how
many array tasks run at once (``slurm_array_parallelism``).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

from ...errors import UsageError
from ...specs import SuiteSpec
from .base import CellTask, Executor, RunOptions, failed_summary, run_cell_job

DEFAULT_TIMEOUT_MIN = 240


def import_or_explain(module: str, executor: str):
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UsageError(f"--executor {executor} needs the {module!r} package: "
                         f"pip install 'ctkd-bench[scale]'") from None


class SubmititExecutor(Executor):
    name = "submitit"
    summary = "a Slurm job array via submitit (cluster=local runs the array on this machine)"
    options = {"*": "any submitit/Slurm parameter", "cluster": "slurm | local | debug",
               "folder": "where submitit writes job logs", "poll_s": "seconds between status checks"}

    def _executor(self, run_dir: Path):
        submitit = import_or_explain("submitit", self.name)
        opts = dict(self.opts)
        folder = Path(opts.pop("folder", run_dir / "submitit" / "%j"))
        poll = float(opts.pop("poll_s", 2.0))
        ex = submitit.AutoExecutor(folder=folder, cluster=opts.pop("cluster", None))
        params = {"timeout_min": DEFAULT_TIMEOUT_MIN, "name": "ctkd-bench", **opts}
        if self.workers > 1:
            params.setdefault("slurm_array_parallelism", self.workers)
        try:
            ex.update_parameters(**params)
        except (AssertionError, ValueError, NameError, TypeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UsageError(f"--executor-opt: submitit rejected the parameters: {first}") from None
        return ex, poll

    def map(self, suite: SuiteSpec, run_dir: Path, tasks: list[CellTask],
            options: RunOptions) -> Iterator[dict]:
        ex, poll = self._executor(run_dir)
        n = len(tasks)
        jobs = ex.map_array(run_cell_job, [suite] * n, [str(run_dir)] * n, [t.track for t in tasks],
                            [t.method for t in tasks], [t.seed for t in tasks], [options] * n)
        pending = dict(zip(jobs, tasks))
        while pending:
            done = [job for job in pending if job.done()]
            for job in done:
                task = pending.pop(job)
                try:
                    yield job.result()
                except Exception as exc:  # the job died (timeout, preemption, OOM): the cell stays pending
                    yield failed_summary(task, exc)
            if pending and not done:
                time.sleep(poll)
