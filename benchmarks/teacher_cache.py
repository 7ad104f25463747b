"""Teacher-signal cache: one shared teacher pass vs recomputing the teacher for every cell.

    python benchmarks/teacher_cache.py                  # tiny suite, track 'math', all methods, 3 seeds
    python benchmarks/teacher_cache.py --profile test --seeds 1

"Shared" is what `ctkd-bench run` does: the teacher runs once per (teacher, data,
signal) and every method and seed reads the stored tensors. "Per cell" runs the
teacher again for each (method, seed) cell into a fresh cache. Prints both wall
times and their ratio.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("CTKD_PROGRESS", "0")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", default="tiny")
    parser.add_argument("--profile", default=None)
    parser.add_argument("--track", default="math")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()

    from ctkd_bench.cli.run import parse_methods
    from ctkd_bench.defaults import cache_root
    from ctkd_bench.run.environment import SuiteEnvironment
    from ctkd_bench.run.runner import union_needs
    from ctkd_bench.specs import resolve_suite
    from ctkd_bench.teacher.cache import TeacherCache

    suite = resolve_suite(args.suite, args.profile)
    env = SuiteEnvironment(suite, cache_root()).track(args.track)
    regs = [r for r in parse_methods("all") if env.track.task in r.cls.tracks and r.cls.needs.teacher_signal_kinds()]
    encoded = env.encode(env.train, "teacher", "train")

    def fresh_cache(root):
        return TeacherCache(root, env.teacher, env.teacher_key, env.head, env.encoder, env.teacher_tokenizer,
                            suite.budget.eval_batch_size)

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        shared = fresh_cache(tmp)
        shared.ensure(encoded, union_needs(regs))
        shared_s = time.perf_counter() - start
    start = time.perf_counter()
    tokens = 0
    for reg in regs:
        for _ in range(args.seeds):
            with tempfile.TemporaryDirectory() as tmp:
                cache = fresh_cache(tmp)
                cache.ensure(encoded, reg.cls.needs)
                tokens += cache.computed_tokens
    per_cell_s = time.perf_counter() - start
    print(f"suite {suite.name} track {args.track}: {len(regs)} teacher-reading methods x {args.seeds} seeds, "
          f"{len(encoded)} training examples")
    print(f"shared cache (one teacher pass): {shared_s:8.2f} s, teacher tokens {shared.computed_tokens}")
    print(f"teacher per cell:                {per_cell_s:8.2f} s, teacher tokens {tokens}")
    print(f"ratio per-cell / shared:         {per_cell_s / shared_s:8.1f}x")


if __name__ == "__main__":
    main()
