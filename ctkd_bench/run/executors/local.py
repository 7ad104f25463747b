"""``local``: this machine. One worker runs cells in the runner's own process (the default,
no overhead); ``--workers N`` runs them in N spawned processes, one per GPU when there are GPUs."""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Iterator

from ...specs import SuiteSpec
from .base import CellTask, Executor, RunOptions, failed_summary, run_cell_job


def _start_worker(devices, workers: int) -> None:
    """Worker initializer: claim one GPU before torch initialises CUDA in this process; on CPU,
    cap the worker's memory at its share, so one cell outgrowing it fails alone (run/memory.py)."""
    try:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(devices.get_nowait())
    except Exception:  # more workers than GPUs (or none): share what is visible
        pass
    from ..memory import limit_memory
    limit_memory(workers)


def _gpu_count() -> int:
    import torch
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


class LocalExecutor(Executor):
    name = "local"
    summary = "this machine: in-process with 1 worker, else N processes (one per GPU when present)"
    options = {"gpus": "GPUs to spread workers over (default: all visible)"}

    @property
    def in_process(self) -> bool:
        return self.workers == 1

    def map(self, suite: SuiteSpec, run_dir: Path, tasks: list[CellTask],
            options: RunOptions) -> Iterator[dict]:
        # spawn, not fork: a forked child of a process that already ran torch threads can deadlock
        ctx = multiprocessing.get_context("spawn")
        devices = ctx.Queue()
        for i in range(int(self.opts.get("gpus", _gpu_count()))):
            devices.put(i)
        with ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_start_worker,
                                 initargs=(devices, self.workers)) as pool:
            futures = {pool.submit(run_cell_job, suite, str(run_dir), t.track, t.method, t.seed, options): t
                       for t in tasks}
            for future in as_completed(futures):
                try:
                    yield future.result()
                except Exception as exc:  # the worker process died: report, keep the others going
                    yield failed_summary(futures[future], exc)
