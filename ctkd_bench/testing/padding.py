"""Re-lay a right-padded step as left-padded, with noise at the padding.

Used by the padding-invariance check: the loss of a correct method depends
only on real tokens, so moving every row's padding from the right to the left
(tensors rolled with their tokens) and filling the student's padding positions
with random values must leave the loss unchanged. Rolling the model outputs
instead of running the models again makes the real positions bit-identical, so
any difference is the method's own doing.
"""
from __future__ import annotations

import torch

from ..batch import PairBatch, StudentOutputs
from .harness import RecordingSignals, Step

# teacher signal -> dims (of the batched tensor) that run over token positions
TEACHER_SEQ_DIMS = {"logits": (1,), "topk_logprobs": (1,), "topk_ids": (1,), "token_logprobs": (1,),
                    "hidden_states": (1,), "attentions": (2, 3)}


def roll_rows(x: torch.Tensor, lengths: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """Move each row's trailing padding to the front: roll row b by (width - length_b) along `dims`."""
    width = x.shape[dims[0]]
    rows = [torch.roll(x[b], shifts=(int(width - n),) * len(dims), dims=tuple(d - 1 for d in dims))
            for b, n in enumerate(lengths.tolist())]
    return torch.stack(rows)


def _noisy_pads(x: torch.Tensor, pad: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """`x` with positions where `pad` [B, L] is true replaced by random values."""
    noise = torch.randn(x.shape, generator=gen, dtype=x.dtype) * 3.0
    mask = pad.view(*pad.shape, *([1] * (x.dim() - 2)))
    return torch.where(mask, noise.to(x.device), x)


def left_pad_student(out: StudentOutputs, lengths: torch.Tensor, pad: torch.Tensor,
                     gen: torch.Generator, views: dict) -> StudentOutputs:
    causal = out.logits.dim() == 3
    logits = _noisy_pads(roll_rows(out.logits, lengths, (1,)), pad, gen) if causal else out.logits
    hidden = out.hidden_states and tuple(_noisy_pads(roll_rows(h, lengths, (1,)), pad, gen)
                                         for h in out.hidden_states)
    attn = out.attentions and tuple(roll_rows(a, lengths, (2, 3)) for a in out.attentions)
    return StudentOutputs(logits, out.ce, hidden, attn, out.embedding_weight, out.lm_head_weight, views)


def left_pad_teacher(sig: RecordingSignals, lengths: torch.Tensor, views: dict) -> RecordingSignals:
    values = {}
    for name, value in sig._values.items():
        dims = TEACHER_SEQ_DIMS.get(name)
        if dims is None:              # class logits, embeddings, lm_head, generations
            values[name] = value
        elif isinstance(value, dict):  # {layer: tensor}
            values[name] = {k: roll_rows(v, lengths, dims) for k, v in value.items()}
        else:
            values[name] = roll_rows(value, lengths, dims)
    return RecordingSignals(sig._needs, values, views, sig._reads)


def _shifts(side, target_side) -> torch.Tensor:
    """Row lengths to roll by for `roll_rows`: the real lengths, or the full width (no move)."""
    if target_side.padding_side == "left":
        return side.lengths
    return torch.full_like(side.lengths, side.input_ids.shape[1])


def to_left_padding(step: Step, left: PairBatch, gen: torch.Generator) -> Step:
    """`step` (right-padded) re-laid out to match `left`, the same examples collated left-padded.

    Where the core pads on the right only (encoder tracks), `left` is right-padded and
    only the noise at the padding positions changes.
    """
    right = step.batch
    s_len, t_len = _shifts(right.student, left.student), _shifts(right.teacher, left.teacher)
    for side, ref, n in ((right.student, left.student, s_len), (right.teacher, left.teacher, t_len)):
        if not torch.equal(roll_rows(side.input_ids, n, (1,)), ref.input_ids):
            raise AssertionError("internal: left- and right-padded collation disagree on the tokens")
    views_s, views_t = {}, {}
    for name in right.views:
        sub = to_left_padding(Step(right.views[name], step.student.views[name], step.teacher.views[name]),
                              left.views[name], gen)
        views_s[name], views_t[name] = sub.student, sub.teacher
    pad = ~left.student.attention_mask.bool()
    student = left_pad_student(step.student, s_len, pad, gen, views_s)
    teacher = left_pad_teacher(step.teacher, t_len, views_t)
    return Step(left, student, teacher)
