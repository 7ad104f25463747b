"""Run a suite: every (track, method, seed) cell plus the reference rows, resumable.

Each finished cell is written atomically to ``RUN_DIR/cells/<cell_id>.json``;
a rerun with the same ``--out`` skips finished cells (and failed ones unless
``retry_failed``). A crashing or NaN-producing method fails its own cell only.
"""
from __future__ import annotations

import dataclasses
import sys
import time
import traceback
from pathlib import Path

from .. import __version__
from ..defaults import cache_root
from ..method import Needs, config_as_dict
from ..plugins import RegisteredMethod, get_plugin_manager
from ..specs import CellSpec, SuiteSpec
from ..evaluate.lmeval import PRIMARY
from ..results.provenance import collect_versions, machine_info
from ..results.record import now_iso
from .cell import evaluate_model, run_cell
from .guards import TeacherGuard, reraise_environment_error
from .timeout import time_limit
from .environment import SuiteEnvironment
from ..errors import UsageError
from ..train.accel import backend_for, launched_processes


def union_needs(methods: list[RegisteredMethod]) -> Needs:
    fields = {}
    for f in dataclasses.fields(Needs):
        values = [getattr(m.cls.needs, f.name) for m in methods]
        if f.type in ("bool", bool):
            fields[f.name] = any(values)
        elif f.name == "topk":
            fields[f.name] = max(values, default=0)
        else:
            fields[f.name] = tuple(sorted({x for v in values for x in v}))
    return Needs(**fields)


class Runner:
    def __init__(self, suite: SuiteSpec, out: Path, methods: list[RegisteredMethod], seeds: list[int],
                 retry_failed: bool = False, echo=print, executor=None):
        from ..results.store import RunStore
        self.suite, self.out, self.methods, self.seeds = suite, Path(out), methods, seeds
        self.retry_failed, self.echo = retry_failed, echo
        self.executor = executor  # None: every cell runs here, in this process (as `local` with 1 worker)
        self.store = RunStore(self.out)
        self.store.ensure_writable()
        self.env = SuiteEnvironment(suite, cache_root())
        self.timings: dict[str, float] = {}
        self.counts = {"ok": 0, "failed": 0, "n/a": 0, "skipped": 0}

    def _timed(self, phase: str, start: float) -> None:
        self.timings[phase] = self.timings.get(phase, 0.0) + time.perf_counter() - start

    def base_record(self, cell: CellSpec, role: str) -> dict:
        track = self.suite.track(cell.track)
        primary, higher = PRIMARY[track.task]
        if track.primary_metric:  # a track may pick another metric of its task (MultiLevelOT QA: f1)
            from ..evaluate.metrics import TASK_METRICS
            primary, higher = track.primary_metric, TASK_METRICS[track.task][track.primary_metric]
        return {"schema": 1, "cell_id": cell.id, "run_id": self.out.name, "suite": self.suite.name,
                "suite_hash": self.suite.hash, "track": cell.track, "pair": cell.pair, "role": role,
                "method": cell.method, "seed": cell.seed, "spec": cell.to_dict(),
                "primary_metric": primary, "higher_is_better": higher, "metrics": {}, "costs": {},
                "lm_eval": {}, "versions": collect_versions(), "reason": None,
                "machine": dict(machine_info(), precision=self.suite.budget.precision,
                                processes=launched_processes())}

    def method_fields(self, reg: RegisteredMethod, config) -> dict:
        cls = reg.cls
        return {"method_category": cls.category, "method_summary": cls.summary,
                "method_paper": dataclasses.asdict(cls.paper), "method_variant": getattr(cls, "variant", ""),
                "method_config": config_as_dict(config), "distribution": reg.plugin.distribution,
                "distribution_version": reg.plugin.version}

    def write(self, record: dict) -> None:
        from ..results.record import CellRecord
        if launched_processes() > 1 and not backend_for(self.suite.budget.precision).is_main:
            return  # the main process writes each cell once
        self.store.write(CellRecord.from_dict(record))
        self.counts[record["status"]] += 1

    def write_run_info(self) -> None:
        from ..align.diagnostics import pair_diagnostics
        diagnostics = {}
        start = time.perf_counter()
        for track in self.suite.tracks:
            env = self.env.track(track.name)
            if track.pair not in diagnostics:
                texts = [e["text"] if env.encoder else e["prompt"] + e["response"] for e in env.test[:100]]
                diagnostics[track.pair] = pair_diagnostics(env.student_tokenizer, env.teacher_tokenizer, texts)
        self._timed("prepare", start)
        pm = get_plugin_manager()
        self.store.write_run_info({
            "suite": self.suite.name, "suite_hash": self.suite.hash, "suite_spec": self.suite.to_dict(),
            "profile": self.suite.profile,
            "plugins": [{"name": i.name, "distribution": i.distribution, "version": i.version}
                        for i in pm.plugins.values()],
            "machine": machine_info(), "versions": collect_versions(), "pair_diagnostics": diagnostics, "created_at": now_iso()})

    def run(self) -> None:
        from .progress import quiet_libraries
        quiet_libraries()
        start = time.perf_counter()
        if launched_processes() > 1:  # under `accelerate launch`: every rank runs every method cell
            self.run_launched(start)
            return
        self.write_run_info()
        self.prepare_tracks()
        tasks = self.pending_tasks()
        if self.executor is None or self.executor.in_process:
            for task in tasks:
                self.run_task(task)
        else:
            from .scaleout import run_options, warm_teacher_uses
            warm_teacher_uses(self, tasks)
            for summary in self.executor.map(self.suite, self.out, tasks, run_options(self)):
                self.absorb(summary)
        t0 = time.perf_counter()
        self.store.summarize()
        self._timed("summarize", t0)
        self.timings["total"] = time.perf_counter() - start

    def run_launched(self, start: float) -> None:
        """One run on several processes (DDP/FSDP/DeepSpeed inside each cell). The main process
        trains teachers and fills the signal caches first while the others wait; all list the
        pending cells at the same moment, train every method cell together, and only the main
        process evaluates references and writes records."""
        from .scaleout import warm_teacher_uses
        if self.executor is not None and not self.executor.in_process:
            raise UsageError("under accelerate launch the cells run in the launched processes; "
                             "use the local executor with 1 worker")
        backend = backend_for(self.suite.budget.precision)
        if not backend.is_main:
            self.echo = lambda *_: None
        with backend.main_process_first():
            if backend.is_main:
                self.write_run_info()
            self.prepare_tracks()
        backend.wait()
        tasks = self.pending_tasks()
        backend.wait()  # everyone has listed the same cells before the first record appears
        with backend.main_process_first():
            warm_teacher_uses(self, tasks)
        for task in tasks:
            if task.method or backend.is_main:
                self.run_task(task)
        backend.wait()
        if backend.is_main:
            t0 = time.perf_counter()
            self.store.summarize()
            self._timed("summarize", t0)
        self.timings["total"] = time.perf_counter() - start

    def prepare_tracks(self) -> None:
        """Teacher signals for every track, computed here once, before any cell (and any worker) runs."""
        for track in self.suite.tracks:
            env = self.env.track(track.name)
            runnable = [m for m in self.methods if track.task in m.cls.tracks]
            t0 = time.perf_counter()
            env.cache.ensure(env.encode(env.train, "teacher", "train"), union_needs(runnable))
            self._timed("teacher cache", t0)

    def pending_tasks(self) -> list:
        """The cells still to run, in run order; finished ones are counted as skipped."""
        from .scaleout import pending_tasks
        return pending_tasks(self)

    def run_task(self, task) -> None:
        """Run one pending task (a track's reference rows, or one method cell) in this process."""
        if not task.method:
            self.run_references(task.track)
            return
        reg = next(r for r in self.methods if r.name == task.method)
        self.run_method_cell(task.track, reg, task.seed)

    def absorb(self, summary: dict) -> None:
        """Fold a worker's summary (counts, phase timings, progress lines) into this run's."""
        for key, n in summary["counts"].items():
            self.counts[key] = self.counts.get(key, 0) + n
        for phase, seconds in summary["timings"].items():
            self.timings[phase] = self.timings.get(phase, 0.0) + seconds
        for line in summary["lines"]:
            self.echo(line)

    def run_references(self, track_name: str) -> None:
        env = self.env.track(track_name)
        pair = self.suite.track(track_name).pair
        rows = [("teacher", self.seeds[0])] + [("untrained", s) for s in self.seeds]
        for role_name, seed in rows:
            cell = CellSpec(self.suite.name, self.suite.hash, track_name, pair, role_name, (), seed)
            if self.store.has_finished(cell.id, self.retry_failed):
                self.counts["skipped"] += 1
                continue
            record = self.base_record(cell, "reference")
            record.update(method_category="reference", method_summary=f"{role_name} model (reference row)",
                          method_paper={"title": "", "url": "", "venue": ""}, method_variant="",
                          method_config={}, distribution="ctkd-bench", distribution_version=__version__,
                          started_at=now_iso())
            t0 = time.perf_counter()
            try:
                if role_name == "teacher":
                    model, tok = env.teacher, env.teacher_tokenizer
                else:
                    from ..models.sources import fresh_student
                    model = fresh_student(env.student_spec, env.student_tokenizer, seed, env.encoder,
                                          env.num_labels)
                    tok = env.student_tokenizer
                with time_limit(self.suite.budget.cell_timeout_s):
                    metrics, meta = evaluate_model(env, model, tok)
                record.update(status="ok", metrics=self._with_floor(env, metrics), lm_eval=meta,
                              costs={"wall_eval_s": round(time.perf_counter() - t0, 3)})
            except Exception as exc:  # a reference failing is recorded, not fatal
                reraise_environment_error(exc)
                record.update(status="failed", reason=_reason(exc))
            self._timed("eval", t0)
            record["finished_at"] = now_iso()
            self.write(record)
            self.echo(f"  {track_name:<9} {role_name:<14} seed {seed}  {record['status']}  {_fmt(record)}")

    def _with_floor(self, env, metrics: dict) -> dict:
        if env.track.task == "lm" and env.test and "logprob_bits" in env.test[0]:
            from ..data.tasks import reference_metrics  # the floor without EOS, as lm-eval scores it
            metrics = dict(metrics, true_entropy_bpb=reference_metrics("lm", env.test)["bpb_floor"])
        return metrics

    def run_method_cell(self, track_name: str, reg: RegisteredMethod, seed: int) -> None:
        env = self.env.track(track_name)
        track = self.suite.track(track_name)
        config = reg.cls.make_config(self.suite.method_config(reg.name), where=f"methods.{reg.name}")
        cfg_items = tuple(sorted(config_as_dict(config).items()))
        cell = CellSpec(self.suite.name, self.suite.hash, track_name, track.pair, reg.name, cfg_items, seed)
        if self.store.has_finished(cell.id, self.retry_failed):
            self.counts["skipped"] += 1
            return
        record = self.base_record(cell, "method")
        record.update(self.method_fields(reg, config), started_at=now_iso(),
                      versions=collect_versions(reg.plugin.distribution))
        if track.task not in reg.cls.tracks:
            record.update(status="n/a", reason=f"{reg.name} supports tracks {', '.join(reg.cls.tracks)}, "
                                               f"not {track.task}")
        else:
            guard = TeacherGuard(env)
            try:
                method = reg.cls(config)
                artifact_dir = self.env.cache_root / "artifacts" / reg.name / env.teacher_key
                with time_limit(self.suite.budget.cell_timeout_s):
                    metrics, costs, meta = run_cell(env, method, seed, artifact_dir,
                                                    progress_desc=f"{track_name}/{reg.name}/s{seed}")
                record.update(status="ok", metrics=self._with_floor(env, metrics), costs=costs, lm_eval=meta)
                for phase in ("prepare", "train", "eval"):
                    self.timings[phase] = self.timings.get(phase, 0.0) + costs.get(f"wall_{phase}_s", 0.0)
            except KeyboardInterrupt:
                raise
            except Exception as exc:
                reraise_environment_error(exc)   # a full disk is not the method's failure: stop, resume later
                record.update(status="failed", reason=_reason(exc))
                if sys.stderr.isatty():
                    traceback.print_exc()
            touched = guard.changed()
            if touched:  # fail the cell and reload the teacher from the cache for the cells after it
                record.update(status="failed", metrics={}, reason=f"the method modified the teacher ({touched}); "
                                                                  "teacher weights, head and signals are read-only")
                self.env = SuiteEnvironment(self.suite, cache_root())
        record["finished_at"] = now_iso()
        self.write(record)
        self.echo(f"  {track_name:<9} {reg.name:<14} seed {seed}  {record['status']}  {_fmt(record)}")


def _reason(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) < 500 else text[:497] + "..."


def _fmt(record: dict) -> str:
    if record["status"] != "ok":
        return record.get("reason") or ""
    m = record["metrics"]
    p = record["primary_metric"]
    return f"{p}={m.get(p, float('nan')):.4f}" if p in m else ""
