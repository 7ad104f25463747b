"""The student forward pass that every method shares."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..batch import Side, StudentOutputs
from ..defaults import IGNORE_INDEX
from ..method import Needs


def causal_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token CE over labelled positions (HF convention: row t predicts t+1)."""
    shift_logits = logits[:, :-1].reshape(-1, logits.shape[-1])
    shift_labels = labels[:, 1:].reshape(-1)
    if (shift_labels != IGNORE_INDEX).sum() == 0:
        return logits.sum() * 0.0
    return F.cross_entropy(shift_logits.float(), shift_labels, ignore_index=IGNORE_INDEX)


def student_forward(model, side: Side, needs: Needs, vocab_size: int | None,
                    targets: torch.Tensor | None = None) -> StudentOutputs:
    """Run the student with the outputs `needs` asks for; compute its task CE."""
    out = model(input_ids=side.input_ids, attention_mask=side.attention_mask, position_ids=side.position_ids,
                output_hidden_states=needs.student_hidden_states,
                output_attentions=needs.student_attentions)
    logits = out.logits
    base = model if hasattr(model, "get_input_embeddings") else model.module  # a DDP/FSDP wrapper: its model
    if targets is not None:  # encoder: classification
        ce = F.cross_entropy(logits.float(), targets)
        lm_head = None
    else:
        if vocab_size is not None:
            logits = logits[..., :vocab_size]
        ce = causal_ce(logits, side.labels)
        head = base.get_output_embeddings()
        lm_head = head.weight[:logits.shape[-1]] if head is not None else None
    return StudentOutputs(
        logits=logits,
        ce=ce,
        hidden_states=out.hidden_states if needs.student_hidden_states else None,
        attentions=out.attentions if needs.student_attentions else None,
        embedding_weight=base.get_input_embeddings().weight,
        lm_head_weight=lm_head,
    )
