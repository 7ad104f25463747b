"""Stand-ins for the paper suites: tiny random models of the papers' architecture classes with
real tokenizers, and tiny jsonl datasets in the papers' column formats. Offline; about a minute
the first time (real tokenizers are built into $CTKD_CACHE once), seconds after.

The ``standin`` profile of every ``suites/paper-*.yaml`` points at a folder made by::

    python -m ctkd_bench.testing.standin DIR        # then: export CTKD_STANDIN_DIR=DIR
    ctkd-bench run paper-dskd-qwen-gpt2 --profile standin --methods sft,dskd

Layout: ``DIR/models/<name>/`` (config.json + model.safetensors + tokenizer files) and
``DIR/data/<dataset>/<file>.jsonl``. Models are randomly initialised (2 layers, 16 wide):
the point is the pipeline, never the scores. Tokenizers are the real ones where a pip
package ships them (`ctkd_bench.align.realtok`); stand-ins where not (see STANDIN_MODELS).
"""
from __future__ import annotations

import json
import random
import sys
from pathlib import Path

HIDDEN, LAYERS, HEADS, POSITIONS = 16, 2, 2, 512

# name -> (model class, tokenizer family, what it stands in for). "unigram-local" is a
# SentencePiece-style Unigram trained here: Llama-2's tokenizer ships in no pip package.
STANDIN_MODELS = {
    "qwen2-qwen": ("Qwen2ForCausalLM", "qwen", "Qwen1.5-1.8B / Qwen1.5-7B-Chat / Qwen2.5-Math-7B-Instruct"),
    "gpt2-gpt2": ("GPT2LMHeadModel", "gpt2", "GPT2-120M"),
    "mistral-mistral": ("MistralForCausalLM", "mistral", "Mistral-7B-v0.1 (and LLM2Vec-Mistral-7B for EMO)"),
    "llama-unigram": ("LlamaForCausalLM", "unigram-local", "TinyLlama-1.1B (Llama-2 tokenizer: local Unigram)"),
    "llama-deepseek": ("LlamaForCausalLM", "deepseek", "OpenMath2-Llama3.1-8B (Llama-3 tokenizer: DeepSeek BPE)"),
    "gemma2-mistral": ("Gemma2ForCausalLM", "mistral", "gemma-2-2b-it (Gemma tokenizer: Mistral SentencePiece)"),
    "opt-gpt2": ("OPTForCausalLM", "gpt2", "OPT-350m (OPT uses the GPT-2 BPE vocabulary)"),
    "bert-bert": ("BertModel", "bert", "bert-base-uncased (MiniLM ships its uncased WordPiece vocabulary)"),
}

_WORDS = ("red blue green small large quick slow river mountain city garden music paper stone light "
          "water market teacher student window").split()


def _config(cls_name: str, vocab: int, tok):
    import transformers as T

    common = dict(vocab_size=vocab, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                  pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
    llama_like = dict(hidden_size=HIDDEN, intermediate_size=2 * HIDDEN, num_hidden_layers=LAYERS,
                      num_attention_heads=HEADS, num_key_value_heads=HEADS, max_position_embeddings=POSITIONS,
                      tie_word_embeddings=True, **common)
    if cls_name == "GPT2LMHeadModel":
        return T.GPT2Config(n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS, n_positions=POSITIONS, **common)
    if cls_name == "OPTForCausalLM":
        return T.OPTConfig(hidden_size=HIDDEN, ffn_dim=2 * HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                           word_embed_proj_dim=HIDDEN, max_position_embeddings=POSITIONS, **common)
    if cls_name == "BertModel":
        return T.BertConfig(hidden_size=HIDDEN, intermediate_size=2 * HIDDEN, num_hidden_layers=LAYERS,
                            num_attention_heads=HEADS, max_position_embeddings=POSITIONS, **common)
    if cls_name == "Gemma2ForCausalLM":
        return T.Gemma2Config(head_dim=HIDDEN // HEADS, **llama_like)
    config_cls = {"Qwen2ForCausalLM": T.Qwen2Config, "MistralForCausalLM": T.MistralConfig,
                  "LlamaForCausalLM": T.LlamaConfig}[cls_name]
    return config_cls(**llama_like)


def _tokenizer(family: str, texts: list[str], folder: Path):
    if family == "unigram-local":
        from ..models.tokenizers import train_tokenizer
        return train_tokenizer("unigram", texts, 400, folder)
    from ..align.realtok import real_tokenizer
    tok = real_tokenizer(family)
    tok.save_pretrained(folder)
    return tok


def build_model(name: str, folder: Path, texts: list[str], seed: int = 0) -> Path:
    """One stand-in model folder (skipped when it exists)."""
    import torch
    import transformers as T

    if (folder / "config.json").exists():
        return folder
    cls_name, family, _ = STANDIN_MODELS[name]
    tmp = folder.with_name(folder.name + ".tmp")
    tok = _tokenizer(family, texts, tmp)
    torch.manual_seed(seed)
    model = getattr(T, cls_name)(_config(cls_name, len(tok), tok))
    model.save_pretrained(tmp, safe_serialization=True)
    tmp.replace(folder)
    return folder


# --------------------------------------------------------------------------- data
def _phrase(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(n))


def _rows(dataset: str, rng: random.Random, n: int) -> list[dict]:
    """`n` rows in the column format of `dataset` (the hub dataset's own column names)."""
    rows = []
    for _ in range(n):
        a, b, words = rng.randint(2, 9), rng.randint(2, 9), _phrase(rng, 3)
        rows.append({
            "minillm": {"instruction": f"Repeat: {words}", "input": "", "output": words},
            "gsm8k": {"question": f"Tom has {a} apples and buys {b} more. How many now?",
                      "answer": f"{a} + {b} = {a + b}\n#### {a + b}"},
            "openwebmath": {"text": f"Let x = {a}. Then x + {b} = {a + b}, since {words}.", "url": "x"},
            "openmathinstruct2": {"problem": f"What is {a} times {b}?", "expected_answer": str(a * b),
                                  "generated_solution": f"{a} times {b} is {a * b}. The answer is {a * b}."},
            "banking77": {"text": f"my card {words} does not work", "label": rng.randint(0, 2)},
            "fairytaleqa": {"story_section": f"The {words} fox lived by the river.",
                            "question": "Where did the fox live?", "answer1": "by the river"},
            "dialogsum": {"dialogue": f"#Person1#: I like {words}. #Person2#: Me too.",
                          "summary": f"Both like {words}."},
        }[dataset])
    return rows


# dataset folder -> (column format, {file name: rows})
STANDIN_DATA = {
    "dolly": ("minillm", {"train.jsonl": 12, "valid.jsonl": 3}),
    "self-inst": ("minillm", {"valid.jsonl": 2}),
    "vicuna": ("minillm", {"valid.jsonl": 2}),
    "sinst": ("minillm", {"valid.jsonl": 2}),
    "uinst": ("minillm", {"valid.jsonl": 2}),
    "gsm8k": ("gsm8k", {"train.jsonl": 12, "test.jsonl": 3}),
    "openwebmath": ("openwebmath", {"train.jsonl": 12}),
    "openmathinstruct2": ("openmathinstruct2", {"train_1M.jsonl": 12}),
    "banking77": ("banking77", {"train.jsonl": 12, "test.jsonl": 6}),
    "sst5": ("banking77", {"train.jsonl": 12, "test.jsonl": 6}),
    "fairytaleqa": ("fairytaleqa", {"train.jsonl": 12, "test.jsonl": 3}),
    "dialogsum": ("dialogsum", {"train.jsonl": 12, "test.jsonl": 3}),
}


def write_data(root: Path, seed: int = 0) -> list[str]:
    """All stand-in datasets under ``root``; returns every text (a corpus for local tokenizers)."""
    texts = []
    for folder, (fmt, files) in STANDIN_DATA.items():
        for file, n in files.items():
            rows = _rows(fmt, random.Random(f"{folder}/{file}/{seed}"), n)
            path = root / folder / file
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
            texts += [" ".join(str(v) for v in r.values()) for r in rows]
    return texts


def build_standins(root: Path, models: tuple[str, ...] | None = None) -> Path:
    """The whole stand-in folder (models listed in `models`, default all); idempotent."""
    root = Path(root)
    texts = write_data(root / "data")
    for name in models or tuple(STANDIN_MODELS):
        build_model(name, root / "models" / name, texts)
    return root


if __name__ == "__main__":  # pragma: no cover - a convenience for users
    if len(sys.argv) != 2:
        sys.exit("usage: python -m ctkd_bench.testing.standin DIR")
    print(build_standins(Path(sys.argv[1])))
