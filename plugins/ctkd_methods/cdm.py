"""CDM: Contextual Dynamic Mapping (Chen et al., Findings of ACL 2025, arXiv 2502.11104).

The survey calls it "CMD" (``aliases``). Paper: entropy-weighted DTW aligns the two token
sequences (Sec. 3.1), a context-dependent top-K vocabulary mapping is built per aligned step
from exact and edit-distance matches in both directions (Sec. 3.2), and KD runs on the mapped
logits with ``L = alpha * CE + (1 - alpha) * L_KD``.

Code reproduced: the public copy ``chiiipk/cdm-llm2vec`` @ ``144f18cf3a36604d79e0c3a627e69ad529374c86``
(README identical to the official ``pppa2019/ContexualDynamicMapping``, which could not be
retrieved), ``src/run_clm_distill_CDM.py``: ``calculate_weight``, ``compute_edit_distance_kd_loss``,
``merge_tensor``, ``transform_step_logits_fast`` / ``get_dymaic_mapper``, ``dtw``, ``dist_func``;
defaults from ``script_train/phi-qwen/train_kd_phi_qwen_CDM.sh`` (kd_alpha 0.5, kd_temperature
2.0, topk 100, simi_threadshold 0.3). Version: top-K in both directions (the other circulating
version, a full-vocabulary map in one direction, is not offered).

Per row (student s, teacher t; teacher detached):

1. Content tokens: positions with ``labels != -100`` (response + EOS). Logit rows are read *at*
   those positions (off by one: official quirk 8).
2. Entropy weights ``w = int(3 * sigmoid(4 * minmax(H) - 2) + 3)`` in {3, 4, 5} per side.
3. DTW over the token strings, cost ``ED(a, b) * w_t[i] * w_s[j]`` (end-of-sequence strings
   equal). Teacher rows are averaged onto each student position, then both sides averaged over
   the distinct student groups aligned to one teacher token: G steps, Z_t [G, V_t], Z_s [G, V_s].
4. Top-K ids per step on each side; direction 1 maps the teacher's top-K into the student
   vocabulary, direction 2 the student's into the teacher's (``cdm_vocab.dynamic_map``);
   unmapped slots hold -1e4. T1/S1: teacher/student logits at direction-1 slots; S2/T2 at
   direction-2 slots.
5. ``y = [T1; S2]``, ``x = [S1; T2]`` (roles swapped in the second half, y not detached: quirk 1);
   ``kd = mean over all G x 2K elements of softmax(y) * (T^2 log_softmax(y) - log_softmax(x / T))``
   (not a KL: quirk 7); ``loss = 0.5 * CE + 0.5 * kd``.

Switches for official defects (all off by default): ``fix_swapped_roles`` (y = sg([T1; T2]),
x = [S1; S2]), ``fix_candidate_filter`` (drop the filter that removes *target* candidates by
*source*-vocabulary ids), ``fix_mask_leak`` (direction 2 sees the teacher top-K unmasked by
direction 1's failures, and a real id 0 is kept), ``fix_distance`` (``T^2 KL(softmax(y/T) ||
softmax(x/T))`` summed over 2K, averaged over steps), ``fix_row_shift`` (use the rows that
predict the content tokens).

Deviations (deliberate):

- Batches of several rows: steps are padded to the longest G and the element mean runs over
  real steps (the official code stacks per-sample results, which needs equal G, batch 1).
- Strings: ``decode([id])`` with spaces removed for both the DTW and the dynamic map (the
  official DTW uses ``convert_tokens_to_string([tok])``); every pair of end-of-sequence strings
  (``</s>``, ``<|endoftext|>``, ``<|im_end|>`` and both tokenizers' EOS) costs 0.
- Ties in the dynamic map go to the nearest, then the lowest target id (official: CPython set
  order); candidate id 0 is never chosen (official: choosing it leaves the slot unmapped).
- Exact-match map: equal normalised strings (``ctkd_bench.align.vocab``), lowest target id; the
  official ``get_em_mapper.py`` is not public. Near candidates are precomputed in ``prepare``
  (at most 64 per source id).
- Equal entropies on a side (e.g. one content token) give weight 4 (official: NaN cast to int).
- No silent zero loss: the official code returns KD = 0 for the whole batch on any exception.

Implementation (step cost; values equal to the per-row computation up to float rounding in
the sums, tested against per-row / per-step references under every switch): the token edit
distances come from a [V_t, V_s] table built in ``prepare`` when the vocabularies are small
(``_token_cost``, one gather per batch); the entropy weights depend on the logits, so the
weighted DTW runs every step, for the whole batch at once (``ctkd_bench.align.dtw_batch``, exact
for the integer costs). ``_cdm_steps`` batches the rest: the entropy weights are screened with a
proven error bound so that only the few undecided rows pay for the official float64 entropy
(weights identical); the student's merge goes through its non-zero entries
(``_cdm_steps.merge_rows``: a step averages a few rows, so a dense batched product would cost
G x W x V); the teacher's merged steps are never built: the KD reads them at the mapped ids
straight from the teacher's logit rows (``_cdm_steps.read_merged``, the same float32 products and
sums), and so does the student's read. The top-K sets come from a partial sort over pieces of
rows, unordered (neither the map nor the KD depends on the order within a step), ties at the
K-th value decided by ``torch.topk``; a teacher step that is one content row taken whole (most
are) reads that row's set from a per-example memo, and a step that averages rows reads it from a
memo keyed by its rows and weights (`CDM.teacher_topk`). The dynamic map visits the steps from
the last, so each (row, source id) stops at its first hit (``cdm_vocab.dynamic_map``); the
candidate removals, which depend on the id alone, are vocabulary tables
(``cdm_vocab.blocked_targets``). The merge runs without autograd; the KD's read of the merged
student values carries the gradient straight to the logits (``_cdm_steps.MergedRead``). The DTW,
the dynamic map and the merged reads are small C kernels (`ctkd_bench.native`) where a C
compiler is present, numpy/torch otherwise, with equal results (tested both ways).
``batch_entropy_weights`` and ``merge_matrices`` are the straightforward forms the tests
compare against.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from ctkd_bench import Method, Needs, Paper, hookimpl
from ctkd_bench.align.dtw import dtw
from ctkd_bench.align.dtw_batch import dtw_paths_batch
from ctkd_bench.defaults import IGNORE_INDEX
from ctkd_methods import cdm_vocab
from ctkd_methods import _pieces
from ctkd_methods._cdm_steps import (MergedRead, merge_batch, merge_entries, merge_rows, merged_rows_at,
                                     read_merged, screened_entropy_weights)
from ctkd_methods._topk import topk_ids
from ctkd_methods._token_cost import TokenCost
from ctkd_methods.uld import at_least_fp32

UNMAPPED_LOGIT = -1e4
AVERAGED_MEMO = 200_000       # memoised top-K sets of averaged teacher steps (about 0.4 KB each at K = 100)


def entropy_weights(logits: torch.Tensor) -> torch.Tensor:
    """[n] long in {3, 4, 5} from [n, V] logits (the official ``calculate_weight``)."""
    return batch_entropy_weights(logits, torch.ones(1, logits.shape[0], dtype=torch.bool))[0]


def row_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of ``softmax(logits)`` per row, in float64 with the official 1e-10 floor."""
    probs = torch.softmax(logits.detach().double(), dim=-1) + 1e-10
    return -(probs * probs.log()).sum(-1)


def weights_from_entropy(entropy: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """``entropy_weights`` of each row's real entries of ``entropy`` [B, W] at once: [B, W] long (4 elsewhere)."""
    low = entropy.masked_fill(~real, float("inf")).amin(1, keepdim=True)
    span = entropy.masked_fill(~real, float("-inf")).amax(1, keepdim=True) - low
    factor = torch.sigmoid((entropy - low) / span * 4 - 2)
    return torch.where(real & (span > 0), (factor * 3 + 3).long(), 4)


def batch_entropy_weights(rows: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """``entropy_weights`` of every row's content rows at once: [B, W] long (4 off ``real``).

    ``rows`` [N, V]: the logit rows of the True cells of ``real`` [B, W], in row-major order.
    """
    entropy = torch.zeros(real.shape, dtype=torch.float64, device=real.device)
    return weights_from_entropy(entropy.masked_scatter(real, row_entropy(rows)), real)


def merge_matrices(on_path: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The merge as matrices from the DTW path cells ``on_path`` [n_t, n_s] bool: (M_t [G, n_t], M_s [G, n_s]).

    Each student row j first takes the mean of its aligned teacher rows; groups = the distinct
    lists of student rows aligned to one teacher row, in order of first appearance; each group
    averages its members (the official ``merge_tensor`` twice). On a monotone path equal lists
    are adjacent, so a group starts wherever a teacher row's list differs from the previous one.
    """
    n_t, n_s = on_path.shape
    if n_t == 0 or n_s == 0:
        return torch.zeros(0, n_t, dtype=torch.float64), torch.zeros(0, n_s, dtype=torch.float64)
    on = on_path.to(torch.float64)
    to_student = (on.T / on.sum(0).unsqueeze(1)).contiguous()                 # [n_s, n_t]
    starts = torch.ones(n_t, dtype=torch.bool)
    starts[1:] = (on_path[1:] != on_path[:-1]).any(1)
    first_rows = on[starts]
    m_s = (first_rows / first_rows.sum(1, keepdim=True)).contiguous()          # [G, n_s]
    return m_s @ to_student, m_s


def alignment_matrices(cost: torch.Tensor, w_t: torch.Tensor, w_s: torch.Tensor):
    """Weighted DTW of one sequence pair, then `merge_matrices`: (M_t [G, n_t], M_s [G, n_s]).

    ``cost`` [n_t, n_s] edit distances. The per-pair form of what ``CDM.merged_steps`` does
    for a whole batch at once.
    """
    n_t, n_s = cost.shape
    on_path = torch.zeros(n_t, n_s, dtype=torch.bool)
    if n_t and n_s:
        _, path = dtw(cost, w_t, w_s)
        on_path[tuple(torch.tensor(path).T)] = True
    return merge_matrices(on_path)


def content_positions(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions with ``labels != -100``, left-aligned per row: ([B, W], sizes [B]); W = max size."""
    is_content = labels != IGNORE_INDEX
    sizes = is_content.sum(1)
    order = torch.sort((~is_content).to(torch.int8), dim=1, stable=True).indices
    return order[:, :int(sizes.max()) if sizes.numel() else 0], sizes


def cdm_distance(x: torch.Tensor, y: torch.Tensor, valid: torch.Tensor, temperature: float,
                 true_kl: bool = False) -> torch.Tensor:
    """KD on [B, G, 2K] gathered logits; ``valid`` [B, G] marks real steps.

    Official (``dist_func``): mean over all real elements of
    ``softmax(y) * (T^2 * log_softmax(y) - log_softmax(x / T))``. ``true_kl``:
    ``T^2 * KL(softmax(y / T) || softmax(x / T))`` summed over 2K, mean over real steps.
    """
    if true_kl:
        lp_y = torch.log_softmax(y / temperature, -1)
        per_step = (lp_y.exp() * (lp_y - torch.log_softmax(x / temperature, -1))).sum(-1)
        return temperature ** 2 * (per_step * valid).sum() / valid.sum().clamp(min=1)
    lp_y = torch.log_softmax(y, -1)
    elem = lp_y.exp() * (temperature ** 2 * lp_y - torch.log_softmax(x / temperature, -1))
    return (elem * valid.unsqueeze(-1)).sum() / (valid.sum() * x.shape[-1]).clamp(min=1)


def gather_mapped(z: torch.Tensor, ids: torch.Tensor, drop_zero: bool) -> torch.Tensor:
    """z[b, g, ids[b, g, k]] with -1e4 where ids < 0 (and where ids == 0 if ``drop_zero``)."""
    off = (ids < 0) | (ids == 0) if drop_zero else ids < 0
    return z.gather(-1, ids.clamp(min=0)).masked_fill(off, UNMAPPED_LOGIT)


def real_step_topk(z: torch.Tensor, valid: torch.Tensor, k: int) -> torch.Tensor:
    """Top-k ids [B, G, k] of the real steps of ``z`` [B, G, V]; padded steps get ids 0..k-1.

    Padded steps only ever reach masked terms, so their ids are arbitrary; skipping them
    saves the top-k over the padding. The ids of a step come in no particular order: the map
    depends on the sets only, and the KD is a sum over the K slots in which the same order
    is used on both sides.
    """
    flat = z.reshape(-1, z.shape[-1])
    real = valid.reshape(-1).nonzero().squeeze(1)
    ids = torch.arange(k, device=z.device).repeat(flat.shape[0], 1)
    step = _pieces.rows_per_piece(flat.shape[-1])          # large vocabularies: rows in pieces
    for i in range(0, real.numel(), step):
        rows = real[i:i + step]
        ids.index_copy_(0, rows, topk_ids(flat.index_select(0, rows), k, ordered=False))
    return ids.view(*valid.shape, k)


def cdm_kd_loss(z_s: torch.Tensor, z_t: torch.Tensor | None, valid: torch.Tensor, tables: dict, *,
                top_k: int = 100, temperature: float = 2.0, fix_swapped_roles: bool = False,
                fix_candidate_filter: bool = False, fix_mask_leak: bool = False,
                fix_distance: bool = False, top_t: torch.Tensor | None = None,
                read_student=None, read_teacher=None, teacher_vocab: int | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """KD on merged steps: ``z_s`` [B, G, V_s] and ``z_t`` [B, G, V_t] **logits** (teacher detached).

    ``tables``: ``tea2stu`` [V_t], ``stu2tea`` [V_s] exact maps (-1 none), ``near_t2s`` [V_t, R],
    ``near_s2t`` [V_s, R] (``cdm_vocab.near_candidates``). ``top_t`` [B, G, k]: the teacher's
    top-k ids per real step when the caller already has them (`real_step_topk`'s sets, any
    order). ``read_student(ids, drop_zero)`` / ``read_teacher(ids, drop_zero)``: the values at
    [B, G, S] ids, as `gather_mapped` on ``z_s`` / ``z_t`` gives them (the caller's way to carry
    the student's gradient, or to read the teacher without merging whole rows). ``z_t`` may be
    None when ``top_t``, ``read_teacher`` and ``teacher_vocab`` (V_t) are given. Returns
    (kd, mapped fraction).
    """
    n_teacher = teacher_vocab if z_t is None else z_t.shape[-1]
    if z_t is not None:
        z_t = z_t.detach()
    k = min(top_k, z_s.shape[-1], n_teacher)
    if top_t is None:
        top_t = real_step_topk(z_t, valid, k)
    top_s = real_step_topk(z_s.detach(), valid, k)
    drop_zero, official_filter = not fix_mask_leak, not fix_candidate_filter
    # the candidate removals depend on the target id alone: vocabulary tables, not per-slot passes
    stu_of_t = cdm_vocab.dynamic_map(
        top_t, top_s, tables["tea2stu"], tables["near_t2s"], valid,
        cdm_vocab.blocked_targets(tables["tea2stu"], z_s.shape[-1], drop_zero, official_filter), drop_zero)
    t_masked = top_t.masked_fill(stu_of_t < 0, -1)
    pool_t = top_t if fix_mask_leak else t_masked   # official: direction 2 sees the masked ids
    tea_of_s = cdm_vocab.dynamic_map(
        top_s, pool_t, tables["stu2tea"], tables["near_s2t"], valid,
        cdm_vocab.blocked_targets(tables["stu2tea"], n_teacher, drop_zero, official_filter), drop_zero)
    s_masked = top_s.masked_fill(tea_of_s < 0, -1)
    # one gather per side (the student's backward then scatters once): [dir-1 slots ; dir-2 slots]
    read_t = read_teacher or (lambda ids, drop: gather_mapped(z_t, ids, drop))
    t1, t2 = read_t(torch.cat([t_masked, tea_of_s], -1), drop_zero).split(k, -1)
    read = read_student or (lambda ids, drop: gather_mapped(z_s, ids, drop))
    s1, s2 = read(torch.cat([stu_of_t, s_masked], -1), drop_zero).split(k, -1)
    if fix_swapped_roles:
        y, x = torch.cat([t1, t2], -1), torch.cat([s1, s2], -1)
    else:
        y, x = torch.cat([t1, s2], -1), torch.cat([s1, t2], -1)
    kd = cdm_distance(x, y, valid, temperature, true_kl=fix_distance)
    return kd, mapped_fraction(stu_of_t, tea_of_s, valid)


def mapped_fraction(stu_of_t: torch.Tensor, tea_of_s: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """The fraction of the real steps' 2K slots (both directions) that have a target."""
    if valid.device.type == "cpu":                   # a logged figure: numpy counts, no torch op overhead
        real = valid.numpy()
        found = np.count_nonzero((stu_of_t.numpy() >= 0)[real]) + np.count_nonzero((tea_of_s.numpy() >= 0)[real])
        return torch.tensor(found / max(1, 2 * stu_of_t.shape[-1] * int(real.sum())))
    real = valid.unsqueeze(-1)
    mapped = ((stu_of_t >= 0) & real).sum() + ((tea_of_s >= 0) & real).sum()
    return mapped / (2 * real.sum() * stu_of_t.shape[-1]).clamp(min=1)


class CDM(Method):
    name = "cdm"
    aliases = ("cmd",)
    category = "multi-level alignment"
    summary = ("Entropy-weighted dynamic time warping aligns the token sequences, then a "
               "context-dependent dynamic vocabulary mapping between teacher and student top-k tokens.")
    paper = Paper(title="Enhancing Cross-Tokenizer Knowledge Distillation with Contextual Dynamical "
                        "Mapping", url="https://arxiv.org/abs/2502.11104", venue="Findings of ACL 2025")
    tracks = ("lm", "math", "instruct")
    needs = Needs(logits=True)
    variant = "official-topk-both-directions"

    @dataclass(frozen=True)
    class Config:
        kd_alpha: float = 0.5               # weight of CE; KD gets 1 - kd_alpha
        kd_temperature: float = 2.0
        top_k: int = 100
        threshold: float = 0.3              # simi_threadshold (normalised edit distance)
        fix_swapped_roles: bool = False
        fix_candidate_filter: bool = False
        fix_mask_leak: bool = False
        fix_distance: bool = False
        fix_row_shift: bool = False

    def __init__(self, config=None):
        super().__init__(config)
        self._teacher_w: dict[str, np.ndarray] = {}   # example id -> teacher entropy weights
        self._teacher_top: dict[str, torch.Tensor] = {}   # example id -> top-K ids of its content rows
        self._averaged_top: dict[tuple, torch.Tensor] = {}   # (example id, merge row) -> top-K ids

    def prepare(self, ctx):
        s_tok, t_tok = ctx.student_tokenizer, ctx.teacher_tokenizer
        s_str, t_str = cdm_vocab.surface_strings(s_tok), cdm_vocab.surface_strings(t_tok)
        tea2stu, stu2tea = cdm_vocab.exact_vocab_map(t_tok, s_tok), cdm_vocab.exact_vocab_map(s_tok, t_tok)
        specials = cdm_vocab.eos_like(s_tok) | cdm_vocab.eos_like(t_tok)
        thr = self.config.threshold
        self.tables = {
            "tea2stu": tea2stu, "stu2tea": stu2tea,
            "near_t2s": cdm_vocab.near_candidates(t_str, s_str, torch.nonzero(tea2stu < 0)[:, 0].tolist(), thr, specials),
            "near_s2t": cdm_vocab.near_candidates(s_str, t_str, torch.nonzero(stu2tea < 0)[:, 0].tolist(), thr, specials),
        }
        self.strings, self.specials = (s_str, t_str), specials
        self.token_cost = TokenCost(t_str, s_str, specials)    # [V_t, V_s] table when small
        ctx.state["cdm_tables"] = self.tables
        self._teacher_w, self._teacher_top, self._averaged_top = {}, {}, {}   # ids are per cell: start empty

    @staticmethod
    def teacher_keys(batch) -> list[tuple[str, bytes]]:
        """Memo keys of a batch's rows: the example id and its teacher tokens. The teacher's logits
        are a function of its input, so a memo entry holds for the same id *and* the same teacher
        input (a padded, truncated or re-prompted copy of an example gets its own)."""
        ids, real = batch.teacher.input_ids.cpu().numpy(), batch.teacher.attention_mask.cpu().numpy() != 0
        return [(i, ids[b][real[b]].tobytes()) for b, i in enumerate(batch.ids)]

    def teacher_weights(self, ids: list, cells_t, real_t, sizes) -> np.ndarray:
        """The teacher side's entropy weights [B, W] (4 off ``real_t``), memoised per row key
        (`teacher_keys`). ``cells_t``: the content rows [B, W, V_t], or a function returning them
        (called only when a row is not in the memo).

        A row's weights depend on that example's teacher logits alone (min-max within the row),
        which never change, so each example's are computed once per cell.
        """
        sizes = sizes.tolist()
        known = [self._teacher_w.get(i) for i in ids]
        if all(k is not None and len(k) == n for k, n in zip(known, sizes)):
            out = np.full(real_t.shape, 4, dtype=np.int64)
            for b, k in enumerate(known):
                out[b, :len(k)] = k
            return out
        cells_t = cells_t() if callable(cells_t) else cells_t
        w_t = screened_entropy_weights(cells_t, real_t, weights_from_entropy).cpu().numpy()
        for i, row, n in zip(ids, w_t, sizes):
            self._teacher_w[i] = row[:n].copy()
        return w_t

    def teacher_topk(self, ids: list, merge: "Merge", k: int, entries=None) -> torch.Tensor:
        """Top-k ids [B, G, k] of the merged teacher steps (unordered, as `real_step_topk`).

        Most steps are one teacher content row taken whole (merge weight exactly 1): such a step
        *is* that row, bit for bit, and a row's top-k set never changes, so it comes from a
        per-example memo of all its content rows' sets (computed once per cell, keyed like the
        weights: ``ids`` from `teacher_keys`). Only the steps that average several rows are
        merged (those rows alone) and selected afresh; padded steps get ids 0..k-1. ``entries``:
        ``merge.teacher_entries()`` when the caller has them.
        """
        m_t, sizes = merge.m_t, merge.n_t.tolist()
        B, G, W = m_t.shape
        missing = [b for b, (i, n) in enumerate(zip(ids, sizes))
                   if (got := self._teacher_top.get(i)) is None or got.shape != (n, k)]
        if missing:
            cells = merge.cells_t()
            rows = torch.cat([cells[b, :sizes[b]] for b in missing])
            found = topk_ids(rows, k, ordered=False).split([sizes[b] for b in missing])
            for b, top in zip(missing, found):         # int32: a cell's memo is rows x k ids
                self._teacher_top[ids[b]] = top.to("cpu", torch.int32)
        top = torch.arange(k).repeat(B * G, 1)
        memo = torch.cat([self._teacher_top[i] for i in ids])              # every content row, row-major
        whole = (np.count_nonzero(m_t, axis=2) == 1) & (m_t.max(2, initial=0.0) == 1.0)
        whole &= merge.valid.cpu().numpy()
        if memo.numel() and whole.any():
            start = np.cumsum([0] + sizes[:-1])
            source = (start[:, None] + m_t.argmax(2))[whole]
            top[torch.from_numpy(np.flatnonzero(whole))] = memo.index_select(0, torch.from_numpy(source)).long()
        fresh = np.flatnonzero(merge.valid.cpu().numpy() & ~whole)
        if len(fresh):
            top[torch.from_numpy(fresh)] = self.averaged_topk(ids, merge, k, fresh, entries)
        return top.view(B, G, k).to(merge.valid.device)

    def averaged_topk(self, ids: list, merge: "Merge", k: int, fresh: np.ndarray, entries=None) -> torch.Tensor:
        """Top-k ids [len(fresh), k] of the steps ``fresh`` (flat b * G + g) that average several
        teacher rows, memoised per (row key, the step's rows and weights): the merged row is a
        function of those alone (same rows, same float64 weights, same float32 order), and the same
        groups recur from epoch to epoch, since the alignment moves little as the student trains."""
        B, G, W = merge.m_t.shape
        flat_m, sizes = merge.m_t.reshape(B * G, W), merge.n_t.tolist()
        keys = [(ids[s // G], flat_m[s, :sizes[s // G]].tobytes()) for s in fresh]   # W is the batch's padding
        todo = [j for j, key in enumerate(keys) if key not in self._averaged_top]
        if todo:
            steps, rows, weight = entries or merge.teacher_entries()
            which = torch.from_numpy(fresh[todo]).to(steps.device)
            z = merged_rows_at(merge.t_flat, steps, rows, weight, which, B * G)
            picked = real_step_topk(z.unsqueeze(0), torch.ones(1, len(todo), dtype=torch.bool, device=z.device), k)
            if len(self._averaged_top) + len(todo) > AVERAGED_MEMO:
                self._averaged_top.clear()
            for j, top in zip(todo, picked[0].to("cpu", torch.int32)):
                self._averaged_top[keys[j]] = top
        return torch.stack([self._averaged_top[key] for key in keys]).long()

    @staticmethod
    def content_rows(labels: torch.Tensor, shift: int):
        """Each row's content positions, left-aligned: (positions [B, W], real [B, W] bool, sizes [B],
        rows [B, W]: their logit rows' indices in ``logits.flatten(0, 1)``). Cells past a row's size
        point at some other row of the same sequence (finite; the merge gives them weight 0)."""
        pos, sizes = content_positions(labels)
        real = torch.arange(pos.shape[1], device=pos.device) < sizes.unsqueeze(1)
        # fix_row_shift: the row before a token predicts it (a row at position 0 has none: itself)
        flat = torch.arange(len(pos), device=pos.device).unsqueeze(1) * labels.shape[1] + (pos - shift).clamp(min=0)
        return pos, real, sizes, flat

    @staticmethod
    def content_cells(labels: torch.Tensor, logits: torch.Tensor, shift: int):
        """Each row's content-position logit rows, left-aligned: (cells [B, W, V], then
        `content_rows`' positions, real, sizes, rows). One ``index_select`` for the batch keeps the
        backward to one ``index_add``.
        """
        pos, real, sizes, flat = CDM.content_rows(labels, shift)
        cells = logits.flatten(0, 1).index_select(0, flat.view(-1)).view(*flat.shape, logits.shape[-1])
        return cells, pos, real, sizes, flat

    def merged_steps(self, batch, s_logits, t_logits):
        """DTW + merge of every row at once, padded: (Z_s [B, G, V_s], Z_t [B, G, V_t], valid [B, G])."""
        merge = self.merge(batch, s_logits, t_logits)
        steps, rows, weight = merge.teacher_entries()
        B, G = merge.valid.shape
        z_t = merged_rows_at(merge.t_flat, steps, rows, weight, torch.arange(B * G), B * G)
        return merge.z_s, z_t.view(B, G, -1), merge.valid

    def merge(self, batch, s_logits, t_logits) -> "Merge":
        """The DTW merge of every row at once: the student's merged steps, and the teacher's merge
        as entries over its logit rows (`Merge`; its rows are read where needed, not merged whole)."""
        shift = int(self.config.fix_row_shift)
        cells_s, s_pos, real_s, n_s, rows_s = self.content_cells(batch.student.labels, s_logits, shift)
        t_pos, real_t, n_t, rows_t = self.content_rows(batch.teacher.labels, shift)
        t_flat = t_logits.detach().flatten(0, 1)
        cells_t = lambda: t_flat.index_select(0, rows_t.view(-1)).view(*rows_t.shape, t_flat.shape[-1])
        w_s = screened_entropy_weights(cells_s, real_s, weights_from_entropy).cpu().numpy()
        keys = self.teacher_keys(batch)
        w_t = self.teacher_weights(keys, cells_t, real_t, n_t)
        s_ids = batch.student.input_ids.gather(1, s_pos).cpu().numpy()
        t_ids = batch.teacher.input_ids.gather(1, t_pos).cpu().numpy()
        ns, nt = n_s.tolist(), n_t.tolist()
        cost = self.token_cost.batch(t_ids, s_ids, nt, ns)
        # integer edit distances times integer weights: exact, as the per-pair dtw's products
        on_path = dtw_paths_batch(cost * w_t[:, :, None] * w_s[:, None, :], nt, ns)
        m_t, m_s, sizes = merge_batch(on_path, nt, ns)
        z_s = merge_rows(m_s, cells_s)
        sizes = torch.from_numpy(sizes).to(s_logits.device)
        valid = torch.arange(z_s.shape[1], device=s_logits.device) < sizes.unsqueeze(1)
        return Merge(z_s, valid, m_t, t_flat, rows_t, n_t, m_s, rows_s, keys)

    def loss(self, batch, student, teacher):
        cfg = self.config
        z_s, z_t = at_least_fp32(student.logits), at_least_fp32(teacher.logits.detach())
        # the merge and the top-k run without autograd; the KD's read of the student carries the gradient
        merge = self.merge(batch, z_s.detach(), z_t)
        k = min(cfg.top_k, z_s.shape[-1], z_t.shape[-1])
        entries = merge.teacher_entries()
        top_t = self.teacher_topk(merge.keys, merge, k, entries)
        tables = {k: v.to(z_s.device) for k, v in self.tables.items()}
        kd, mapped = cdm_kd_loss(merge.z_s, None, merge.valid, tables, top_k=cfg.top_k,
                                 temperature=cfg.kd_temperature, fix_swapped_roles=cfg.fix_swapped_roles,
                                 fix_candidate_filter=cfg.fix_candidate_filter,
                                 fix_mask_leak=cfg.fix_mask_leak, fix_distance=cfg.fix_distance, top_t=top_t,
                                 read_student=student_reader(merge, z_s), read_teacher=teacher_reader(merge, entries),
                                 teacher_vocab=z_t.shape[-1])
        total = cfg.kd_alpha * student.ce + (1.0 - cfg.kd_alpha) * kd
        return {"loss": total, "ce": student.ce, "kd": kd.detach(), "mapped_frac": mapped.detach().float()}


class Merge(NamedTuple):
    """One batch's merge (`CDM.merge`): the student's merged steps [B, G, V_s] and the steps' mask;
    the teacher's merge matrix [B, G, W] (float64) over its content rows, its logits as rows
    [B * L, V_t] (detached), the content rows' indices in them [B, W] and sizes [B]; the student's
    merge matrix and content-row indices; the rows' memo keys (`CDM.teacher_keys`)."""
    z_s: torch.Tensor
    valid: torch.Tensor
    m_t: np.ndarray
    t_flat: torch.Tensor
    rows_t: torch.Tensor
    n_t: torch.Tensor
    m_s: np.ndarray
    rows_s: torch.Tensor
    keys: list

    def cells_t(self) -> torch.Tensor:
        """The teacher's content rows [B, W, V_t]."""
        return self.t_flat.index_select(0, self.rows_t.reshape(-1)).view(*self.rows_t.shape, self.t_flat.shape[-1])

    def teacher_entries(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The teacher merge's non-zero entries as tensors (step b * G + g, row of ``t_flat``, weight)."""
        steps, cells, weight = merge_entries(self.m_t)
        device = self.t_flat.device
        rows = self.rows_t.reshape(-1).index_select(0, torch.from_numpy(cells).to(device))
        return torch.from_numpy(steps).to(device), rows, torch.from_numpy(weight).to(device)


def teacher_reader(merge: Merge, entries=None):
    """`cdm_kd_loss`'s ``read_teacher``: the merged teacher steps read at the ids (`merged_values`),
    as `gather_mapped` reads them from the whole merged rows, which are never built. ``entries``:
    ``merge.teacher_entries()`` when the caller has them."""
    steps, rows, weight = entries or merge.teacher_entries()

    def read(ids: torch.Tensor, drop_zero: bool) -> torch.Tensor:
        values, _ = read_merged(merge.t_flat, steps, rows, weight, ids.reshape(-1, ids.shape[-1]), drop_zero,
                                UNMAPPED_LOGIT)
        return values.view(ids.shape)
    return read


def student_reader(merge: Merge, logits: torch.Tensor):
    """`cdm_kd_loss`'s ``read_student`` for a merge built from detached student ``logits``: the values
    `gather_mapped` reads from ``merge.z_s`` (read from the logit rows by `read_merged`, the same
    products and sums), with the gradient sent to ``logits`` by `MergedRead`."""
    steps, cells, weight = merge_entries(merge.m_s)
    device = logits.device
    rows = merge.rows_s.reshape(-1).index_select(0, torch.from_numpy(cells).to(device))
    steps, weight = torch.from_numpy(steps).to(device), torch.from_numpy(weight).to(device)
    flat = logits.detach().flatten(0, 1) if logits.stride(0) == logits.shape[1] * logits.stride(1) \
        else logits.detach().reshape(-1, logits.shape[-1])

    def read(ids: torch.Tensor, drop_zero: bool) -> torch.Tensor:
        values, live = read_merged(flat, steps, rows, weight, ids.reshape(-1, ids.shape[-1]), drop_zero,
                                   UNMAPPED_LOGIT)
        return MergedRead.apply(logits, values.view(ids.shape), steps, rows, weight, live)
    return read


@hookimpl
def ctkd_register_methods(register):
    register(CDM)
