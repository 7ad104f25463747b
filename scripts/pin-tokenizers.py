"""Pin a suite's locally trained tokenizers so every cold cache rebuilds the same ones.

The `tokenizers` Unigram and WordPiece trainers give a different vocabulary in
every process, so without pins two cold caches train different student
tokenizers and hence different teachers. This writes each `build` tokenizer of
the suite (and profile) to suites/pinned-tokenizers/<name>-<key>.json, taking
the tokenizer already in $CTKD_CACHE when there is one (so a published run's
tokenizers are the ones pinned), training it otherwise:

    python scripts/pin-tokenizers.py tiny
    python scripts/pin-tokenizers.py tiny --profile test

Re-run it after changing a tokenizer spec or the data its corpus comes from;
tests/core/test_pinned_tokenizers.py fails while tiny's pins are stale.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from ctkd_bench.models.sources import load_tokenizer
from ctkd_bench.run.environment import SuiteEnvironment
from ctkd_bench.specs import builtin_suite_dir, resolve_suite
from ctkd_bench.defaults import cache_root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suite")
    parser.add_argument("--profile", default=None)
    args = parser.parse_args()
    suite = resolve_suite(args.suite, args.profile)
    cache = cache_root()
    env = SuiteEnvironment(suite, cache)
    out = builtin_suite_dir() / "pinned-tokenizers"
    out.mkdir(exist_ok=True)
    for spec in suite.tokenizers:
        if spec.source != "build":
            continue
        key = env.build_tokenizer_key(spec.name)
        load_tokenizer(spec, cache, lambda: env.tokenizer_corpus(spec.name))   # from the cache, a pin, or trained
        target = out / f"{spec.name}-{key}.json"
        shutil.copyfile(cache / "tokenizers" / f"{spec.name}-{key}" / "tokenizer.json", target)
        print(f"{spec.name} ({spec.family}, {spec.vocab_size}): {target}")


if __name__ == "__main__":
    main()
