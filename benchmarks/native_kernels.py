"""The C kernels (`ctkd_bench.native`) against the numpy/torch paths they replace, side by side.

    python benchmarks/native_kernels.py                 # shapes of a CDM step on tiny `math`
    python benchmarks/native_kernels.py --batch 4 --steps 256 --repeat 20

Inputs are random, shaped like one CDM step on `tiny` (16 rows, about 28 merged steps, top-100
over vocabularies of 800 and 1024, near lists of up to 22 candidates). For each kernel: the
median time of each path over interleaved calls, their ratio, and whether the outputs are
equal (they must be: each kernel repeats its fallback's arithmetic). Without a C compiler
there is nothing to compare and the script says so. Not part of the test suite.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch


def interleaved(paths: dict, repeat: int) -> dict:
    """Median seconds per call of each path, called in turns so that machine noise hits all alike."""
    times = {name: [] for name in paths}
    for _ in range(repeat):
        for name, fn in paths.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def numpy_path(fn):
    """``fn`` with ``CTKD_NATIVE=0``: the kernel's fallback."""
    def run():
        os.environ["CTKD_NATIVE"] = "0"
        try:
            return fn()
        finally:
            del os.environ["CTKD_NATIVE"]
    return run


def report(name: str, fn, repeat: int) -> None:
    slow = numpy_path(fn)
    same = _equal(fn(), slow())
    t = interleaved({"native": fn, "numpy": slow}, repeat)
    print(f"{name:<34} native {1e3 * t['native']:7.3f} ms   numpy/torch {1e3 * t['numpy']:7.3f} ms   "
          f"ratio {t['numpy'] / t['native']:5.1f}x   equal: {same}")


def _equal(a, b) -> bool:
    if isinstance(a, tuple):
        return all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    return bool(np.array_equal(a, b))


def dtw_case(rng, batch: int, steps: int):
    from ctkd_bench.align.dtw_batch import dtw_paths_batch
    cost = rng.integers(0, 40, size=(batch, steps + 1, steps + 1)).astype(np.float64)
    n, m = rng.integers(steps // 2, steps + 2, batch), rng.integers(steps // 2, steps + 2, batch)
    return lambda: dtw_paths_batch(cost, n, m)


def dynamic_map_case(rng, batch: int, steps: int, k: int, v_src: int, v_tgt: int):
    from ctkd_methods import cdm_vocab
    exact = torch.from_numpy(np.where(rng.random(v_src) < 0.6, rng.integers(0, v_tgt, v_src), -1))
    near = torch.full((v_src, 22), -1, dtype=torch.long)
    for i in np.flatnonzero(exact.numpy() < 0):
        n = rng.integers(0, 23)
        near[i, :n] = torch.from_numpy(rng.choice(v_tgt, n, replace=False))
    src = torch.from_numpy(np.stack([rng.choice(v_src, k, replace=False) for _ in range(batch * steps)]))
    cand = torch.from_numpy(np.stack([rng.choice(v_tgt, k, replace=False) for _ in range(batch * steps)]))
    valid = torch.from_numpy(np.arange(steps)[None, :] < rng.integers(steps // 2, steps + 1, batch)[:, None])
    blocked = torch.from_numpy(rng.random(v_tgt) < 0.3)
    args = (src.view(batch, steps, k), cand.view(batch, steps, k), exact, near, valid, blocked, True)
    return lambda: cdm_vocab.dynamic_map(*args)


def merged_read_case(rng, batch: int, steps: int, k: int, vocab: int):
    from ctkd_methods._cdm_steps import read_merged
    rows_total = batch * 4 * steps
    flat = torch.randn(rows_total, vocab)
    step_of = np.sort(np.concatenate([np.arange(batch * steps), rng.integers(0, batch * steps, batch * steps // 10)]))
    steps_t = torch.from_numpy(step_of)
    rows = torch.from_numpy(rng.integers(0, rows_total, len(step_of)))
    weight = torch.from_numpy(rng.random(len(step_of)))
    ids = torch.from_numpy(rng.integers(-1, vocab, (batch * steps, 2 * k)))
    return lambda: read_merged(flat, steps_t, rows, weight, ids, True, -1e4)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=28)
    parser.add_argument("--top-k", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args(argv)

    from ctkd_bench import native
    if not native.enabled() or native.compiler() is None:
        print("no C compiler (or CTKD_NATIVE=0): every kernel runs its numpy path; nothing to compare")
        return
    rng = np.random.default_rng(0)
    b, g, k = args.batch, args.steps, args.top_k
    print(f"batch {b}, steps {g}, top-{k}; median of {args.repeat} interleaved calls per path; "
          f"torch threads {torch.get_num_threads()}")
    report("DTW paths (align.dtw_batch)", dtw_case(rng, b, g), args.repeat)
    report("CDM dynamic map (1024 -> 800 ids)", dynamic_map_case(rng, b, g, k, 1024, 800), args.repeat)
    report("CDM dynamic map (800 -> 1024 ids)", dynamic_map_case(rng, b, g, k, 800, 1024), args.repeat)
    report("CDM merged read (teacher, 1024)", merged_read_case(rng, b, g, k, 1024), args.repeat)


if __name__ == "__main__":
    main()
