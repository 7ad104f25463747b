"""ALM's optional pieces: per-vocabulary space masks, the latents loss and GradMag.

Official: bminixhofer/tokenkit @ bcacdef — tokenkit/utils.py `get_space_mask`,
tokenkit/training/losses.py `compute_alm_latents_loss`, scripts/cross_tokenizer_distill.py
`train_step` (``approx_gradmag_preserve_mag``) and tokenkit/training/multitask.py.
"""
from __future__ import annotations

import torch

# Byte-level (GPT-2) characters of the bytes tokenkit's space mask checks: space, newline, tab.
_BYTE_LEVEL_WHITESPACE = ("\u0120", "\u010a", "\u0109")   # Ġ Ċ ĉ
_BYTE_FALLBACK_WHITESPACE = ("<0x20>", "<0x0A>", "<0x09>")


def starts_with_whitespace(token: str) -> bool:
    """True if the token's text begins with a space, newline or tab, in any of the token-string forms
    of byte-level BPE (Ġ/Ċ/ĉ), SentencePiece (▁, byte fallback ``<0x..>``) or raw characters. This is
    what tokenkit's check on the *byteified* token string computes."""
    if not token:
        return False
    return (token[0] in _BYTE_LEVEL_WHITESPACE or token[0] in ("\u2581", " ", "\n", "\t")
            or token.startswith(_BYTE_FALLBACK_WHITESPACE))


def space_mask(tokenizer, vocab_size: int) -> torch.Tensor:
    """[vocab_size] bool: the token starts with whitespace or is a special token
    (tokenkit ``space_mask_mode="space+tab+newline+special"``)."""
    special = set(tokenizer.all_special_ids)
    tokens = tokenizer.convert_ids_to_tokens(list(range(vocab_size)))
    return torch.tensor([i in special or starts_with_whitespace(t or "") for i, t in enumerate(tokens)],
                        dtype=torch.bool)


def latents_loss(student_hidden: torch.Tensor, teacher_hidden: torch.Tensor, s_last: torch.Tensor,
                 t_last: torch.Tensor, valid: torch.Tensor, projector=None, eps: float = 1e-8) -> torch.Tensor:
    """Hidden-state loss at chunk ends, ``latents_normalization="l2_channelwise"``.

    student_hidden [B, S, d_s], teacher_hidden [B, T, d_t]; s_last/t_last [B, C] long: the last token of
    each chunk on each side; valid [B, C] bool. The (projected) student state is compared with the
    teacher state; each channel's squared error is divided by the mean square of that teacher channel
    over the valid chunks. Returns the mean over valid chunks and channels.
    """
    s = student_hidden.gather(1, s_last.unsqueeze(-1).expand(-1, -1, student_hidden.shape[-1])).float()
    t = teacher_hidden.gather(1, t_last.unsqueeze(-1).expand(-1, -1, teacher_hidden.shape[-1])).float()
    if projector is not None:
        s = projector(s)
    w = valid.unsqueeze(-1).float()
    n = w.sum().clamp_min(1)
    channel_scale = (t.square() * w).sum((0, 1)) / n + eps            # [d_t]
    return ((s - t).square() * w / channel_scale).sum() / (n * t.shape[-1])


def last_block_parameters(hidden_states: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    """The trainable leaves between the last two entries of HF ``hidden_states``: the last transformer
    block (plus a final norm applied before the last entry). Found by walking the autograd graph from
    ``hidden_states[-1]`` down to ``hidden_states[-2]``. Empty when that is not possible."""
    if hidden_states is None or len(hidden_states) < 2 or hidden_states[-1].grad_fn is None:
        return []
    stop = hidden_states[-2].grad_fn
    seen, found, stack = set(), [], [hidden_states[-1].grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen or node is stop:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)    # AccumulateGrad: a leaf parameter
        if variable is not None:
            found.append(variable)
            continue
        stack.extend(next_fn for next_fn, _ in node.next_functions)
    return found


def gradmag_weights(losses: list[torch.Tensor], params: list[torch.Tensor], eps: float = 1e-8) -> torch.Tensor:
    """[n] detached weights 1 / (||d loss_i / d params|| + eps) (global norm over params)."""
    norms = []
    for loss in losses:
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        sq = sum((g.float().square().sum() for g in grads if g is not None),
                 torch.zeros((), device=loss.device))
        norms.append(sq.sqrt())
    return 1.0 / (torch.stack(norms) + eps)


def gradmag_combine(losses: list[torch.Tensor], params: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """GradMag (``approx_gradmag_preserve_mag``): sum_i w_i L_i / sum_i w_i with stop-gradient weights.

    Its gradient on ``params`` is sum_i g_i/||g_i|| / sum_i w_i — exactly the official last-layer
    update — and on every other parameter the gradient of the weighted sum, as in the official step.
    """
    w = gradmag_weights(losses, params).to(losses[0].device)
    total = sum(wi * li for wi, li in zip(w, losses)) / w.sum()
    return total, w
