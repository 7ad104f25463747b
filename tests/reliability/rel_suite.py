"""A small valid suite (one LM track, tiny models) for the reliability tests, and YAML helpers."""
from __future__ import annotations

import copy
from pathlib import Path

import yaml

DELETE = object()

SUITE = {
    "name": "rel",
    "seed": 7,
    "seeds": [0],
    "tokenizers": {"bpe-t": {"family": "bpe", "vocab_size": 400},
                   "uni-s": {"family": "unigram", "vocab_size": 350}},
    "models": {
        "teacher": {"source": "build", "arch": "gpt2", "tokenizer": "bpe-t", "hidden_size": 32, "num_layers": 2,
                    "num_heads": 4, "train": {"steps": 30, "batch_size": 16, "lr": 0.005, "examples": 200}},
        "student": {"source": "build", "arch": "llama", "tokenizer": "uni-s", "hidden_size": 24,
                    "num_layers": 2, "num_heads": 4},
    },
    "pairs": {"gpt2_to_llama": {"teacher": "teacher", "student": "student"}},
    "tracks": {"lm": {"pair": "gpt2_to_llama", "train": 48, "validation": 8, "test": 8}},
    "budget": {"steps": 4, "examples_per_step": 4, "max_length": 96, "eval_batch_size": 16},
}


def suite_data(**overrides) -> dict:
    """SUITE with dotted-path overrides: suite_data(**{"budget.steps": 6}); DELETE removes a key."""
    data = copy.deepcopy(SUITE)
    for dotted, value in overrides.items():
        *parents, last = dotted.split(".")
        node = data
        for key in parents:
            node = node.setdefault(key, {})
        if value is DELETE:
            node.pop(last, None)
        else:
            node[last] = value
    return data


def write_suite(path: Path, data: dict | None = None, **overrides) -> Path:
    path = Path(path)
    path.write_text(yaml.safe_dump(data if data is not None else suite_data(**overrides), sort_keys=False))
    return path
