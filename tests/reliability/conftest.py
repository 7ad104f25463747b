"""Reliability tests share one $CTKD_CACHE (tokenizers, teacher, signals built once for the directory);
the kill-and-resume module uses its own fresh caches, since killing cache writes is its point."""
import pytest


@pytest.fixture(scope="session")
def rel_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("rel-cache")
        mp.setenv("CTKD_CACHE", str(path))
        yield path
