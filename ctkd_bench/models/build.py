"""Small transformers models built from configs (the tiny suites' teachers and students).

Causal: ``gpt2`` or ``llama`` architectures; encoder: ``bert`` with a
sequence-classification head. Initialisation is seeded, so the student starts
from the same weights for every method of a cell's seed.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ArchSpec:
    arch: str            # gpt2 | llama | bert
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    max_positions: int = 256
    num_labels: int = 0  # encoder classification head size


def build_model(spec: ArchSpec, tokenizer, seed: int):
    """A freshly initialised model for `tokenizer`, deterministic in `seed`."""
    from transformers import (BertConfig, BertForSequenceClassification, GPT2Config, GPT2LMHeadModel,
                              LlamaConfig, LlamaForCausalLM)

    vocab = len(tokenizer)
    special = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                   pad_token_id=tokenizer.pad_token_id)
    if spec.arch == "gpt2":
        config = GPT2Config(vocab_size=vocab, n_embd=spec.hidden_size, n_layer=spec.num_layers,
                            n_head=spec.num_heads, n_positions=spec.max_positions, **special)
        cls = GPT2LMHeadModel
    elif spec.arch == "llama":
        config = LlamaConfig(vocab_size=vocab, hidden_size=spec.hidden_size,
                             intermediate_size=spec.hidden_size * 4, num_hidden_layers=spec.num_layers,
                             num_attention_heads=spec.num_heads, num_key_value_heads=spec.num_heads,
                             max_position_embeddings=spec.max_positions, tie_word_embeddings=False,
                             **special)
        cls = LlamaForCausalLM
    elif spec.arch == "bert":
        config = BertConfig(vocab_size=vocab, hidden_size=spec.hidden_size, num_hidden_layers=spec.num_layers,
                            num_attention_heads=spec.num_heads, intermediate_size=spec.hidden_size * 4,
                            max_position_embeddings=spec.max_positions, num_labels=spec.num_labels,
                            pad_token_id=tokenizer.pad_token_id)
        cls = BertForSequenceClassification
    else:
        raise ValueError(f"unknown architecture {spec.arch!r}; expected gpt2, llama or bert")
    config._attn_implementation = "eager"  # attentions must be readable (EMO, diagnostics)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls(config)
