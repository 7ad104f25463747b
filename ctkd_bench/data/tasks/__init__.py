"""Generated task data for the offline suites: seeded, pure Python, no external text.

One module per track (``lm``, ``math``, ``instruct``, ``embed``), each with
``TRACK``, ``sample(rng) -> dict`` (one example without its id) and
``generate(n, seed) -> list[dict]``. Causal examples are ``{"id", "prompt",
"response", ...}`` with the prompt ending in ``"\\nAnswer:"`` and the response
starting with a space (``lm``: prompt ``""``, response = the document); encoder
examples are ``{"id", "text", "label", ...}``.

Design: the suite must separate methods. A teacher trained on much data has to
clearly beat the small student trained with SFT on a few thousand examples, and
the teacher's soft distribution must carry information a sampled target does not
("dark knowledge"). So every track has (a) easy structure a small model learns
from little data, (b) structure that needs much data or capacity (rare words,
long-range agreement, latent topics, negation and contrast, multi-step
arithmetic), and (c) real choices among alternatives (synonyms, paraphrased
rationale steps, instruction paraphrases, ambiguous reviews). The ``lm`` and
``embed`` tracks come from probabilistic grammars whose probabilities are exact
(`pcfg.PCFG.string_prob` sums over all derivations), which gives each a known
bound: the entropy floor of bits-per-byte (``lm``) and the Bayes-optimal accuracy
(``embed``); see `reference_metrics`. Texts are ASCII; ``embed`` texts are
lower-case without punctuation. Lengths: ``lm`` documents <= ~40 words,
``math`` rationales <= 24 words, ``instruct`` responses <= 12 words. Measured with
the ``tiny`` tokenizers (trained on the causal train splits, 8000 examples each),
the longest example (a ``math`` prompt + response) is 61 tokens for byte-level
BPE at 1024 and 104 for Unigram with byte fallback at 800 (its 256 byte tokens
leave little room for merges, so numbers split into digits); ``lm`` <= 57 / 79,
``instruct`` <= 29 / 46 tokens.

Splits (`make_splits`): every split is drawn from its own random stream, seeded
by (track, seed, split name), in the order test, validation, train, then any
other names sorted. One set of dedupe keys spans all splits of a track: an
example whose key was already drawn, in any split, is skipped. The key is the
prompt (the response is a function of it, and the same question must not be in
train and test), the document for ``lm`` and the text for ``embed``. Hence the
splits are disjoint and duplicate-free, the test split does not depend on the
other sizes, and a larger train split extends a smaller one (same test and
validation sizes). The dedupe skips 0% of ``lm`` draws, ~9% of ``math`` draws at
8000 examples (two templates have only ~2300 distinct questions each), <1% of
``instruct`` and ~7% of ``embed`` draws (mostly repeats of the commonest short
reviews); the ``lm`` floor and the ``embed`` Bayes labels are
exact per example either way.
"""
from __future__ import annotations

import random
from typing import Iterable, Mapping

from . import embed, gsm_symbolic, instruct, lm
from . import math as math_task
from ...defaults import ENCODER_TRACKS

TASKS = {"lm": lm, "math": math_task, "instruct": instruct, "embed": embed}
# Other generators of a task's examples, chosen by a track's `generator` field; module.TRACK is the task.
GENERATORS = {"gsm-symbolic": gsm_symbolic}
DEFAULT_SIZES = {"train": 2000, "validation": 100, "test": 200}
SPLIT_ORDER = ("test", "validation", "train")
MAX_DRAWS_PER_EXAMPLE = 20   # give up (the task's space is too small) after this many draws per kept example


def get_task(track: str):
    try:
        return TASKS[track] if track in TASKS else GENERATORS[track]
    except KeyError:
        raise ValueError(f"unknown track {track!r}; known: {sorted(TASKS) + sorted(GENERATORS)}") from None


def dedupe_key(track: str, example: Mapping) -> str:
    if track in ENCODER_TRACKS:
        return example["text"]
    return example["prompt"] or example["response"]


def example_text(track: str, example: Mapping) -> str:
    """The full text of an example (what a tokenizer sees)."""
    if track in ENCODER_TRACKS:
        return example["text"]
    return example["prompt"] + example["response"]


def _draw_order(splits: Iterable[str]) -> list[str]:
    names = list(splits)
    return [s for s in SPLIT_ORDER if s in names] + sorted(s for s in names if s not in SPLIT_ORDER)


def split_examples(track: str, sizes: Mapping[str, int], seed: int) -> dict[str, list[dict]]:
    """Disjoint, duplicate-free splits as plain lists of dicts (see the module docstring)."""
    task = get_task(track)
    seen: set[str] = set()
    out: dict[str, list[dict]] = {}
    for split in _draw_order(sizes):
        n = int(sizes[split])
        rng = random.Random(f"ctkd-bench/{track}/{seed}/{split}")   # str seeds are stable across runs
        rows: list[dict] = []
        for _ in range(MAX_DRAWS_PER_EXAMPLE * n + 100):
            if len(rows) == n:
                break
            example = task.sample(rng)
            key = dedupe_key(track, example)
            if key not in seen:
                seen.add(key)
                rows.append({"id": f"{track}-{split}-{len(rows)}", **example})
        if len(rows) < n:
            raise ValueError(f"{track}: only {len(rows)} distinct examples for split {split!r} (asked {n})")
        out[split] = rows
    return {split: out[split] for split in sizes}


def corrupt_share(track: str, examples: list[dict], share: float, seed: int) -> list[dict]:
    """``examples`` with round(share · n) of them, drawn with a stream seeded by (track, seed), given
    the task's systematically wrong answer (``corrupt``; noisy student labels, a track's ``noise``).
    The others are returned as they are, in the same order."""
    task = get_task(track)
    count = round(share * len(examples))
    if not count:
        return list(examples)
    if not hasattr(task, "corrupt"):
        raise ValueError(f"{track}: the task has no corrupt(); noisy labels need one of {noisy_tasks()}")
    rng = random.Random(f"ctkd-bench/{track}/{seed}/noise")
    chosen = set(rng.sample(range(len(examples)), count))
    return [task.corrupt(e, rng) if i in chosen else e for i, e in enumerate(examples)]


def noisy_tasks() -> list[str]:
    """The tasks and generators that can corrupt their answers."""
    return sorted(n for n, m in {**TASKS, **GENERATORS}.items() if hasattr(m, "corrupt"))


def features(track: str):
    """The `datasets.Features` of a track's splits (explicit, so empty splits are typed too)."""
    from datasets import ClassLabel, Features, Value

    text = Value("string")
    columns = {
        "lm": {"prompt": text, "response": text, "logprob_bits": Value("float64"),
               "prefix_logprob_bits": Value("float64"), "n_bytes": Value("int64")},
        "math": {"prompt": text, "response": text, "answer": text, "template": text},
        "instruct": {"prompt": text, "response": text, "answer": text, "task": text},
        "embed": {"text": text, "label": ClassLabel(names=list(embed.LABELS)), "bayes_label": Value("int64")},
    }[get_task(track).TRACK]
    return Features({"id": text, **columns})


def make_splits(track: str, sizes: Mapping[str, int], seed: int) -> dict:
    """``{split: datasets.Dataset}`` for the given sizes, e.g. {"train": 2000, "validation": 100, "test": 200}."""
    from datasets import Dataset

    feats = features(track)
    return {split: Dataset.from_dict({col: [row[col] for row in rows] for col in feats}, features=feats)
            for split, rows in split_examples(track, sizes, seed).items()}


def corpus_for_tokenizer(tracks: Iterable[str], seed: int, sizes: Mapping[str, int] | None = None) -> list[str]:
    """Plain texts of the train splits (never validation/test) to train tokenizers on.

    Pass the suite's sizes: the train split is drawn after test and validation.
    """
    sizes = dict(sizes or DEFAULT_SIZES)
    texts: list[str] = []
    for track in tracks:
        rows = split_examples(track, sizes, seed)["train"]
        texts.extend(example_text(track, ex) for ex in rows)
    return texts


def reference_metrics(track: str, examples) -> dict[str, float]:
    """Known bounds of the metric on these examples: the ``lm`` entropy floor of bits per byte
    (``bpb_floor`` without the end-of-sequence event, as lm-eval's loglikelihood_rolling scores;
    ``bpb_floor_with_eos`` with it), the ``embed`` Bayes-optimal accuracy; ``math``/``instruct``
    answers are exact (ceiling 1.0)."""
    if track == "lm":
        return {"bpb_floor": lm.entropy_floor_bpb(examples, eos=False),
                "bpb_floor_with_eos": lm.entropy_floor_bpb(examples, eos=True)}
    if track == "embed":
        return {"accuracy_ceiling": embed.bayes_accuracy(examples)}
    get_task(track)
    return {"exact_match_ceiling": 1.0}
