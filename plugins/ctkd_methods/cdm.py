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
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ctkd_bench import Method, Needs, Paper, hookimpl
from ctkd_bench.align.dtw import dtw, path_maps
from ctkd_bench.align.editdist import pairwise_edit_distance
from ctkd_bench.defaults import IGNORE_INDEX
from ctkd_methods import cdm_vocab
from ctkd_methods.uld import at_least_fp32

UNMAPPED_LOGIT = -1e4


def entropy_weights(logits: torch.Tensor) -> torch.Tensor:
    """[n] long in {3, 4, 5} from [n, V] logits (the official ``calculate_weight``)."""
    probs = torch.softmax(logits.detach().double(), dim=-1) + 1e-10
    entropy = -(probs * probs.log()).sum(-1)
    span = entropy.max() - entropy.min()
    if span <= 0:
        return torch.full((logits.shape[0],), 4, dtype=torch.long)
    factor = torch.sigmoid((entropy - entropy.min()) / span * 4 - 2)
    return (factor * 3 + 3).long()


def alignment_matrices(cost: torch.Tensor, w_t: torch.Tensor, w_s: torch.Tensor):
    """Weighted DTW, then the merge as matrices: (M_t [G, n_t], M_s [G, n_s]) with Z = M @ rows.

    ``cost`` [n_t, n_s] edit distances. Each student row j first takes the mean of its aligned
    teacher rows; groups = the distinct lists of student rows aligned to one teacher row, in order
    of first appearance; each group averages its members (the official ``merge_tensor`` twice).
    """
    n_t, n_s = cost.shape
    if n_t == 0 or n_s == 0:
        return torch.zeros(0, n_t, dtype=torch.float64), torch.zeros(0, n_s, dtype=torch.float64)
    _, path = dtw(cost, w_t, w_s)
    t_to_s, s_to_t = path_maps(path, n_t, n_s)
    to_student = torch.zeros(n_s, n_t, dtype=torch.float64)
    for j, rows in enumerate(s_to_t):
        to_student[j, rows] = 1.0 / len(rows)
    groups = list(dict.fromkeys(tuple(js) for js in t_to_s))
    m_s = torch.zeros(len(groups), n_s, dtype=torch.float64)
    for g, js in enumerate(groups):
        m_s[g, list(js)] = 1.0 / len(js)
    return m_s @ to_student, m_s


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


def cdm_kd_loss(z_s: torch.Tensor, z_t: torch.Tensor, valid: torch.Tensor, tables: dict, *,
                top_k: int = 100, temperature: float = 2.0, fix_swapped_roles: bool = False,
                fix_candidate_filter: bool = False, fix_mask_leak: bool = False,
                fix_distance: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """KD on merged steps: ``z_s`` [B, G, V_s] and ``z_t`` [B, G, V_t] **logits** (teacher detached).

    ``tables``: ``tea2stu`` [V_t], ``stu2tea`` [V_s] exact maps (-1 none), ``near_t2s`` [V_t, R],
    ``near_s2t`` [V_s, R] (``cdm_vocab.near_candidates``). Returns (kd, mapped fraction).
    """
    z_t = z_t.detach()
    k = min(top_k, z_s.shape[-1], z_t.shape[-1])
    top_t, top_s = z_t.topk(k, dim=-1).indices, z_s.detach().topk(k, dim=-1).indices
    keep_zero = fix_mask_leak

    def candidates(top, source_exact):
        cand = top.clone()
        if not keep_zero:
            cand[cand == 0] = -1                 # id 0 is the official "unmapped" sentinel
        if not fix_candidate_filter:             # official: removes *target* ids by *source* ids
            n = source_exact.numel()
            collide = (cand >= 0) & (cand < n) & (source_exact[cand.clamp(0, n - 1)] < 0)
            cand[collide] = -1
        return cand

    def no_zero(ids):
        return ids if keep_zero else ids.masked_fill(ids == 0, -1)

    stu_of_t = no_zero(cdm_vocab.dynamic_map(top_t, candidates(top_s, tables["tea2stu"]),
                                             tables["tea2stu"], tables["near_t2s"], valid))
    t_masked = torch.where(stu_of_t < 0, torch.full_like(top_t, -1), top_t)
    pool_t = top_t if fix_mask_leak else t_masked   # official: direction 2 sees the masked ids
    tea_of_s = no_zero(cdm_vocab.dynamic_map(top_s, candidates(pool_t, tables["stu2tea"]),
                                             tables["stu2tea"], tables["near_s2t"], valid))
    s_masked = torch.where(tea_of_s < 0, torch.full_like(top_s, -1), top_s)
    drop_zero = not keep_zero
    t1, s1 = gather_mapped(z_t, t_masked, drop_zero), gather_mapped(z_s, stu_of_t, drop_zero)
    s2, t2 = gather_mapped(z_s, s_masked, drop_zero), gather_mapped(z_t, tea_of_s, drop_zero)
    if fix_swapped_roles:
        y, x = torch.cat([t1, t2], -1), torch.cat([s1, s2], -1)
    else:
        y, x = torch.cat([t1, s2], -1), torch.cat([s1, t2], -1)
    kd = cdm_distance(x, y, valid, temperature, true_kl=fix_distance)
    real = valid.unsqueeze(-1)
    mapped = ((stu_of_t >= 0) & real).sum() + ((tea_of_s >= 0) & real).sum()
    return kd, mapped / (2 * real.sum() * k).clamp(min=1)


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
        ctx.state["cdm_tables"] = self.tables

    def token_cost(self, t_ids: list[int], s_ids: list[int]) -> torch.Tensor:
        """Edit-distance cost between the response tokens; memoised per token-id pair (fixed per example)."""
        key = (tuple(t_ids), tuple(s_ids))
        cache = self.__dict__.setdefault("_cost_cache", {})
        if key not in cache:
            if len(cache) >= 100_000:
                cache.clear()
            cache[key] = self._token_cost(t_ids, s_ids)
        return cache[key]

    def _token_cost(self, t_ids: list[int], s_ids: list[int]) -> torch.Tensor:
        s_str, t_str = self.strings
        a, b = [t_str[i] for i in t_ids], [s_str[i] for i in s_ids]
        cost = torch.from_numpy(pairwise_edit_distance(a, b)).double()
        ta = torch.tensor([x in self.specials for x in a]).unsqueeze(1)
        sb = torch.tensor([x in self.specials for x in b]).unsqueeze(0)
        return cost.masked_fill(ta & sb, 0.0)

    def merged_steps(self, batch, s_logits, t_logits):
        """Per-row DTW + merge, padded: (Z_s [B, G, V_s], Z_t [B, G, V_t], valid [B, G])."""
        shift = int(self.config.fix_row_shift)
        out_s, out_t = [], []
        for b in range(s_logits.shape[0]):
            s_pos = torch.nonzero(batch.student.labels[b] != IGNORE_INDEX)[:, 0]
            t_pos = torch.nonzero(batch.teacher.labels[b] != IGNORE_INDEX)[:, 0]
            # fix_row_shift: the row before a token predicts it (a row at position 0 has none: itself)
            rows_s, rows_t = s_logits[b, (s_pos - shift).clamp(min=0)], t_logits[b, (t_pos - shift).clamp(min=0)]
            cost = self.token_cost(batch.teacher.input_ids[b, t_pos].tolist(),
                                   batch.student.input_ids[b, s_pos].tolist())
            m_t, m_s = alignment_matrices(cost, entropy_weights(rows_t), entropy_weights(rows_s))
            out_s.append(m_s.to(rows_s.dtype) @ rows_s)
            out_t.append(m_t.to(rows_t.dtype) @ rows_t)
        width = max(z.shape[0] for z in out_s)
        valid = torch.tensor([[g < z.shape[0] for g in range(width)] for z in out_s], device=s_logits.device)
        pad = lambda zs: torch.stack([torch.nn.functional.pad(z, (0, 0, 0, width - z.shape[0])) for z in zs])
        return pad(out_s), pad(out_t), valid

    def loss(self, batch, student, teacher):
        cfg = self.config
        z_s, z_t = at_least_fp32(student.logits), at_least_fp32(teacher.logits.detach())
        m_s, m_t, valid = self.merged_steps(batch, z_s, z_t)
        tables = {k: v.to(z_s.device) for k, v in self.tables.items()}
        kd, mapped = cdm_kd_loss(m_s, m_t, valid, tables, top_k=cfg.top_k, temperature=cfg.kd_temperature,
                                 fix_swapped_roles=cfg.fix_swapped_roles,
                                 fix_candidate_filter=cfg.fix_candidate_filter,
                                 fix_mask_leak=cfg.fix_mask_leak, fix_distance=cfg.fix_distance)
        total = cfg.kd_alpha * student.ce + (1.0 - cfg.kd_alpha) * kd
        return {"loss": total, "ce": student.ce, "kd": kd.detach(), "mapped_frac": mapped.detach().float()}


@hookimpl
def ctkd_register_methods(register):
    register(CDM)
