"""Which next-token predictions of the two tokenisations are comparable (pure, on tensors)."""
from __future__ import annotations

import torch

from ctkd_bench import Side

IGNORE_INDEX = -100


def prediction_points(side: Side) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(rows, positions, starts) of predictions whose next token is a training target.

    Logits at position t predict token t + 1 (labels are unshifted); `starts` is the
    character where that next token begins, i.e. where the text the prediction saw ends.
    """
    next_is_target = side.labels[:, 1:] != IGNORE_INDEX
    real = side.attention_mask[:, :-1].bool()
    rows, pos = (next_is_target & real).nonzero(as_tuple=True)
    starts = side.offsets[rows, pos + 1, 0]
    return rows, pos, starts


def aligned_predictions(student: Side, teacher: Side) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(rows, student positions, teacher positions) of predictions made from the same text prefix.

    Both models then predict the next token starting at the same character, so their
    next-token distributions are over the same continuation (in different vocabularies).
    """
    s_rows, s_pos, s_start = prediction_points(student)
    t_rows, t_pos, t_start = prediction_points(teacher)
    if len(s_rows) == 0 or len(t_rows) == 0:
        empty = s_rows[:0]
        return empty, empty, empty
    stride = int(max(s_start.max(), t_start.max())) + 1
    t_key, order = (t_rows * stride + t_start).sort(stable=True)
    s_key = s_rows * stride + s_start
    idx = torch.searchsorted(t_key, s_key).clamp(max=len(t_key) - 1)
    hit = t_key[idx] == s_key
    return s_rows[hit], s_pos[hit], t_pos[order[idx[hit]]]
