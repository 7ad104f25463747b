"""A realistic, made-up run directory: for tests, demos and working on the report.

Ten methods (the survey's eight plus two baselines) x four tracks x three seeds,
the reference rows (teacher, untrained student), and the awkward cases a report
must explain: n/a cells (EMO on causal tracks, CoT2Align on the encoder track),
a failed seed, a track where every seed failed, a cell that was never run, and
(optionally) a hostile plugin whose strings carry markup and script.
"""
from __future__ import annotations

import random
from pathlib import Path

from .record import CellRecord, cell_id_for
from .store import RunStore

CAUSAL_PAIR = "toy-bpe-gpt2->toy-unigram-llama"
ENCODER_PAIR = "toy-unigram-bert->toy-wordpiece-bert"
TRACKS = {  # track: (pair, primary metric, higher is better, teacher, untrained, sft)
    "lm": (CAUSAL_PAIR, "bits_per_byte", False, 1.12, 4.60, 1.62),
    "math": (CAUSAL_PAIR, "exact_match", True, 0.62, 0.0, 0.20),
    "instruct": (CAUSAL_PAIR, "rouge_l", True, 0.55, 0.04, 0.30),
    "embed": (ENCODER_PAIR, "accuracy", True, 0.91, 0.50, 0.78),
}
TRUE_ENTROPY_BPB = 1.03
# name, category, summary, gain over SFT as a fraction of the teacher gap, teacher tokens/step
METHODS = [
    ("sft", "baseline", "Student trained on the task data alone.", 0.0, 0),
    ("mined", "baseline", "Map each token to its closest-spelled teacher token, then plain KD.", 0.12, 8),
    ("uld", "probability-distribution alignment", "Match sorted probability vectors (Wasserstein-1).", 0.18, 8),
    ("dskd", "probability-distribution alignment", "Project hidden states into the other model's space and distil there.", 0.26, 16),
    ("multilevelot", "multi-level alignment", "Optimal transport between token- and sequence-level logits.", 0.22, 8),
    ("cdm", "multi-level alignment", "Contextual dynamic mapping of tokens before KD.", 0.24, 8),
    ("emo", "multi-level alignment", "Align attention and hidden-state structure with CKA.", 0.15, 4),
    ("cot2align", "reasoning alignment", "Align chain-of-thought rationales with OT.", 0.30, 24),
    ("vocagnolm", "text alignment", "Token-level lexical alignment via character offsets.", 0.20, 8),
    ("alm", "text alignment", "Approximate likelihood matching over aligned chunks.", 0.28, 8),
]
EVIL_NAME = "evil<script>alert(1)</script>"
NA = {("emo", t): "EMO applies to the encoder track only" for t in ("lm", "math", "instruct")}
NA[("cot2align", "embed")] = "reasoning alignment needs a causal track"
NOT_RUN = {("vocagnolm", "embed")}            # no record at all: the report says "not run"
ALL_FAILED = {("dskd", "instruct"): "CellFailure: non-finite loss at step 37"}
ONE_FAILED = {("alm", "math", 2): "CUDA out of memory while evaluating"}


def write_synthetic_run(run_dir: Path, suite: str = "tiny", seeds=(0, 1, 2), evil: bool = True,
                        methods: list[str] | None = None, rng_seed: int = 0) -> Path:
    """Write run.json, every cell record and the tidy tables into run_dir; return it."""
    rng = random.Random(rng_seed)
    store = RunStore(run_dir)
    suite_hash = f"{suite}-{rng_seed:04d}aa55"
    store.write_run_info(_run_info(suite, suite_hash, evil))
    table = [m for m in METHODS if methods is None or m[0] in methods]
    if evil:
        table.append((EVIL_NAME, "text alignment",
                      '<b>bold</b> & "quotes" <script>alert(1)</script>', 0.05, 2))
    for track, (pair, metric, higher, teacher, untrained, sft) in TRACKS.items():
        for role_name, value in (("teacher", teacher), ("untrained", untrained)):
            store.write(_record(suite, suite_hash, track, "reference", role_name, "", 0,
                                _score(rng, value, 0.0), rng, 0))
        for name, category, summary, gain, tt in table:
            if (name, track) in NOT_RUN:
                continue
            for seed in seeds:
                noise = 0.01 if track != "lm" else 0.02
                value = _score(rng, sft + gain * (teacher - sft), noise)
                rec = _record(suite, suite_hash, track, "method", name, category, seed, value,
                              rng, tt, summary=summary, evil=name == EVIL_NAME)
                _apply_status(rec, name, track, seed)
                store.write(rec)
    store.summarize()
    return Path(run_dir)


def _score(rng: random.Random, centre: float, noise: float) -> float:
    return round(centre + rng.gauss(0.0, noise), 4)


def _apply_status(rec: CellRecord, name: str, track: str, seed: int) -> None:
    reason = NA.get((name, track))
    status = "n/a"
    if reason is None:
        reason, status = ALL_FAILED.get((name, track)) or ONE_FAILED.get((name, track, seed)), "failed"
    if reason:
        rec.status, rec.reason, rec.metrics = status, reason, {}
        if status == "n/a":
            rec.costs = {}


def _record(suite, suite_hash, track, role, method, category, seed, value, rng, teacher_tps,
            summary="", evil=False) -> CellRecord:
    pair, metric, higher = TRACKS[track][:3]
    spec = {"suite": suite, "track": track, "pair": pair, "method": method, "seed": seed,
            "config": {"evil": "<img src=x onerror=alert(2)>"} if evil else {}}
    metrics = {metric: value}
    if track == "lm":
        metrics["true_entropy_bpb"] = TRUE_ENTROPY_BPB
    if track == "instruct":
        metrics["exact_match"] = round(value / 3, 4)
    paper = {"title": f"Paper on {method}", "url": f"https://example.org/{method}", "venue": "ACL"}
    if evil:
        paper = {"title": "<i>Title</i> <script>alert(1)</script>", "url": "javascript:alert(3)",
                 "venue": "<u>venue</u>"}
    steps = 200 if role == "method" else 0
    return CellRecord(
        cell_id=cell_id_for(spec), run_id="synthetic", suite=suite, suite_hash=suite_hash,
        track=track, pair=pair, role=role, method=method, seed=seed, status="ok",
        primary_metric=metric, higher_is_better=higher, metrics=metrics,
        method_category=category, method_summary=summary, method_paper=paper if role == "method" else {},
        method_variant="official", method_config=dict(spec["config"]),
        distribution="evil-plugin" if evil else "ctkd-bench", distribution_version="0.1.0",
        costs={"steps": steps, "examples": steps * 8, "bytes": steps * 8 * 310,
               "teacher_tokens": steps * 8 * 64 * teacher_tps // 8,
               "extra_params": 1_180_000 if method == "dskd" else 0,
               "wall_prepare_s": round(rng.uniform(0.1, 3.0) + (40 if method == "mined" else 0), 2),
               "wall_train_s": round(steps * rng.uniform(0.05, 0.09) * (1 + teacher_tps / 16), 2),
               "wall_eval_s": round(rng.uniform(4, 6), 2),
               "peak_mem_mb": round(900 + 40 * teacher_tps + rng.uniform(0, 30), 1)},
        lm_eval={"results": {f"ctkd_{track}": {metric: value}},
                 "task_hashes": {f"ctkd_{track}": "3f2a9c"}} if track in ("math", "instruct") else {},
        versions={"ctkd-bench": "0.1.0", "torch": "2.13.0", "transformers": "5.24.0",
                  "lm-eval": "0.4.13", "python": "3.11.9", "device": "cpu"},
        machine={"platform": "Linux-x86_64", "cpu_count": 2},
        spec=spec, started_at="2025-01-01T00:00:00+00:00", finished_at="2025-01-01T00:01:00+00:00",
    )


def _run_info(suite: str, suite_hash: str, evil: bool) -> dict:
    plugins = [{"name": m[0], "distribution": "ctkd-bench", "version": "0.1.0"} for m in METHODS]
    if evil:
        plugins.append({"name": EVIL_NAME, "distribution": "evil-plugin<b>", "version": "6.6.6"})
    diag = {"teacher_vocab": 8192, "student_vocab": 6000, "exact_vocab_overlap": 0.41,
            "fertility": {"teacher": 1.31, "student": 1.47}, "boundary_agreement": 0.72,
            "one_to_one_groups": 0.64}
    return {
        "suite": suite, "suite_hash": suite_hash,
        "suite_spec": {"name": suite, "tracks": list(TRACKS), "seeds": 3},
        "plugins": plugins,
        "machine": {"platform": "Linux-x86_64", "cpu_count": 2, "memory_gb": 24.0},
        "versions": {"ctkd-bench": "0.1.0", "torch": "2.13.0", "python": "3.11.9"},
        "pair_diagnostics": {CAUSAL_PAIR: diag, ENCODER_PAIR: {**diag, "teacher_vocab": 5000,
                                                               "note": "<script>alert(1)</script>"}},
        "created_at": "2025-01-01T00:00:00+00:00",
    }
