"""Shared test setup: offline, single-threaded, and isolated caches."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("CTKD_PROGRESS", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

if "OMP_NUM_THREADS" not in os.environ:  # honour an explicit thread count (shared machines)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    """A fresh $CTKD_CACHE for tests that build tokenizers, teachers or signals."""
    path = tmp_path / "cache"
    monkeypatch.setenv("CTKD_CACHE", str(path))
    return path
