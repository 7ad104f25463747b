"""CDM's per-step hot path, batched: top-K ids, entropy weights and the DTW merge of a whole batch.

Each function returns what its straightforward counterpart in ``ctkd_methods.cdm`` returns
(tested against it); they only do less work per training step:

- `screened_entropy_weights`: the weights are integers in {3, 4, 5} from min-max normalised
  float64 entropies with a 1e-10 floor inside the log, which costs a float64 log per vocabulary
  entry. An estimate with float32 exponentials and one log per row comes with a per-row error
  bound (`screened_entropy`) and decides every row except the few it cannot settle: the rows
  that may hold the minimum or the maximum, and the rows whose interval straddles a weight
  boundary. Those get the official entropy, so the weights equal the all-official ones.
- `merge_batch`: `cdm.merge_matrices` for every row at once, padded to the longest G;
  `merge_rows` applies such a merge through its non-zero entries (a step averages a few rows),
  which at the papers' vocabularies is ten times faster than the dense batched product.
"""
from __future__ import annotations

import ctypes

import numpy as np
import torch

from ctkd_bench import native
from ctkd_methods import _pieces


UNIT = 2.0 ** -24             # float32 unit roundoff


def _row_entropy64(rows: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
    """The official float64 entropy with the 1e-10 floor (``cdm.row_entropy``), for [N, V] rows
    (only the rows ``index`` when given: read piece by piece, never copied out as a whole)."""
    rows = rows.detach()
    n = rows.shape[0] if index is None else index.numel()
    out = torch.empty(n, dtype=torch.float64, device=rows.device)
    step = _pieces.rows_per_piece(rows.shape[-1], 8)   # float64 temporaries: same bits in pieces
    for i in range(0, n, step):
        piece = rows[i:i + step] if index is None else rows.index_select(0, index[i:i + step])
        probs = torch.softmax(piece.double(), dim=-1).add_(1e-10)
        out[i:i + step] = -(probs * probs.log()).sum(-1)
    return out


def screened_entropy(cells: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(entropy estimate, error bound) per row of ``cells`` [..., V], both float64.

    Estimate: H = log S + D with shifted logits d = z - max (float32), S = sum exp(d),
    D = -sum exp(d) d / S; the exponentials in float32 (one log per row, no float64 pass over
    the vocabulary), the sums in float64. Bound on |estimate - official entropy|:

    - the floor: with g(x) = -x log x, |g(p + 1e-10) - g(p)| <= 2.31e-9 per entry;
    - float32: each exp(d) is off by a relative (|d| + 3) u at most (input rounding, 1-ulp exp),
      each product e * d by u more; propagated through H that is at most
      u * (E[d^2] + D (4 + D) + 3 + 5 D) <= u * (d_max D + D^2 + 9 D + 3); taken 4 times over.
    """
    rows = cells.detach().reshape(-1, cells.shape[-1])
    d_max = torch.empty(rows.shape[0], dtype=torch.float64, device=rows.device)
    total, weighted = torch.empty_like(d_max), torch.empty_like(d_max)
    step = _pieces.rows_per_piece(rows.shape[-1], 8)   # float64 temporaries: same bits in pieces
    for i in range(0, rows.shape[0], step):          # row-wise: the same bits as one whole-batch pass
        c = rows[i:i + step].float()
        d = c - c.amax(-1, keepdim=True)
        d_max[i:i + step] = -d.amin(-1).double()
        e = d.exp()
        total[i:i + step] = e.sum(-1, dtype=torch.float64)
        weighted[i:i + step] = e.mul_(d).sum(-1, dtype=torch.float64)
    spread = (-weighted / total).view(cells.shape[:-1])                     # D = sum p |d|
    d_max, total = d_max.view(cells.shape[:-1]), total.view(cells.shape[:-1])
    bound = 4 * UNIT * (d_max * spread + spread * spread + 9 * spread + 3) + 2.31e-9 * cells.shape[-1] + 1e-9
    return total.log() + spread, bound


def _weight_of(entropy: torch.Tensor, low: torch.Tensor, span: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid((entropy - low) / span * 4 - 2) * 3 + 3


def screened_entropy_weights(cells: torch.Tensor, real: torch.Tensor, weights_from_entropy) -> torch.Tensor:
    """``weights_from_entropy(official entropies of cells, real)`` [B, W], computing few of them exactly.

    ``cells`` [B, W, V] logit rows (only the ``real`` [B, W] ones matter). With each row's
    official entropy within its bound b of the estimate h (`screened_entropy`): every row that
    could hold the minimum (h - b <= the smallest h + b) or the maximum is computed exactly, so
    the minimum and maximum are exact; a row keeps its estimate only if its weight is the same
    over [h - b, h + b] (1e-9 slack for rounding in the weight formula). Exact rows go through
    the same ``weights_from_entropy`` at the same cells, so every weight equals the all-exact one.
    """
    entropy = torch.zeros(real.shape, dtype=torch.float64, device=real.device)
    if not bool(real.any()):
        return weights_from_entropy(entropy, real)
    estimate, bound = screened_entropy(cells)
    if not bool(torch.isfinite(estimate[real]).all() & torch.isfinite(bound[real]).all()):
        return weights_from_entropy(_exact_at(cells, real, entropy), real)
    entropy = estimate.masked_fill(~real, 0.0)
    lowest = (entropy + bound).masked_fill(~real, float("inf")).amin(1, keepdim=True)
    highest = (entropy - bound).masked_fill(~real, float("-inf")).amax(1, keepdim=True)
    extreme = real & ((entropy - bound <= lowest) | (entropy + bound >= highest))
    entropy = _exact_at(cells, extreme, entropy)
    low = entropy.masked_fill(~real, float("inf")).amin(1, keepdim=True)
    span = entropy.masked_fill(~real, float("-inf")).amax(1, keepdim=True) - low
    lo_w = torch.floor(_weight_of(entropy - bound, low, span) - 1e-9)
    hi_w = torch.floor(_weight_of(entropy + bound, low, span) + 1e-9)
    unsure = real & ~extreme & (span > 0) & (lo_w != hi_w)
    return weights_from_entropy(_exact_at(cells, unsure, entropy), real)


def _exact_at(cells: torch.Tensor, where: torch.Tensor, entropy: torch.Tensor) -> torch.Tensor:
    """Writes the official entropies of ``cells`` into ``entropy`` [B, W] where ``where``; returns it."""
    if bool(where.any()):
        index = where.reshape(-1).nonzero().squeeze(1)
        entropy.view(-1)[index] = _row_entropy64(cells.reshape(-1, cells.shape[-1]), index)
    return entropy


def merge_batch(on_path: np.ndarray, n_t, n_s) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`cdm.merge_matrices` of every ``on_path[b, :n_t[b], :n_s[b]]`` at once.

    Returns (M_t [B, G, N], M_s [B, G, M], G per row) in float64, zero past each row's own
    sizes (G = the longest row's number of groups).
    """
    n_t, n_s = np.asarray(n_t), np.asarray(n_s)
    B, N, M = on_path.shape
    on = on_path.astype(np.float64)
    to_student = on.transpose(0, 2, 1) / np.maximum(on.sum(1), 1)[:, :, None]          # [B, M, N]
    starts = np.zeros((B, N), dtype=bool)
    starts[:, 0] = True
    starts[:, 1:] = (on_path[:, 1:] != on_path[:, :-1]).any(2)
    starts &= (np.arange(N)[None, :] < n_t[:, None]) & ((n_t > 0) & (n_s > 0))[:, None]
    sizes = starts.sum(1)
    b_idx, i_idx = np.nonzero(starts)
    g_idx = (np.cumsum(starts, 1) - 1)[b_idx, i_idx]
    first = on[b_idx, i_idx]                                                            # [groups, M]
    m_s = np.zeros((B, int(sizes.max()) if B else 0, M))
    m_s[b_idx, g_idx] = first / first.sum(1, keepdims=True)
    return np.matmul(m_s, to_student), m_s, sizes


def merge_rows(m: np.ndarray, cells: torch.Tensor) -> torch.Tensor:
    """``torch.bmm(m, cells)`` for a sparse merge ``m`` [B, G, W] (float64) and ``cells`` [B, W, V].

    Each step averages a few rows, so the product is a weighted row gather over the non-zero
    entries: every step's first entry in one ``index_select`` (steps without entries: weight 0),
    the few further entries added with ``index_add_`` (in pieces, `_pieces.rows_per_piece`). The
    dense product costs G x W x V, seconds per step at Qwen's 151k entries, and a zero-filled
    [B x G, V] output would be fresh memory to fault in. A gradient flows to ``cells``. Equal to
    the dense product up to the order of each step's sum.
    """
    B, G, W = m.shape
    dst, src, weight = merge_entries(m)
    first = np.ones(len(dst), dtype=bool)
    first[1:] = dst[1:] != dst[:-1]
    lead_src, lead_weight = np.zeros(B * G, dtype=np.int64), np.zeros(B * G)
    lead_src[dst[first]], lead_weight[dst[first]] = src[first], weight[first]
    device, dtype = cells.device, cells.dtype
    flat = cells.reshape(B * W, cells.shape[-1])
    out = flat.index_select(0, torch.from_numpy(lead_src).to(device))
    out = out.mul_(torch.from_numpy(lead_weight).to(device, dtype).unsqueeze(1))
    rest = np.nonzero(~first)[0]
    step = _pieces.rows_per_piece(flat.shape[-1], flat.element_size())
    for i in range(0, len(rest), step):
        part = rest[i:i + step]
        rows = flat.index_select(0, torch.from_numpy(src[part]).to(device))
        out.index_add_(0, torch.from_numpy(dst[part]).to(device),
                       rows.mul_(torch.from_numpy(weight[part]).to(device, dtype).unsqueeze(1)))
    return out.view(B, G, cells.shape[-1])


def merged_values(flat: torch.Tensor, steps: torch.Tensor, rows: torch.Tensor, weight: torch.Tensor,
                  ids: torch.Tensor) -> torch.Tensor:
    """The merged rows read at ``ids`` [D, S] (ids >= 0), without building them: ``out[d, s] =
    sum over entries e of step d of weight[e] * flat[rows[e], ids[d, s]]`` ([D, S], no autograd).

    ``flat`` [R, V] logit rows; merge entries as `merge_entries` gives them (``steps`` ascending,
    ``rows`` indices into ``flat``). The same float32 products and additions, in the same order,
    as `merge_rows` followed by a gather; a step without entries reads 0.
    """
    with torch.no_grad():
        at = rows.unsqueeze(1) * flat.shape[-1] + ids.index_select(0, steps)
        values = flat.reshape(-1).take(at).mul_(weight.to(flat.dtype).unsqueeze(1))
        return torch.zeros(ids.shape, dtype=flat.dtype, device=flat.device).index_add_(0, steps, values)


READ_KERNEL = r"""
#include <stdint.h>

/* merged_values, then the masks of read_merged, in one pass per merge entry: out[d, s] = sum over
   the entries e of step d (in order) of (float) weight[e] * flat[rows[e], ids[d, s]], the float32
   products and sums of the torch path; slots whose id is < 0 (or 0 with drop_zero) read
   `unmapped` and get live id -1. */
void cdm_merged_read(int64_t E, const int64_t *steps, const int64_t *rows, const double *weight,
                     const float *flat, int64_t row_stride, int64_t D, int64_t S, const int64_t *ids,
                     int64_t drop_zero, float unmapped, float *out, int64_t *live) {
    for (int64_t i = 0; i < D * S; i++) out[i] = 0.0f;
    for (int64_t e = 0; e < E; e++) {
        const float *row = flat + rows[e] * row_stride;
        const int64_t *id = ids + steps[e] * S;
        float w = (float) weight[e], *o = out + steps[e] * S;
        for (int64_t s = 0; s < S; s++) o[s] += row[id[s] < 0 ? 0 : id[s]] * w;
    }
    for (int64_t i = 0; i < D * S; i++) {
        int off = ids[i] < 0 || (drop_zero && ids[i] == 0);
        if (off) out[i] = unmapped;
        live[i] = off ? -1 : ids[i];
    }
}

/* MergedRead's backward: out[rows[e], live[steps[e], s]] += grad[steps[e], s] * (float) weight[e], entry
   by entry (the order of the torch path's scatter_add_); live ids < 0 add nothing. */
void cdm_merged_scatter(int64_t E, const int64_t *steps, const int64_t *rows, const double *weight,
                        const float *grad, int64_t S, const int64_t *live, int64_t vocab, float *out) {
    for (int64_t e = 0; e < E; e++) {
        const int64_t *id = live + steps[e] * S;
        const float *g = grad + steps[e] * S;
        float w = (float) weight[e], *row = out + rows[e] * vocab;
        for (int64_t s = 0; s < S; s++)
            if (id[s] >= 0) row[id[s]] += g[s] * w;
    }
}
"""
_I64, _F32 = native.array(np.int64), native.array(np.float32)
READ_SIGNATURES = {
    "cdm_merged_read": (ctypes.c_int64, _I64, _I64, native.array(np.float64), ctypes.c_void_p, ctypes.c_int64,
                        ctypes.c_int64, ctypes.c_int64, _I64, ctypes.c_int64, ctypes.c_float, _F32, _I64),
    "cdm_merged_scatter": (ctypes.c_int64, _I64, _I64, native.array(np.float64), ctypes.c_void_p, ctypes.c_int64,
                           _I64, ctypes.c_int64, ctypes.c_void_p)}


def _read_kernels(tensor: torch.Tensor):
    """The merged-read kernels for float32 CPU ``tensor``s when a C compiler is there, else None."""
    if tensor.device.type != "cpu" or tensor.dtype != torch.float32:
        return None
    return native.library("cdm_merged_read", READ_KERNEL, READ_SIGNATURES)


def read_merged(flat: torch.Tensor, steps: torch.Tensor, rows: torch.Tensor, weight: torch.Tensor,
                ids: torch.Tensor, drop_zero: bool, unmapped: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Merged rows read at ``ids`` [D, S] with the unmapped slots masked: (values [D, S], live ids
    [D, S] with -1 at the masked slots). Masked: ids < 0, and id 0 when ``drop_zero``; they read
    ``unmapped``. Values as `merged_values` (through a C kernel on CPU when there is a compiler).
    """
    if ids.numel() and int(ids.max()) >= flat.shape[-1]:   # would read another row (or past the rows, in C)
        raise IndexError(f"ids must be below the vocabulary size {flat.shape[-1]}, got {int(ids.max())}")
    lib = _read_kernels(flat) if flat.stride(-1) == 1 else None
    if lib is None:
        off = (ids < 0) | (ids == 0) if drop_zero else ids < 0
        values = merged_values(flat, steps, rows, weight, ids.clamp(min=0))
        return values.masked_fill_(off, unmapped), ids.masked_fill(off, -1)
    D, S = ids.shape
    ids_np = np.ascontiguousarray(ids.numpy(), dtype=np.int64)
    out, live = np.empty((D, S), dtype=np.float32), np.empty((D, S), dtype=np.int64)
    flat = flat.detach()
    lib.cdm_merged_read(len(steps), steps.numpy(), rows.numpy(), weight.numpy(), flat.data_ptr(),
                        flat.stride(0), D, S, ids_np, int(drop_zero), unmapped, out, live)
    return torch.from_numpy(out), torch.from_numpy(live)


def merged_rows_at(flat: torch.Tensor, steps: torch.Tensor, rows: torch.Tensor, weight: torch.Tensor,
                   which: torch.Tensor, n_steps: int) -> torch.Tensor:
    """Whole merged rows [len(which), V] of the steps ``which`` (of ``n_steps``) only, entries as in
    `merged_values`, in `merge_rows`' float32 order; no autograd."""
    with torch.no_grad():
        slot = torch.full((n_steps,), -1, dtype=torch.long, device=flat.device)
        slot[which] = torch.arange(len(which), device=flat.device)
        at = slot.index_select(0, steps)
        keep = at >= 0
        picked = flat.index_select(0, rows[keep]).mul_(weight[keep].to(flat.dtype).unsqueeze(1))
        out = torch.zeros(len(which), flat.shape[-1], dtype=flat.dtype, device=flat.device)
        return out.index_add_(0, at[keep], picked)


def merge_entries(m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The non-zero entries of a merge ``m`` [B, G, W]: (step b * G + g, row b * W + w, weight),
    in order of (b, g), so a step's entries are adjacent."""
    B, G, W = m.shape
    b, g, w = np.nonzero(m)
    return b * G + g, b * W + w, m[b, g, w]


class MergedRead(torch.autograd.Function):
    """Merged student steps read at chosen ids, with the gradient scattered straight to the logits.

    ``forward(logits [B, L, V], values [B, G, S], steps [E], rows [E], weight [E], ids [B * G, S])``
    returns ``values``: the merged rows (built without autograd) gathered at ``ids``. Merge entry
    e adds ``weight[e]`` x logit row ``rows[e]`` (an index into ``logits.flatten(0, 1)``) to step
    ``steps[e]``; ids < 0 are slots without a gradient (masked). The backward is the exact
    gradient of that gather of a merge of logit rows, written as one ``scatter_add_`` of
    E x S entries into the logits' gradient: the autograd chain it replaces (gather, merge,
    content-row selection) zero-fills and adds three dense [rows x V] tensors per step.
    """

    @staticmethod
    def forward(ctx, logits, values, steps, rows, weight, ids):
        ctx.save_for_backward(steps, rows, weight, ids)
        ctx.logits_shape = logits.shape
        return values.clone()

    @staticmethod
    def backward(ctx, grad):
        steps, rows, weight, ids = ctx.saved_tensors
        vocab = ctx.logits_shape[-1]
        out = torch.zeros(ctx.logits_shape.numel(), dtype=grad.dtype, device=grad.device)
        lib = _read_kernels(grad)
        if lib is not None:        # the same products, added in the same order, without [E, S] temporaries
            grad = grad.contiguous()
            lib.cdm_merged_scatter(len(steps), steps.numpy(), rows.numpy(), weight.numpy(), grad.data_ptr(),
                                   ids.shape[-1], ids.numpy(), vocab, out.data_ptr())
            return out.view(ctx.logits_shape), None, None, None, None, None
        slot_ids = ids.index_select(0, steps)                                   # [E, S]
        vals = grad.reshape(ids.shape).index_select(0, steps).mul_(weight.to(grad.dtype).unsqueeze(1))
        vals = vals.masked_fill_(slot_ids < 0, 0.0)
        out.scatter_add_(0, (rows.unsqueeze(1) * vocab + slot_ids.clamp(min=0)).view(-1), vals.view(-1))
        return out.view(ctx.logits_shape), None, None, None, None, None
