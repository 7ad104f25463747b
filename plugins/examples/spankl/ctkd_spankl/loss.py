"""The span-KL loss on aligned predictions (pure, on tensors)."""
from __future__ import annotations

import torch


def exact_match_kl(student_logprobs: torch.Tensor, teacher_logprobs: torch.Tensor,
                   student_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """KL(q || p_S) per prediction, q = the teacher's top-k restricted to tokens with a student twin.

    student_logprobs: [N, V_s] student log-softmax at the aligned predictions.
    teacher_logprobs: [N, k] the teacher's top-k log-probs there.
    student_ids: [N, k] each top-k token's student twin, -1 where it has none
    (distinct within a row: the twin map is injective).
    Returns (kl [N], has_twin [N]); kl is 0 where no top-k token has a twin.
    """
    twin = student_ids >= 0
    has_twin = twin.any(-1)
    norm = torch.logsumexp(teacher_logprobs.masked_fill(~twin, float("-inf")), -1, keepdim=True)
    log_q = (teacher_logprobs - torch.where(has_twin[:, None], norm, 0.0)).masked_fill(~twin, 0.0)
    q = log_q.exp() * twin
    log_p = student_logprobs.gather(-1, student_ids.clamp(min=0))
    return (q * (log_q - log_p)).sum(-1), has_twin
