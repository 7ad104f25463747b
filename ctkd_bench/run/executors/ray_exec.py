"""``ray``: each pending cell is a Ray task with its own resource request.

Options (``--executor-opt key=value``): ``address`` (an existing cluster, e.g. ``auto``; default:
start a local one), ``cpus_per_cell`` (default 1), ``gpus_per_cell`` (default 0, or 1 when this
machine has a GPU). ``--workers N`` gives a locally started cluster N CPUs (at least
``cpus_per_cell``); on an existing cluster, Ray's scheduler decides how many cells run at once.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from ...specs import SuiteSpec
from .base import CellTask, Executor, RunOptions, failed_summary, run_cell_job
from .submitit_exec import import_or_explain


class RayExecutor(Executor):
    name = "ray"
    summary = "Ray tasks with per-cell CPU/GPU requests (a local cluster unless address= is given)"
    options = {"address": "Ray cluster address (default: start a local one)",
               "cpus_per_cell": "CPUs each cell requests (default 1)",
               "gpus_per_cell": "GPUs each cell requests (default: 1 if a GPU is visible, else 0)"}

    def _init(self, ray) -> bool:
        """Connect to (or start) Ray; True when this call started it (so it is ours to shut down)."""
        if ray.is_initialized():
            return False
        kwargs = {"ignore_reinit_error": True, "include_dashboard": False, "log_to_driver": True,
                  "configure_logging": False}
        if self.opts.get("address"):
            kwargs["address"] = str(self.opts["address"])
        else:
            kwargs["num_cpus"] = max(self.workers, int(self.opts.get("cpus_per_cell", 1)))
        ray.init(**kwargs)
        return True

    def map(self, suite: SuiteSpec, run_dir: Path, tasks: list[CellTask],
            options: RunOptions) -> Iterator[dict]:
        ray = import_or_explain("ray", self.name)
        import torch
        gpus = self.opts.get("gpus_per_cell", 1 if torch.cuda.is_available() else 0)
        started = self._init(ray)
        try:
            remote = ray.remote(num_cpus=float(self.opts.get("cpus_per_cell", 1)), num_gpus=float(gpus),
                                max_retries=0)(run_cell_job)
            refs = {remote.remote(suite, str(run_dir), t.track, t.method, t.seed, options): t for t in tasks}
            waiting = list(refs)
            while waiting:
                done, waiting = ray.wait(waiting, num_returns=1)
                try:
                    yield ray.get(done[0])
                except Exception as exc:  # a task's worker died: the cell stays pending
                    yield failed_summary(refs[done[0]], exc)
        finally:
            if started:
                ray.shutdown()
