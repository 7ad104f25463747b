"""``ctkd-bench run SUITE``: run methods head to head on a suite, resumably.

Example::

    ctkd-bench run tiny --methods all --seeds 0,1,2 --out runs/tiny
    ctkd-bench run tiny --profile test --methods sft --out /tmp/run   # the CI-sized profile
    ctkd-bench run tiny --executor ray --workers 4                    # cells as Ray tasks
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import click

from ..errors import UsageError
from ..plugins import get_plugin_manager
from .. import _allocator, _huge_pages
from ..specs import resolve_suite
from ..util import did_you_mean


def parse_methods(spec: str) -> list:
    pm = get_plugin_manager()
    if spec.strip() in ("all", ""):
        return list(pm.methods().values())
    names = [s.strip() for s in spec.split(",") if s.strip()]
    seen, out = set(), []
    for name in names:
        reg = pm.method(name)
        if reg.name not in seen:
            seen.add(reg.name)
            out.append(reg)
    return out


def parse_executor(name: str, workers: int, opts: tuple[str, ...]):
    """The executor instance for --executor/--workers/--executor-opt KEY=VALUE."""
    from ..run.executors.base import parse_value
    values = {}
    for item in opts:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--executor-opt: expected KEY=VALUE, got {item!r}")
        values[key.strip()] = parse_value(value.strip())
    return get_plugin_manager().executor(name)(workers=workers, **values)


def busy_machine_note(environ=os.environ, load=None, cores=None) -> str:
    """One line of advice when torch would run several threads on a machine other jobs keep busy:
    OpenMP threads then spin waiting for each other (measured: 4-10x slower steps and generation)."""
    if "OMP_NUM_THREADS" in environ:
        return ""
    cores = cores or os.cpu_count() or 1
    if load is None:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if cores < 2 or load < cores - 0.5:
        return ""
    return (f"note: this machine is busy (load {load:.1f} on {cores} cores); OMP_NUM_THREADS=1 keeps torch's "
            "threads from waiting on each other (docs/suites.md, 'Busy machines')")


def parse_seeds(spec: str | None, default: tuple[int, ...]) -> list[int]:
    if not spec:
        return list(default)
    try:
        seeds = [int(s) for s in spec.split(",") if s.strip()]
    except ValueError:
        raise UsageError(f"--seeds: expected a comma-separated list of integers, got {spec!r}") from None
    if not seeds or any(s < 0 for s in seeds):
        raise UsageError(f"--seeds: expected non-negative integers, got {spec!r}")
    return seeds


@click.command("run")
@click.argument("suite")
@click.option("--methods", default="all", show_default=True, help="'all' or a comma list of method names.")
@click.option("--seeds", default=None, help="Comma list of seeds (default: the suite's).")
@click.option("--profile", default=None, help="A named profile of the suite, e.g. 'test'.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run directory (default: runs/<suite>). Reusing it resumes.")
@click.option("--retry-failed", is_flag=True, help="Re-run cells that failed before.")
@click.option("--report/--no-report", "make_report", default=True, show_default=True,
              help="Render the leaderboard into RUN_DIR/report when done.")
@click.option("--executor", default="local", show_default=True,
              help="Where cells run: local, submitit, ray (or a plugin's executor).")
@click.option("--workers", type=int, default=1, show_default=True,
              help="Cells at once (local: 1 = in this process, N = N processes).")
@click.option("--executor-opt", "executor_opts", multiple=True, metavar="KEY=VALUE",
              help="An executor option, repeatable (e.g. slurm_partition=gpu, gpus_per_cell=1).")
@click.option("--accelerate-config", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Train each cell with `accelerate launch --config_file FILE` (DDP/FSDP/DeepSpeed).")
def command(suite, methods, seeds, profile, out, retry_failed, make_report, executor, workers, executor_opts,
            accelerate_config):
    """Run every selected method on SUITE (a name from `ctkd-bench suites` or a YAML path)."""
    spec = resolve_suite(suite, profile)
    regs = parse_methods(methods)
    for reg in regs:  # validate configs before any work
        reg.cls.make_config(spec.method_config(reg.name), where=f"methods.{reg.name}")
    unknown = {m for m, _ in spec.method_configs} - {r.name for r in get_plugin_manager().methods().values()}
    if unknown:
        name = sorted(unknown)[0]
        known = get_plugin_manager().methods()
        raise UsageError(f"methods.{name}: config given for an unknown method {name!r}{did_you_mean(name, known)}")
    out = out or Path("runs") / (spec.name + (f"-{spec.profile}" if spec.profile else ""))
    seed_list = parse_seeds(seeds, spec.seeds)
    runs_on = parse_executor(executor, workers, executor_opts)
    if accelerate_config is not None and os.environ.get("CTKD_ACCELERATE") != "1":
        if executor != "local" or workers != 1:
            raise UsageError("--accelerate-config: the launched processes share each cell; "
                             "use it with the local executor and 1 worker")
        from ..run.launch import relaunch, run_args
        params = dict(methods=methods, seeds=seeds, profile=profile, out=out, retry_failed=retry_failed,
                      make_report=make_report)
        raise SystemExit(relaunch(accelerate_config, run_args(suite, params)))
    if os.environ.get("RANK", "0") == "0":  # once, not per launched process
        click.echo(f"ctkd-bench: suite {spec.name} ({spec.hash}){' profile ' + spec.profile if spec.profile else ''}: "
                   f"{len(regs)} methods x {len(spec.tracks)} tracks x {len(seed_list)} seeds -> {out}")
        busy = busy_machine_note()
        if busy:
            click.echo(busy)
    if _huge_pages.wanted(spec):   # pretrained models: large vocabularies (see the module)
        _huge_pages.enable()
    _allocator.keep_freed_memory()  # each step reuses the last one's memory (see the module)
    from ..run.memory import limited_memory
    from ..run.runner import Runner
    runner = Runner(spec, out, regs, seed_list, retry_failed=retry_failed, echo=click.echo, executor=runs_on)
    # in-process cells: one that outgrows the machine fails alone instead of the OOM killer ending the run
    with limited_memory() if runs_on.in_process else contextlib.nullcontext():
        runner.run()
    if os.environ.get("RANK", "0") != "0":  # a launched non-main process: rank 0 reports
        return
    if make_report:
        from ..report.render import render_report
        paths = render_report([out], out / "report")
        shown = [p for p in paths.values() if str(p).endswith((".html", ".md"))]
        click.echo(f"report: {', '.join(str(p) for p in shown)}")
    c = runner.counts
    click.echo(f"cells: {c['ok']} ok, {c['failed']} failed, {c['n/a']} n/a, {c['skipped']} already done")
    click.echo("time per phase: " + ", ".join(f"{k} {v:.1f}s" for k, v in runner.timings.items()))
