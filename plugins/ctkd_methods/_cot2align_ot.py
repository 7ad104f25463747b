"""CoT2Align's entropic OT (ETP) and its six-term loss, batched for speed.

The official ``ETP`` / ``compute_etp_loss`` (brianminhle/dskd_ot_rationale @ 0c45965,
``code/criterions/dual_space_kd_with_cross_model_attention_ot_rationale.py``) solve one
Sinkhorn per sequence pair on the pruned (response-only) positions. Here every pair of a
step is solved at once; see ``cot2align.py`` for the loss and its documented deviations.

Implementation notes (values as the plain ``align.ot.sinkhorn`` run on every term at once,
up to float rounding; tested against it and against a transcription of the official loop):

- Packing: only response positions take part, so each side is left-packed to its response
  positions before the cost (``pack_positions``, a row copy) and the teacher states are
  projected after packing; padded slots are masked exactly as before (zero marginal, zero plan).
  When every row of a pairing has both sides (the usual case) no row subset is taken.
- Terms 5-6 under the official masking have no teacher position in any row: that pairing is
  not built at all (its rows stay exactly 0); ``fix_masked_ot_terms`` adds it as a fourth block.
- One problem block per pairing (plain-plain, CoT-CoT, plain-CoT, CoT-plain), each
  [2 layers x live rows, n, m] with its own widths, instead of one block padded to the
  widest pairing. The blocks are iterated in lockstep and stop together, with the same
  test as one batched call: every row's row-marginal L1 error below ``tol``.
- The stopping test reads the row marginals as ``exp(f + log(K e^g))``, the quantity the
  next f-update computes anyway, instead of materialising the plan each iteration.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ._cma import project

KERNELS = ("mul", "div")
DIVISORS = ("records", "nonempty_rows")
_NEG = -1e30
_SAFE_LOG_KERNEL = {torch.float32: -80.0, torch.float64: -700.0}  # as align.ot: exp() safe above


def attention_cost(x: torch.Tensor, y: torch.Tensor, y_mask: torch.Tensor) -> torch.Tensor:
    """M [R, n, m] = 1 - softmax over valid y of x yᵀ / sqrt(d) (official 'attention' cost)."""
    scores = x.matmul(y.transpose(-1, -2)) / math.sqrt(x.shape[-1])
    scores = scores.masked_fill(~y_mask.unsqueeze(1), torch.finfo(scores.dtype).min)
    return 1.0 - torch.softmax(scores, dim=-1)


def uniform_marginal(mask: torch.Tensor, dtype) -> torch.Tensor:
    return mask.to(dtype) / mask.sum(-1, keepdim=True).clamp_min(1)


# -- lockstep log-domain Sinkhorn over blocks of different shapes ---------------------------------
class _Block:
    """One batched problem: cost [R, n, m], marginals a [R, n], b [R, m] (zeros = masked)."""

    def __init__(self, cost, a, b, eps, kernel):
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
        self.logk = -cost * eps if kernel == "mul" else -cost / eps
        mask_a, mask_b = a > 0, b > 0
        self.log_a = torch.where(mask_a, a.clamp_min(1e-38).log(), torch.full_like(a, _NEG))
        self.log_b = torch.where(mask_b, b.clamp_min(1e-38).log(), torch.full_like(b, _NEG))
        self.a = a
        self.pair = mask_a.unsqueeze(-1) & mask_b.unsqueeze(-2)

    def safe(self, bound: float) -> bool:
        """Every valid log-kernel entry above `bound`? (All entries first: one pass, no mask.)"""
        if not self.logk.numel():
            return True
        logk = self.logk.detach()
        if float(logk.amin()) > bound:
            return True
        return float(torch.where(self.pair, logk, torch.full_like(logk, math.inf)).amin()) > bound

    def prepare(self, fast: bool) -> None:
        self.fast = fast
        if fast:  # padded pairs only ever meet exp(-1e30) = 0 potentials
            self.K = torch.exp(torch.where(self.pair, self.logk, torch.zeros_like(self.logk)))
            self.Kt = self.K.transpose(1, 2).contiguous()
        else:
            self.masked_logk = torch.where(self.pair, self.logk, torch.full_like(self.logk, _NEG))

    def lse_rows(self, g):
        """log Σ_j K_ij e^{g_j}, [R, n]."""
        if self.fast:
            return _log_kv(self.Kt, g)
        return torch.logsumexp(self.masked_logk + g.unsqueeze(-2), dim=-1)

    def lse_cols(self, f):
        """log Σ_i K_ij e^{f_i}, [R, m]."""
        if self.fast:
            return _log_kv(self.K, f)
        return torch.logsumexp(self.masked_logk + f.unsqueeze(-1), dim=-2)

    def plan(self, f, g):
        plan = torch.exp(f.unsqueeze(-1) + self.logk + g.unsqueeze(-2))
        return torch.where(self.pair, plan, torch.zeros_like(plan))


def _log_kv(Kt: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """log(K @ exp(g)) per row given Kt = Kᵀ [R, m, n]; a row vector times Kt (fast on CPU)."""
    top = g.max(dim=-1, keepdim=True).values
    return torch.log(torch.bmm(torch.exp(g - top).unsqueeze(1), Kt).squeeze(1)) + top


def lockstep_sinkhorn(problems, eps: float, n_iters: int = 100, kernel: str = "mul",
                      tol: float | None = None) -> list[torch.Tensor]:
    """Plans for [(cost, a, b), ...] as if concatenated into one ``align.ot.sinkhorn`` call.

    Each iteration updates f (rows) then g (columns) in every block; with `tol`, all blocks
    stop once every row of every block has row-marginal L1 error below tol. The matrix-product
    form is used only when every valid log-kernel entry of every block is safely representable
    (the same global choice as one concatenated call). Gradients flow through the iterations.
    """
    blocks = [_Block(c, a, b, eps, kernel) for c, a, b in problems]
    safe = _SAFE_LOG_KERNEL.get(blocks[0].logk.dtype) if blocks else None
    fast = safe is not None and any(bool(b.pair.any()) for b in blocks) and all(b.safe(safe) for b in blocks)
    for b in blocks:
        b.prepare(fast)
    f = [torch.zeros_like(b.log_a) for b in blocks]
    g = [torch.zeros_like(b.log_b) for b in blocks]
    lse = [b.lse_rows(gk) for b, gk in zip(blocks, g)]
    for _ in range(n_iters):
        f = [b.log_a - lk for b, lk in zip(blocks, lse)]
        g = [b.log_b - b.lse_cols(fk) for b, fk in zip(blocks, f)]
        lse = [b.lse_rows(gk) for b, gk in zip(blocks, g)]   # the next f-update's input
        if tol is not None:
            with torch.no_grad():
                err = max(float((torch.exp(fk + lk) - b.a).abs().sum(-1).max()) if fk.numel() else 0.0
                          for b, fk, lk in zip(blocks, f, lse))
            if err < tol:
                break
    return [b.plan(fk, gk) for b, fk, gk in zip(blocks, f, g)]


def transport_plan(cost: torch.Tensor, x_mask: torch.Tensor, y_mask: torch.Tensor, *, alpha: float,
                   kernel: str = "mul", n_iters: int = 100, tol: float = 0.0) -> torch.Tensor:
    """ETP plan [R, n, m]: uniform marginals on the valid positions of each row.

    "mul" K = exp(-alpha·M) (the official CoT2Align code), "div" K = exp(-M/alpha) (EMO).
    Masked positions get zero marginal and an exactly zero plan, so a row equals the official
    run on the pruned sequences. ``tol`` > 0 stops once every row's marginal L1 error is below it.
    """
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    a, b = uniform_marginal(x_mask, cost.dtype), uniform_marginal(y_mask, cost.dtype)
    return lockstep_sinkhorn([(cost, a, b)], alpha, n_iters, kernel, tol if tol > 0 else None)[0]


def etp(x: torch.Tensor, y: torch.Tensor, x_mask: torch.Tensor, y_mask: torch.Tensor, *,
        alpha: float = 0.1, kernel: str = "mul", n_iters: int = 100, tol: float = 0.0) -> torch.Tensor:
    """ETP per row [R] (float32): Σ P ⊙ M between x [R, n, d] and y [R, m, d] on masked positions.

    Masks [R, n] / [R, m] bool mark the positions that take part (either padding side); a row
    with no valid position on either side gives 0 (and is not solved, so it cannot hold up the
    early stop). Both inputs may carry grad.
    """
    return etp_blocks([(x, y, x_mask, y_mask)], alpha=alpha, kernel=kernel, n_iters=n_iters, tol=tol)[0]


def etp_blocks(blocks, *, alpha: float, kernel: str, n_iters: int, tol: float) -> list[torch.Tensor]:
    """ETP rows for several (x, y, x_mask, y_mask) blocks, solved in lockstep (one stopping test)."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    problems, lives, outs = [], [], []
    for x, y, x_mask, y_mask in blocks:
        x_mask, y_mask = x_mask.bool(), y_mask.bool()
        live = (x_mask.any(-1) & y_mask.any(-1)).nonzero().squeeze(-1)
        outs.append(x.new_zeros(x.shape[0], dtype=torch.float32))
        lives.append(live)
        if live.numel() == x.shape[0]:   # every row live (the usual case): no copies
            cost = attention_cost(x.float(), y.float(), y_mask)
            problems.append((cost, uniform_marginal(x_mask, cost.dtype), uniform_marginal(y_mask, cost.dtype)))
        elif live.numel():
            cost = attention_cost(x[live].float(), y[live].float(), y_mask[live])
            problems.append((cost, uniform_marginal(x_mask[live], cost.dtype),
                             uniform_marginal(y_mask[live], cost.dtype)))
    plans = iter(lockstep_sinkhorn(problems, alpha, n_iters, kernel, tol if tol > 0 else None))
    costs = iter(p[0] for p in problems)
    for k, live in enumerate(lives):
        if live.numel() == outs[k].shape[0]:
            outs[k] = (next(plans) * next(costs)).sum((-1, -2))
        elif live.numel():
            outs[k] = outs[k].index_copy(0, live, (next(plans) * next(costs)).sum((-1, -2)))
    return outs


# -- the six OT terms ----------------------------------------------------------------------------
@dataclass(frozen=True)
class FormatStates:
    """One answer format (plain or CoT) of a batch, for the OT terms.

    student: (embedding output, last hidden) [B, L_s, d_s]; teacher: the same two layers,
    [B, L_t, d] (raw if ``teacher_projector`` is given, else already in the student space);
    masks [B, L] bool = pre-shifted target masks (response positions as officially scored).
    """
    student: tuple[torch.Tensor, torch.Tensor]
    teacher: tuple[torch.Tensor, torch.Tensor]
    student_mask: torch.Tensor
    teacher_mask: torch.Tensor
    teacher_projector: object = None   # the ``ot`` projector, applied after packing


def pack_positions(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(index [B, W], packed mask [B, W]): each row's True positions first, in order; W = max count."""
    counts = mask.sum(-1)
    width = int(counts.max()) if counts.numel() else 0
    order = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices[:, :width]
    return order, torch.arange(width, device=mask.device) < counts.unsqueeze(1)


def _gather(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x[b, index[b]] [B, W, d]. A row copy (index_select on the flattened rows): the same values as
    ``gather`` with an expanded index, which on CPU walks every element through the index tensor."""
    B, L, d = x.shape
    flat = (index + torch.arange(B, device=index.device).unsqueeze(1) * L).reshape(-1)
    return x.reshape(B * L, d).index_select(0, flat).view(B, index.shape[1], d)


class _PackCache:
    """Packed (left-aligned response-only) states per format and side, each computed once per step."""

    def __init__(self):
        self._memo = {}

    def student(self, fmt: FormatStates):
        key = (id(fmt), "s")
        if key not in self._memo:
            idx, mask = pack_positions(fmt.student_mask)
            self._memo[key] = (torch.cat([_gather(h, idx) for h in fmt.student]), mask.repeat(2, 1))
        return self._memo[key]

    def teacher(self, fmt: FormatStates, t_mask: torch.Tensor):
        key = (id(fmt), "t", id(t_mask))
        if key not in self._memo:
            idx, mask = pack_positions(t_mask)
            states = torch.cat([_gather(h, idx) for h in fmt.teacher])
            if fmt.teacher_projector is not None:   # per position: the same values as projecting first
                states = project(fmt.teacher_projector, states)
            self._memo[key] = (states, mask.repeat(2, 1))
        return self._memo[key]


def cross_cot_ot(plain: FormatStates, cot: FormatStates, *, fix_masked_ot_terms: bool = False,
                 divisor: str = "records", alpha: float = 0.1, kernel: str = "mul",
                 n_iters: int = 100, tol: float = 0.0) -> torch.Tensor:
    """The official six-term OT loss (x2: plain and CoT records) as one scalar.

    Per layer: terms 1-2 ETP(s, t) within each format (plain record and CoT record),
    terms 3-4 ETP(s_plain, t_cot), terms 5-6 ETP(s_cot, t_plain), the last with an
    all-False teacher mask unless ``fix_masked_ot_terms`` (official data bug).
    divisor "records": Σ / (4 · 2B); "nonempty_rows": each call / (4 · its non-empty rows).
    """
    if divisor not in DIVISORS:
        raise ValueError(f"divisor must be one of {DIVISORS}, got {divisor!r}")
    t_plain_cross = plain.teacher_mask if fix_masked_ot_terms else torch.zeros_like(plain.teacher_mask)
    # (student format, teacher format, teacher mask); order = calls 1-2 plain, 1-2 CoT, 3-4, 5-6
    pairs = [(plain, plain, plain.teacher_mask), (cot, cot, cot.teacher_mask),
             (plain, cot, cot.teacher_mask), (cot, plain, t_plain_cross)]
    B = plain.student_mask.shape[0]
    nonempty = torch.stack([s.student_mask.any(-1) & t_mask.any(-1) for s, _, t_mask in pairs])  # [4, B]
    rows = _pair_etps(pairs, [k for k in range(4) if nonempty[k].any()], alpha, kernel, n_iters, tol)
    if divisor == "records":
        return rows.sum() / (4 * 2 * B)
    total = rows.new_zeros(())
    for g in (slice(0, 2), slice(2, 3), slice(3, 4)):  # the official calls; terms 1-2 span both records
        total = total + rows[:, g].sum((1, 2)).div(4 * nonempty[g].sum().clamp_min(1)).sum()
    return total


def _pair_etps(pairs, live: list[int], alpha, kernel, n_iters, tol) -> torch.Tensor:
    """ETP rows [2 layers, 4 pairs, B]; pairs not in `live` stay 0 (the faithful terms 5-6 have
    an all-False teacher mask and are not computed). One lockstep block per live pair."""
    B = pairs[0][0].student_mask.shape[0]
    rows = pairs[0][0].student[0].new_zeros((2, 4, B), dtype=torch.float32)
    if not live:
        return rows
    cache, blocks = _PackCache(), []
    for k in live:   # rows of a block: layer 0 then layer 1, B each
        s_fmt, t_fmt, t_mask = pairs[k]
        (x, x_mask), (y, y_mask) = cache.student(s_fmt), cache.teacher(t_fmt, t_mask)
        blocks.append((x, y, x_mask, y_mask))
    values = etp_blocks(blocks, alpha=alpha, kernel=kernel, n_iters=n_iters, tol=tol)
    rows[:, live] = torch.stack([v.view(2, B) for v in values], dim=1)
    return rows
