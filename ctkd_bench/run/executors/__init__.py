"""Built-in executors (``local``, ``submitit``, ``ray``), registered through the same
``ctkd_register_executors`` hook a third-party plugin implements."""
from ...hookspecs import hookimpl
from .base import CellTask, Executor, RunOptions, run_cell_job
from .local import LocalExecutor
from .ray_exec import RayExecutor
from .submitit_exec import SubmititExecutor

__all__ = ["CellTask", "Executor", "RunOptions", "run_cell_job", "LocalExecutor", "RayExecutor",
           "SubmititExecutor"]


@hookimpl
def ctkd_register_executors(register):
    register(LocalExecutor)
    register(SubmititExecutor)
    register(RayExecutor)
