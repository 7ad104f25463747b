"""Compute teacher signals from a live teacher (used by the cache and by tests).

The cache stores *raw* per-token tensors (last hidden state, declared layers,
attentions); logits, top-k and token log-probs are derived from the last
hidden state through a frozen copy of the teacher's output projection. This is
exact (logits = lm_head(h_last)) and keeps the cache small for big vocabularies.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..batch import Side, TeacherSignals
from ..method import Needs


@dataclass
class TeacherHead:
    """Frozen copies of what derived signals need; never the teacher module itself."""
    lm_head: torch.Tensor | None       # [V_real, d] (causal)
    lm_bias: torch.Tensor | None
    embeddings: torch.Tensor | None    # [V_real, d]
    vocab_size: int

    @classmethod
    def from_model(cls, model, vocab_size: int) -> "TeacherHead":
        emb = model.get_input_embeddings().weight.detach()[:vocab_size].clone()
        out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        if out is None:
            return cls(None, None, emb, vocab_size)
        bias = getattr(out, "bias", None)
        return cls(out.weight.detach()[:vocab_size].clone(), None if bias is None else bias.detach()[:vocab_size].clone(),
                   emb, vocab_size)


def raw_keys(needs: Needs, encoder: bool) -> list[str]:
    """The raw cache entries needed to serve `needs`."""
    keys = []
    if encoder:
        if needs.logits:
            keys.append("class_logits")
    elif needs.logits or needs.topk or needs.token_logprobs:
        keys.append("hidden.-1")
    keys += [f"hidden.{layer}" for layer in needs.hidden_states]
    keys += [f"attn.{layer}" for layer in needs.attentions]
    return sorted(set(keys))


@torch.no_grad()
def teacher_raw(model, side: Side, keys: list[str]) -> dict[str, torch.Tensor]:
    """One teacher forward on `side`; returns padded [B, L, ...] tensors for each raw key."""
    want_attn = any(k.startswith("attn.") for k in keys)
    out = model(input_ids=side.input_ids, attention_mask=side.attention_mask, position_ids=side.position_ids,
                output_hidden_states=True, output_attentions=want_attn)
    raw = {}
    for key in keys:
        kind, _, layer = key.partition(".")
        if kind == "hidden":
            raw[key] = out.hidden_states[int(layer)].float()
        elif kind == "attn":
            raw[key] = out.attentions[int(layer)].float()
        elif kind == "class_logits":
            raw[key] = out.logits.float()
    return raw


def derive_signals(raw: dict[str, torch.Tensor], needs: Needs, head: TeacherHead, side: Side,
                   generations: list[str] | None = None) -> TeacherSignals:
    """Build the `TeacherSignals` a method declared from raw tensors of one batch."""
    values = {}
    mask = side.attention_mask.bool()
    if "class_logits" in raw:
        values["class_logits"] = raw["class_logits"]
    if "hidden.-1" in raw and head.lm_head is not None and (needs.logits or needs.topk or needs.token_logprobs):
        logits = raw["hidden.-1"] @ head.lm_head.T
        if head.lm_bias is not None:
            logits = logits + head.lm_bias
        logits = logits * mask.unsqueeze(-1)
        if needs.logits:
            values["logits"] = logits
        # only top-k and token log-probs need the normalised log-probs (most methods take logits)
        logprobs = torch.log_softmax(logits, dim=-1) if needs.topk or needs.token_logprobs else None
        if needs.topk:
            k = min(needs.topk, logits.shape[-1])
            top_lp, top_ids = logprobs.topk(k, dim=-1)
            values["topk_logprobs"], values["topk_ids"] = top_lp, top_ids
        if needs.token_logprobs:
            nxt = side.input_ids[:, 1:].unsqueeze(-1)
            tok = logprobs[:, :-1].gather(-1, nxt).squeeze(-1) * mask[:, 1:]
            values["token_logprobs"] = torch.cat([tok, tok.new_zeros(tok.shape[0], 1)], dim=1)
    if needs.hidden_states:
        values["hidden_states"] = {layer: raw[f"hidden.{layer}"] for layer in needs.hidden_states}
    if needs.attentions:
        values["attentions"] = {layer: raw[f"attn.{layer}"] for layer in needs.attentions}
    if needs.embeddings:
        values["embeddings"] = head.embeddings
    if needs.lm_head:
        values["lm_head"] = head.lm_head
    if needs.generations and generations is not None:
        values["generations"] = generations
    return TeacherSignals(needs, values)


def live_teacher_signals(model, side: Side, needs: Needs, head: TeacherHead, encoder: bool,
                         generations: list[str] | None = None) -> TeacherSignals:
    """Teacher signals computed directly (no cache): tests, the conformance kit, the no-cache benchmark."""
    raw = teacher_raw(model, side, raw_keys(needs, encoder))
    return derive_signals(raw, needs, head, side, generations)
