"""MinED baseline: minimum-edit-distance token alignment + vanilla KD (FuseLLM's alignment).

Origin: Wan et al., *Knowledge Fusion of Large Language Models* (FuseLLM, ICLR 2024, arXiv
2401.10491), token alignment by DTW over token strings and MinED vocabulary maps. Implementation
reproduced: ``songmzhang/DSKD`` @ ``077337ac989045ccf11a6dd927418e3cf4f40971``,
``code/criterions/min_edit_dis_kld.py`` :: ``MinEditDisForwardKLD`` (``get_aligned_teacher_logits``,
``transform_step_logits_fast``, ``dtw``), maps loaded in ``code/distiller.py`` (``stu2tea`` is the
inverse of ``tea2stu``, one teacher id per student id), FKL in ``various_divergence.py``; scripts
``scripts/*/minedit_*.sh`` (kd_rate 0.5, kd_temperature 2.0).

What it computes, per row, over the *content rows* (the rows that predict response tokens; each
row is represented by its current input token, as in the DSKD code):

1. DTW (``ctkd_bench.align.dtw``; ties diagonal, up, left) between the teacher's and the student's
   content-token strings with cost = edit distance of the normalised strings.
2. A student row j keeps a teacher target when DTW aligns it to exactly one teacher row i **and**
   ``tea2stu[teacher token i] == student token j``; the target logits are the teacher row i read
   through the map, ``z[v] = z_t[i, stu2tea[v]]`` (``-1e5`` for student ids no teacher id maps to).
   Every other content row gets a one-hot target on its gold next token (``+100`` / ``-1e5``).
3. ``kd = sum_rows FKL(softmax(target / T) || softmax(z_s / T))`` with T = 2 (no T^2), and
   ``loss = ((1 - kd_rate) * CE_sum + kd_rate * kd) / N_student_targets``
   = ``0.5 * CE + 0.5 * kd / N`` (``StudentOutputs.ce`` is already CE_sum / N).

``tea2stu`` is ``mined_vocab_map(teacher_tokenizer, student_tokenizer)`` from the alignment
toolkit (closest student id by edit distance of normalised strings, exact match first, ties to
the lowest id), built in ``prepare``; ``stu2tea[s]`` is the lowest teacher id t with
``tea2stu[t] == s`` (the DSKD loader keeps the first of the JSON's teacher ids).

Deviations (deliberate):

- HF-unshifted labels: the DSKD repo's pre-shifted content rows are our rows t with
  ``labels[t+1] != -100``; the row's token is ``input_ids[t]`` and its gold target ``labels[t+1]``.
- Token strings are the toolkit's normalised strings (byte-level bytes decoded, one word-start
  marker stripped) instead of DSKD's class-keyed replacement of ``Ġ``/``▁`` only, so that e.g.
  ``Ċ`` and ``<0x0A>`` compare as the same newline; this works for any tokenizer family.
- The one-hot rows are computed in closed form (``-log_softmax(z_s / T)[y]``, exactly what the
  +100/-1e5 row gives in float32); non-content rows are masked rather than given the student's
  own logits (both contribute zero).
- DTW alignments depend only on the token strings, so they are cached per (teacher, student)
  content-token sequence; the FuseLLM map files are rebuilt by the toolkit, not downloaded.

Implementation (step cost; values identical to ``mined_row_alignment`` per row, tested): the
rows of a batch not seen before are aligned together (``ctkd_bench.align.dtw_batch``, exact for
integer edit distances), with the edit distances read from a [V_t, V_s] table built in
``prepare`` when the vocabularies are small (``_token_cost``). Above 32 MB of rows (the papers'
vocabularies) the KD sum runs over pieces of rows read by index, with one written-out backward
for teacher and one-hot rows (``_kd_sum_in_pieces``; equal to the whole-batch form, tested).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ctkd_bench import Method, Needs, Paper, hookimpl
from ctkd_bench.align.dtw_batch import dtw_paths_batch
from ctkd_bench.align.strings import dtw, mined_vocab_map, normalized_vocab, pairwise_edit_distance, path_maps
from ctkd_bench.defaults import IGNORE_INDEX
from ctkd_methods import _pieces
from ctkd_methods._token_cost import TokenCost
from ctkd_methods.uld import at_least_fp32

NEG = -1e5   # the DSKD code's finite "impossible" logit


def invert_vocab_map(tea2stu: torch.Tensor, student_vocab: int) -> torch.Tensor:
    """stu2tea [V_s]: the lowest teacher id mapped to each student id, -1 where none is."""
    stu2tea = torch.full((student_vocab,), -1, dtype=torch.long)
    teacher_ids = torch.arange(len(tea2stu), dtype=torch.long)
    valid = (tea2stu >= 0) & (tea2stu < student_vocab)
    # scatter in reverse order so that the lowest teacher id is written last
    stu2tea[tea2stu[valid].flip(0)] = teacher_ids[valid].flip(0)
    return stu2tea


def mined_row_alignment(teacher_strs: list[str], student_strs: list[str], teacher_ids: list[int],
                        student_ids: list[int], tea2stu: torch.Tensor) -> list[int]:
    """For each student content row j: the teacher content row i it keeps, or -1 (one-hot).

    Kept when DTW over edit distances aligns j to exactly one i and the MinED map agrees on
    the two tokens (``tea2stu[teacher_ids[i]] == student_ids[j]``).
    """
    n_t, n_s = len(teacher_strs), len(student_strs)
    if n_t == 0 or n_s == 0:
        return [-1] * n_s
    cost = pairwise_edit_distance(teacher_strs, student_strs)
    _, path = dtw(cost)
    _, student_to_teacher = path_maps(path, n_t, n_s)
    kept = []
    for j, rows in enumerate(student_to_teacher):
        ok = len(rows) == 1 and int(tea2stu[teacher_ids[rows[0]]]) == student_ids[j]
        kept.append(rows[0] if ok else -1)
    return kept


def left_aligned(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions where ``mask`` [B, L] holds, left-aligned per row: ([B, W] with W = max count, counts [B])."""
    sizes = mask.sum(1)
    order = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices
    return order[:, :int(sizes.max()) if sizes.numel() else 0], sizes


def content_rows(labels: torch.Tensor) -> torch.Tensor:
    """[B, L] bool: rows that predict a response token (HF unshifted: labels[t+1] != -100)."""
    rows = torch.zeros_like(labels, dtype=torch.bool)
    rows[:, :-1] = labels[:, 1:] != IGNORE_INDEX
    return rows


def mined_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                  student_labels: torch.Tensor, aligned_teacher_row: torch.Tensor,
                  stu2tea: torch.Tensor, temperature: float = 2.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed FKL of the MinED targets, and the number of rows with a teacher target.

    ``student_logits`` [B, L_s, V_s] and ``teacher_logits`` [B, L_t, V_t] are raw **logits**
    (teacher detached here). ``student_labels`` [B, L_s] HF unshifted (any padding side): row t
    counts when ``labels[t+1] != -100``, its gold token is ``labels[t+1]``.
    ``aligned_teacher_row`` [B, L_s] long: the teacher *position* (row of teacher_logits) whose
    distribution row t takes, or -1 for a one-hot target. ``stu2tea`` [V_s]: teacher id per
    student id, -1 where none. Returns (sum over content rows of
    KL(softmax(target / T) || softmax(z_s / T)), number of teacher-target rows).
    """
    rows = content_rows(student_labels)
    gold = torch.zeros_like(student_labels)
    gold[:, :-1] = student_labels[:, 1:].clamp(min=0)
    if student_logits.device.type == "cpu" and _pieces.use_pieces(
            int(rows.sum()), max(student_logits.shape[-1], teacher_logits.shape[-1])):
        return _kd_sum_in_pieces(student_logits, teacher_logits, rows, gold, aligned_teacher_row, stu2tea,
                                 temperature)
    z_s = at_least_fp32(student_logits[rows]) / temperature                     # [N, V_s]
    lprobs = torch.log_softmax(z_s, dim=-1)
    one_hot_kl = -lprobs.gather(-1, gold[rows].unsqueeze(-1)).squeeze(-1)
    teacher_row = aligned_teacher_row[rows]
    use_teacher = (teacher_row >= 0) & bool((stu2tea >= 0).any())
    batch_index = torch.nonzero(rows)[:, 0]
    t_rows = teacher_logits.detach()[batch_index[use_teacher], teacher_row[use_teacher]].to(z_s.dtype)
    mapped = stu2tea >= 0
    target = torch.full((t_rows.shape[0], z_s.shape[-1]), NEG, dtype=z_s.dtype, device=z_s.device)
    target[:, mapped] = t_rows[:, stu2tea[mapped]]
    target_lp = torch.log_softmax(target / temperature, dim=-1)
    teacher_kl = (target_lp.exp() * (target_lp - lprobs[use_teacher])).sum(-1)
    total = one_hot_kl[~use_teacher].sum() + teacher_kl.sum()
    return total, use_teacher.sum()


def _kd_sum_in_pieces(student_logits, teacher_logits, rows, gold, aligned_teacher_row, stu2tea, temperature):
    """`mined_kd_loss` over pieces of rows read by index: no [N, V] tensor is built whole.

    Every content row's target q is a distribution over the student vocabulary (the mapped
    teacher softmax, or one-hot on the gold token: its KL is then the tempered CE), so each row
    contributes ``sum q (log q - log p_s)`` and one backward serves both kinds.
    """
    flat_rows = rows.reshape(-1).nonzero().squeeze(1)
    batch_index = flat_rows // rows.shape[1]
    teacher_row = aligned_teacher_row.reshape(-1)[flat_rows]
    use_teacher = (teacher_row >= 0) & bool((stu2tea >= 0).any())
    t_flat = torch.where(use_teacher, batch_index * teacher_logits.shape[1] + teacher_row.clamp(min=0), -1)
    per_row = _MinedRows.apply(student_logits, flat_rows, gold.reshape(-1)[flat_rows], teacher_logits.detach(),
                               t_flat, stu2tea, float(temperature))
    return per_row.sum(), use_teacher.sum()


def _mined_targets(z_t, t_rows, gold, stu2tea, v_s: int, temperature: float):
    """Log-probabilities of the targets of one piece: mapped teacher rows, else one-hot on gold."""
    n = gold.shape[0]
    mapped = (stu2tea >= 0).nonzero().squeeze(1)
    target = torch.full((n, v_s), NEG, dtype=torch.float32, device=gold.device)
    has = t_rows >= 0
    if bool(has.any()):     # one-hot rows read some teacher row too; their targets are replaced below
        t = z_t.index_select(0, t_rows.clamp(min=0)).index_select(1, stu2tea[mapped])
        target.index_copy_(1, mapped, t.to(torch.float32))
    log_q = torch.log_softmax(target / temperature, dim=-1)
    one_hot = torch.full_like(log_q, float("-inf")).scatter_(-1, gold.unsqueeze(-1), 0.0)
    return torch.where(has.unsqueeze(-1), log_q, one_hot)


class _MinedRows(torch.autograd.Function):

    @staticmethod
    def forward(ctx, student_logits, s_rows, gold, teacher_logits, t_rows, stu2tea, temperature: float):
        z_s, z_t = student_logits.reshape(-1, student_logits.shape[-1]), teacher_logits.reshape(-1, teacher_logits.shape[-1])
        out = torch.empty(s_rows.numel(), dtype=torch.float32)
        step = _pieces.rows_per_piece(max(z_s.shape[-1], z_t.shape[-1]))
        for i in range(0, s_rows.numel(), step):
            lp = torch.log_softmax(at_least_fp32(z_s.index_select(0, s_rows[i:i + step])).float() / temperature, -1)
            log_q = _mined_targets(z_t, t_rows[i:i + step], gold[i:i + step], stu2tea, z_s.shape[-1], temperature)
            q = log_q.exp()
            out[i:i + step] = torch.where(q > 0, q * (log_q - lp), 0.0).sum(-1)
        ctx.save_for_backward(student_logits, s_rows, gold, teacher_logits, t_rows, stu2tea)
        ctx.temperature, ctx.step = temperature, step
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        student_logits, s_rows, gold, teacher_logits, t_rows, stu2tea = ctx.saved_tensors
        z_s, z_t = student_logits.reshape(-1, student_logits.shape[-1]), teacher_logits.reshape(-1, teacher_logits.shape[-1])
        grad = torch.zeros(z_s.shape, dtype=torch.float32)
        for i in range(0, s_rows.numel(), ctx.step):
            rows = s_rows[i:i + ctx.step]
            lp = torch.log_softmax(at_least_fp32(z_s.index_select(0, rows)).float() / ctx.temperature, -1)
            q = _mined_targets(z_t, t_rows[i:i + ctx.step], gold[i:i + ctx.step], stu2tea, z_s.shape[-1],
                               ctx.temperature).exp()
            d = q.mul_(grad_out[i:i + ctx.step].unsqueeze(-1)).neg_()          # d/d lp of -sum q lp
            d.sub_(lp.exp_().mul_(d.sum(-1, keepdim=True))).div_(ctx.temperature)
            grad.index_add_(0, rows, d)
        return grad.view(student_logits.shape).to(student_logits.dtype), None, None, None, None, None, None


class MinED(Method):
    name = "mined"
    category = "baseline"
    summary = ("Baseline: DTW over token strings with an edit-distance cost plus a MinED vocabulary "
               "map; teacher logits where the alignment is 1-to-1 and the map agrees, else one-hot; then vanilla KD.")
    paper = Paper(title="Knowledge Fusion of Large Language Models (MinED alignment, as re-implemented "
                        "in the DSKD repository)", url="https://arxiv.org/abs/2401.10491", venue="ICLR 2024")
    tracks = ("lm", "math", "instruct")
    needs = Needs(logits=True)
    variant = "dskd-repo"

    @dataclass(frozen=True)
    class Config:
        kd_rate: float = 0.5
        kd_temperature: float = 2.0
        cache_size: int = 200_000   # per-sequence alignments kept in memory

    def prepare(self, ctx):
        tea2stu = mined_vocab_map(ctx.teacher_tokenizer, ctx.student_tokenizer, cache_dir=ctx.artifact_dir)
        ctx.state["mined_tea2stu"] = tea2stu
        self.tea2stu = tea2stu
        self.stu2tea = invert_vocab_map(tea2stu, len(ctx.student_tokenizer))
        self.student_strings = normalized_vocab(ctx.student_tokenizer)
        self.teacher_strings = normalized_vocab(ctx.teacher_tokenizer)
        self.token_cost = TokenCost(self.teacher_strings, self.student_strings)   # [V_t, V_s] table when small
        self._alignments: dict = {}

    def aligned_rows(self, batch) -> torch.Tensor:
        """[B, L_s] teacher position kept by each student content row (-1: one-hot or not content).

        Alignments are memoised per (teacher, student) content-token sequence; the rows not seen
        before are aligned together (`dtw_paths_batch`, costs from the id-pair table).
        """
        s_pos, n_s = left_aligned(content_rows(batch.student.labels).cpu())
        t_pos, n_t = left_aligned(content_rows(batch.teacher.labels).cpu())
        s_tok = batch.student.input_ids.cpu().gather(1, s_pos).numpy()
        t_tok = batch.teacher.input_ids.cpu().gather(1, t_pos).numpy()
        n_s, n_t = n_s.numpy(), n_t.numpy()
        keys = [(tuple(t_tok[b, :n_t[b]].tolist()), tuple(s_tok[b, :n_s[b]].tolist())) for b in range(len(n_s))]
        kept = [self._alignments.get(key) for key in keys]
        todo = [b for b, k in enumerate(kept) if k is None]
        if todo:
            for b, k in zip(todo, self._align_rows(t_tok[todo], s_tok[todo], n_t[todo], n_s[todo])):
                kept[b] = k
                if len(self._alignments) < self.config.cache_size:
                    self._alignments[keys[b]] = k
        out = torch.full(batch.student.input_ids.shape, -1, dtype=torch.long)
        for b, k in enumerate(kept):
            ok = k >= 0
            out[b, s_pos[b, :n_s[b]][ok]] = t_pos[b, k[ok]]
        return out.to(batch.student.input_ids.device)

    def _align_rows(self, t_tok: np.ndarray, s_tok: np.ndarray, n_t: np.ndarray, n_s: np.ndarray) -> list:
        """`mined_row_alignment` of each row's content tokens, all rows at once: [n_s[b]] long tensors."""
        if t_tok.shape[1] == 0 or s_tok.shape[1] == 0:
            return [torch.full((ns,), -1, dtype=torch.long) for ns in n_s]
        cost = np.zeros((len(n_s), t_tok.shape[1], s_tok.shape[1]))
        for b, (nt, ns) in enumerate(zip(n_t, n_s)):
            cost[b, :nt, :ns] = self.token_cost(t_tok[b, :nt], s_tok[b, :ns])
        on_path = torch.from_numpy(dtw_paths_batch(cost, n_t, n_s))        # [B, N_t, N_s]
        teacher_row = on_path.to(torch.int8).argmax(1)                     # a student column's (first) row
        one_to_one = on_path.sum(1) == 1
        t_ids = torch.from_numpy(t_tok).gather(1, teacher_row)
        agree = self.tea2stu[t_ids] == torch.from_numpy(s_tok)
        kept = torch.where(one_to_one & agree, teacher_row, -1)
        return [kept[b, :ns] for b, ns in enumerate(n_s)]

    def loss(self, batch, student, teacher):
        cfg = self.config
        aligned = self.aligned_rows(batch)
        kd_sum, n_teacher = mined_kd_loss(student.logits, teacher.logits, batch.student.labels, aligned,
                                          self.stu2tea.to(student.logits.device), cfg.kd_temperature)
        n_targets = content_rows(batch.student.labels).sum()
        kd = kd_sum / n_targets.clamp(min=1)
        total = (1.0 - cfg.kd_rate) * student.ce + cfg.kd_rate * kd
        return {"loss": total, "ce": student.ce, "kd": kd.detach(),
                "teacher_target_frac": (n_teacher / n_targets.clamp(min=1)).detach().float()}


@hookimpl
def ctkd_register_methods(register):
    register(MinED)
