"""The runner's side of scale-out: which cells are pending, and the teacher work done before
workers start (so workers only read caches and never run or train the teacher concurrently)."""
from __future__ import annotations

from ..method import config_as_dict
from ..specs import CellSpec
from .executors.base import CellTask, RunOptions


def reference_cells(runner, track_name: str) -> list[CellSpec]:
    """The reference rows `run_references` writes for a track (teacher once, untrained per seed)."""
    suite = runner.suite
    pair = suite.track(track_name).pair
    rows = [("teacher", runner.seeds[0])] + [("untrained", s) for s in runner.seeds]
    return [CellSpec(suite.name, suite.hash, track_name, pair, role, (), seed) for role, seed in rows]


def method_cell(runner, track_name: str, reg, seed: int) -> CellSpec:
    """The cell `run_method_cell` writes for (track, method, seed)."""
    suite = runner.suite
    config = reg.cls.make_config(suite.method_config(reg.name), where=f"methods.{reg.name}")
    cfg_items = tuple(sorted(config_as_dict(config).items()))
    return CellSpec(suite.name, suite.hash, track_name, suite.track(track_name).pair, reg.name, cfg_items, seed)


def pending_tasks(runner) -> list[CellTask]:
    """Unfinished tasks in run order (per track: references, then methods x seeds)."""
    finished = lambda cell: runner.store.has_finished(cell.id, runner.retry_failed)  # noqa: E731
    tasks = []
    for track in runner.suite.tracks:
        refs = reference_cells(runner, track.name)
        if all(finished(c) for c in refs):
            runner.counts["skipped"] += len(refs)
        else:
            tasks.append(CellTask(track.name))
        for reg in runner.methods:
            for seed in runner.seeds:
                if finished(method_cell(runner, track.name, reg, seed)):
                    runner.counts["skipped"] += 1
                else:
                    tasks.append(CellTask(track.name, reg.name, seed))
    return tasks


def run_options(runner) -> RunOptions:
    return RunOptions(seeds=tuple(runner.seeds), retry_failed=runner.retry_failed,
                      cache_root=str(runner.env.cache_root))


def warm_teacher_uses(runner, tasks: list[CellTask]) -> None:
    """Generate and cache, here, the teacher outputs a method needs beyond the shared signals
    (generations, signals of re-formatted views), once per (track, method)."""
    from ..train.budget import BudgetMeter
    from .cell import CellData, teacher_generations
    regs = {r.name: r for r in runner.methods}
    seen = set()
    for task in tasks:
        reg = regs.get(task.method)
        if reg is None or (task.track, task.method) in seen:
            continue
        seen.add((task.track, task.method))
        cls = reg.cls
        if runner.suite.track(task.track).task not in cls.tracks or not (
                cls.needs.generations or getattr(cls, "views", None)):
            continue
        env = runner.env.track(task.track)
        try:
            method = cls(cls.make_config(runner.suite.method_config(reg.name), where=f"methods.{reg.name}"))
            generations = teacher_generations(env, method, BudgetMeter()) if cls.needs.generations else None
            CellData(env, method, task.seed, generations)
        except Exception:  # noqa: BLE001 - the cell itself will fail and record why
            continue
