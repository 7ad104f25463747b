"""Wall time per phase of `ctkd-bench run tiny`, from a cold cache.

    python benchmarks/tiny_e2e.py                       # all methods, 1 seed, cold cache in a temp dir
    python benchmarks/tiny_e2e.py --profile test --methods sft

Runs the CLI in a subprocess with a fresh $CTKD_CACHE and prints its per-phase
summary plus the total wall time.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default=None)
    parser.add_argument("--methods", default="all")
    parser.add_argument("--seeds", default="0")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, CTKD_CACHE=os.path.join(tmp, "cache"), CTKD_PROGRESS="0",
                   HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        cmd = [sys.executable, "-m", "ctkd_bench", "run", "tiny", "--methods", args.methods, "--seeds", args.seeds,
               "--out", os.path.join(tmp, "run")]
        if args.profile:
            cmd += ["--profile", args.profile]
        start = time.perf_counter()
        out = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
    lines = out.stdout.splitlines()
    print("\n".join(l for l in lines if l.startswith(("cells:", "time per phase:"))))
    print(f"wall time: {wall:.1f} s (exit {out.returncode})")
    if out.returncode:
        print(out.stderr[-2000:], file=sys.stderr)


if __name__ == "__main__":
    main()
