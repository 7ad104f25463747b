"""ALM's pure loss pieces on tensors (chunk likelihoods, debiasing, merging, binarised divergences).

Official: bminixhofer/tokenkit @ bcacdef, tokenkit/training/losses.py (`compute_alm_loss`,
`get_last_index_per_column`, `log1mexp`); paper arXiv:2503.20083 Sec. 3 (chunk likelihoods, binarised
f-divergence, outcome-chunk debiasing). See `ctkd_methods.alm` for the method and its deviations.

Conventions used throughout: ``token_logp[b, t] = log p(ids[b, t+1] | ids[b, :t+1])`` (HF: row t
predicts token t+1; the last column is unused); ``space_logp[b, t] = log P(token t+1 starts with
whitespace or is special)``; ``member[b, t, c]`` bool: token t is in chunk c. Any padding side: padding
never belongs to a chunk.
"""
from __future__ import annotations

import torch

EPSILON = 1e-6          # subtracted after scaling by tau (official `epsilon`)
_TINY = 1e-30           # below this the space mass is recomputed in log space
MODE_FLAGS = ("append_space", "merge_by_space_prob")
DIVERGENCES = ("binary_ce", "reverse_binary_kl", "abs_exp", "abs")


def parse_mode(mode: str) -> set[str]:
    """``"merge_by_space_prob+append_space"`` -> flags; ``""`` or ``"naive"``: no debiasing, no merging."""
    flags = {f for f in mode.split("+") if f and f != "naive"}
    unknown = flags - set(MODE_FLAGS)
    if unknown:
        raise ValueError(f"unknown alm_mode flags {sorted(unknown)}; expected a '+' list of {MODE_FLAGS}")
    return flags


class _TokenSpaceLogprobs(torch.autograd.Function):
    """(token_logp [B, L-1], space_logp [B, L]) of fp32 logits [B, L, V], unclipped, with the analytic
    gradient: d token/d logits = onehot - p and d space/d logits = q - p, where p = softmax(logits)
    and q = the softmax restricted to the space tokens (p * mask / mass). One pass over the vocabulary
    in backward instead of autograd's chain through exp, the mass product, gather and concatenation
    (the ALM step cost); the forward values are the same expressions as before."""

    @staticmethod
    def forward(ctx, logits, ids, space_mask):
        top = logits.amax(-1, keepdim=True)
        scaled = (logits - top).exp_()
        z = scaled.sum(-1)
        lse = top.squeeze(-1) + z.log()
        token = logits[:, :-1].gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1) - lse[:, :-1]
        mask = space_mask.to(scaled.dtype)
        mass = scaled @ mask
        space = top.squeeze(-1) + mass.clamp_min(_TINY).log() - lse
        low = mass < _TINY
        exact_q = None
        if bool(low.any()):
            where = low.nonzero(as_tuple=True)
            masked = logits[where].masked_fill(~space_mask.bool(), float("-inf"))
            exact = masked.logsumexp(-1)
            space = space.index_put(where, exact - lse[where])
            exact_q = torch.exp(masked - exact.unsqueeze(-1))       # q on the underflowing rows
        ctx.save_for_backward(scaled, z, mass, mask, ids, low, exact_q)
        return token, space

    @staticmethod
    def backward(ctx, g_token, g_space):
        scaled, z, mass, mask, ids, low, exact_q = ctx.saved_tensors
        g_tok = torch.cat([g_token, g_token.new_zeros(g_token.shape[0], 1)], dim=1)
        a = torch.where(low, torch.zeros_like(g_space), g_space / mass.clamp_min(_TINY))
        b = ((g_tok + g_space) / z).unsqueeze(-1)
        grad = torch.where(mask.bool(), a.unsqueeze(-1) - b, -b).mul_(scaled)
        if exact_q is not None:
            where = low.nonzero(as_tuple=True)
            grad.index_put_(where, grad[where] + g_space[where].unsqueeze(-1) * exact_q)
        grad[:, :-1].scatter_add_(-1, ids[:, 1:].unsqueeze(-1), g_token.unsqueeze(-1))
        return grad, None, None


def token_and_space_logprobs(logits: torch.Tensor, ids: torch.Tensor,
                             space_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """From raw logits [B, L, V] (real vocabulary), ids [B, L] and space_mask [V] bool:
    (token_logp [B, L], space_logp [B, L]) in fp32, both clipped at 0 as in the official code.

    One exponential pass over the vocabulary: exp(logits - max) gives the normaliser and, by a product
    with the mask, the space mass. Rows whose space mass underflows are recomputed exactly with a
    logsumexp over the space tokens (the official log of a dot product would give -inf there).
    The gradient is analytic (`_TokenSpaceLogprobs`).
    """
    token, space = _TokenSpaceLogprobs.apply(logits.float(), ids, space_mask.to(logits.device))
    token = torch.cat([token, token.new_zeros(token.shape[0], 1)], dim=1).clamp(max=0.0)
    return token, space.clamp(max=0.0)


def last_index_per_chunk(member: torch.Tensor) -> torch.Tensor:
    """[B, L, C] bool -> [B, C] long: the last token of each chunk's (first) run; 0 for empty chunks.

    Same rule as tokenkit's `get_last_index_per_column`: a token is "last" if the next one is not in
    the chunk, and the first such token wins.
    """
    last_only = member.clone()
    last_only[:, :-1] &= ~member[:, 1:]
    return last_only.to(torch.uint8).argmax(dim=1)


def chunk_logliks(token_logp: torch.Tensor, space_logp: torch.Tensor,
                  member: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per chunk: (main-path log-likelihood [B, C] clipped at 0, space log-prob at the chunk's last
    token [B, C], number of tokens [B, C]). Token 0 has no prediction and is never counted."""
    m = member.clone()
    m[:, 0] = False
    m = m.to(token_logp.dtype)
    prev = torch.cat([token_logp.new_zeros(token_logp.shape[0], 1), token_logp[:, :-1]], dim=1)
    main = torch.einsum("bt,btc->bc", prev, m).clamp(max=0.0)
    space = space_logp.gather(1, last_index_per_chunk(member))
    return main, space, m.sum(1)


def merge_matrix(teacher_space_end: torch.Tensor, count: torch.Tensor, threshold: float) -> torch.Tensor:
    """[B, C, C] 0/1: chunk c -> merged group g (tokenkit's `chunk_merging_matrix`).

    A chunk whose teacher space probability at its end is <= threshold joins the following chunks up
    to and including the next chunk whose probability exceeds it; group g of chunk c = the number of
    such boundary chunks before c. Empty chunks (count 0) get an all-zero row.
    """
    boundary = (teacher_space_end.exp() > threshold).long()
    at_or_after = boundary.flip(-1).cumsum(-1).flip(-1)
    group = at_or_after[:, :1] - at_or_after          # boundaries strictly before c
    C = count.shape[1]
    onehot = torch.nn.functional.one_hot(group, C).to(count.dtype)
    return onehot * (count > 0).to(count.dtype).unsqueeze(-1)


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x < 0, stable on both ends (official `log1mexp`)."""
    return torch.where(x < -0.6931471805599453, torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


def binarised_divergence(log_y_true: torch.Tensor, log_y_pred: torch.Tensor, tau: float,
                         kind: str = "binary_ce") -> torch.Tensor:
    """Elementwise divergence between Bernoulli(y) and Bernoulli(y_hat), y = exp(log_y / tau - eps)."""
    lt = log_y_true.float() / tau - EPSILON
    lp = log_y_pred.float() / tau - EPSILON
    if kind == "binary_ce":
        return -(lt.exp() * lp + (-torch.expm1(lt)) * log1mexp(lp))
    if kind == "reverse_binary_kl":
        return lp.exp() * (lp - lt) + (-torch.expm1(lp)) * (log1mexp(lp) - log1mexp(lt))
    if kind == "abs_exp":
        return (lt.exp() - lp.exp()).abs()
    if kind == "abs":   # official `abs` works on the unscaled log-likelihoods
        return (log_y_true - log_y_pred).abs()
    raise ValueError(f"unknown divergence {kind!r}; expected one of {DIVERGENCES}")


def alm_loss(t_token_logp: torch.Tensor, t_space_logp: torch.Tensor, t_member: torch.Tensor,
             s_token_logp: torch.Tensor, s_space_logp: torch.Tensor, s_member: torch.Tensor, *,
             tau: float = 100.0, mode: str = "merge_by_space_prob+append_space", threshold: float = 0.1,
             divergence: str = "binary_ce", fix_double_merge: bool = False) -> dict[str, torch.Tensor]:
    """ALM chunk loss: mean divergence between teacher and student chunk likelihoods.

    t_* : teacher [B, T] log-probs (see module conventions) and membership [B, T, C] bool;
    s_* : student [B, S] and [B, S, C]. Membership must already be restricted to the tokens in the
    loss (response tokens of exact chunks) and must not hold a token without a prediction (the first
    real token; row 0 is always left out, as officially). Returns {"loss": scalar, "n_chunks": valid chunks}.
    Chunks are valid when they hold a teacher token after position 0 (official `aligned_count`).
    """
    flags = parse_mode(mode)
    t_main, t_space, count = chunk_logliks(t_token_logp, t_space_logp, t_member)
    s_main, s_space, _ = chunk_logliks(s_token_logp, s_space_logp, s_member)
    global_count = count
    if "merge_by_space_prob" in flags:
        M = merge_matrix(t_space, count, threshold)
        group_last = last_index_per_chunk(M.bool())
        t_main = torch.einsum("bc,bcg->bg", t_main, M)
        s_main = torch.einsum("bc,bcg->bg", s_main, M)
        t_space, s_space = t_space.gather(1, group_last), s_space.gather(1, group_last)
        count = torch.einsum("bc,bcg->bg", count, M)
        # official quirk: the global count is merged again from the already merged counts
        global_count = count if fix_double_merge else torch.einsum("bc,bcg->bg", count, M)
    valid = count > 0
    t_total, s_total = t_main, s_main
    if "append_space" in flags:
        t_total, s_total = t_main + t_space * valid, s_main + s_space * valid
    # masked chunks never reach the divergence (official: large negative values times a zero numerator)
    t_total = torch.where(valid, t_total, torch.full_like(t_total, -1.0))
    s_total = torch.where(valid, s_total, torch.full_like(s_total, -1.0))
    elem = binarised_divergence(t_total, s_total, tau, divergence) * valid
    denominator = (global_count > 0).sum()
    loss = elem.sum() / denominator.clamp_min(1)
    return {"loss": loss, "n_chunks": valid.sum()}
