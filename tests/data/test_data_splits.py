import random
import time

import pytest

from ctkd_bench.data import tasks
from ctkd_bench.data.tasks import (DEFAULT_SIZES, TASKS, corpus_for_tokenizer, dedupe_key, example_text,
                                   make_splits, reference_metrics, split_examples)

SMALL = {"train": 60, "validation": 10, "test": 20}


@pytest.mark.parametrize("track", sorted(TASKS))
def test_splits_are_disjoint_seeded_and_sized(track):
    splits = split_examples(track, SMALL, seed=7)
    assert {k: len(v) for k, v in splits.items()} == SMALL
    keys = [dedupe_key(track, ex) for rows in splits.values() for ex in rows]
    assert len(keys) == len(set(keys))                      # disjoint across and within splits
    ids = [ex["id"] for rows in splits.values() for ex in rows]
    assert len(ids) == len(set(ids))
    assert split_examples(track, SMALL, seed=7) == splits
    assert split_examples(track, SMALL, seed=8)["test"] != splits["test"]


def test_test_split_is_independent_of_train_size_and_train_extends():
    small = split_examples("math", SMALL, seed=1)
    big = split_examples("math", {**SMALL, "train": 150}, seed=1)
    assert big["test"] == small["test"] and big["validation"] == small["validation"]
    assert big["train"][:60] == small["train"]
    extra = split_examples("math", {**SMALL, "teacher": 40}, seed=1)
    assert extra["train"] == small["train"]
    assert not {dedupe_key("math", ex) for ex in extra["teacher"]} & {
        dedupe_key("math", ex) for rows in small.values() for ex in rows}


def test_duplicates_are_skipped_and_exhaustion_is_reported(monkeypatch):
    class Coin:
        @staticmethod
        def sample(rng: random.Random) -> dict:
            return {"prompt": f"Q{rng.randint(0, 3)}\nAnswer:", "response": " x"}

    monkeypatch.setitem(TASKS, "coin", Coin)
    splits = split_examples("coin", {"train": 2, "test": 2}, seed=0)
    prompts = [ex["prompt"] for rows in splits.values() for ex in rows]
    assert sorted(prompts) == [f"Q{i}\nAnswer:" for i in range(4)]
    with pytest.raises(ValueError, match="distinct"):
        split_examples("coin", {"train": 3, "test": 2}, seed=0)
    with pytest.raises(ValueError, match="unknown track"):
        split_examples("poetry", SMALL, seed=0)


def test_make_splits_returns_typed_datasets():
    ds = make_splits("embed", {"train": 30, "validation": 0, "test": 10}, seed=0)
    assert set(ds) == {"train", "validation", "test"} and len(ds["validation"]) == 0
    assert ds["test"].features["label"].names == list(tasks.embed.LABELS)
    assert set(ds["validation"].column_names) == {"id", "text", "label", "bayes_label"}
    lm = make_splits("lm", SMALL, seed=0)
    assert lm["test"][0]["prompt"] == "" and isinstance(lm["test"][0]["logprob_bits"], float)
    assert reference_metrics("lm", lm["test"])["bpb_floor"] > 0


def test_tokenizer_corpus_is_train_text_only():
    corpus = corpus_for_tokenizer(["instruct", "embed"], seed=3, sizes=SMALL)
    assert len(corpus) == 2 * SMALL["train"]
    held_out = {example_text(track, ex) for track in ("instruct", "embed")
                for split, rows in split_examples(track, SMALL, seed=3).items() if split != "train" for ex in rows}
    assert not held_out & set(corpus)


def test_all_tracks_generate_within_two_seconds():
    start = time.process_time()   # CPU time: robust to other processes sharing the machine
    for track in TASKS:
        split_examples(track, DEFAULT_SIZES, seed=0)
    assert time.process_time() - start < 2.0
