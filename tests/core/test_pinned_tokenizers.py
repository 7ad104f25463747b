"""Pinned tokenizers: tiny's cold caches rebuild byte-identical tokenizers (Unigram/WordPiece training is not
reproducible across processes, so tiny ships them; ctkd_bench/models/tokenizers.py)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ctkd_bench.models import sources
from ctkd_bench.models.sources import load_tokenizer, tokenizer_hash
from ctkd_bench.run.environment import SuiteEnvironment
from ctkd_bench.specs import builtin_suite_dir, resolve_suite

PINS = builtin_suite_dir() / "pinned-tokenizers"


@pytest.mark.parametrize("profile", [None, "test"])
def test_every_tiny_tokenizer_has_a_current_pin(profile, tmp_path):
    suite = resolve_suite("tiny", profile)
    env = SuiteEnvironment(suite, tmp_path)
    for spec in suite.tokenizers:
        pin = PINS / f"{spec.name}-{env.build_tokenizer_key(spec.name)}.json"
        assert pin.is_file(), f"{pin.name} missing: run `python scripts/pin-tokenizers.py tiny" \
                              f"{' --profile ' + profile if profile else ''}`"
    assert not list(tmp_path.iterdir()), "computing a key trains or writes nothing"


def test_cold_cache_installs_the_pin_byte_for_byte(tmp_path):
    suite = resolve_suite("tiny", "test")
    env = SuiteEnvironment(suite, tmp_path)
    for spec in suite.tokenizers:
        key = env.build_tokenizer_key(spec.name)
        tok = load_tokenizer(spec, tmp_path, lambda: env.tokenizer_corpus(spec.name))
        written = tmp_path / "tokenizers" / f"{spec.name}-{key}" / "tokenizer.json"
        assert written.read_bytes() == (PINS / f"{spec.name}-{key}.json").read_bytes()
        assert len(tok) == len(tok.get_vocab()) and tok.pad_token is not None
        again = load_tokenizer(spec, tmp_path / "second", lambda: env.tokenizer_corpus(spec.name))
        assert tokenizer_hash(again) == tokenizer_hash(tok)


def test_unpinned_spec_is_trained(tmp_path, monkeypatch):
    suite = resolve_suite("tiny", "test")
    spec = dataclasses.replace(suite.tokenizer("unigram-800"), vocab_size=333)   # no pin for this key
    env = SuiteEnvironment(suite, tmp_path)
    texts = env.tokenizer_corpus("unigram-800")
    calls = []
    real = sources.train_tokenizer
    monkeypatch.setattr(sources, "train_tokenizer", lambda *a: calls.append(a[:1]) or real(*a))
    tok = load_tokenizer(spec, tmp_path, lambda: texts)
    assert calls == [("unigram",)]
    assert len(tok) <= 333 and tok.convert_tokens_to_ids("<s>") is not None
    assert not list(Path(PINS).glob(f"unigram-800-{sources.build_tokenizer_key(spec, texts)}.json"))
