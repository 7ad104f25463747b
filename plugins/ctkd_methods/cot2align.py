"""CoT2Align: cross-chain-of-thought distillation via optimal-transport alignment.

Paper: Anh Duc Le, Tu Vu, Nam Le Hai, Nguyen Thi Ngoc Diep, Linh Ngo Van, Trung Le,
Thien Huu Nguyen, "CoT2Align: Cross-Chain of Thought Distillation via Optimal
Transport Alignment for Language Models with Different Tokenizers", arXiv 2502.16806:
Sec. 3 (DSKD-CMA base, the cross-CoT alignment and the sequence-level OT losses,
L = (1-α) L_CE + α (L_KD + L_OT) in the code's form).
Official code: brianminhle/dskd_ot_rationale @ 0c459653253865f8c27c4185116d51646b517f9b:
``code/criterions/dual_space_kd_with_cross_model_attention_ot_rationale.py``
(``ETP``, ``DualSpaceKDWithCMA_OT_Rationale.forward`` / ``compute_etp_loss``),
``code/data_utils/distill_datasets_rationale.py`` (``_process_lm``, ``collate``),
``make_data_for_ACL/make_rationale_data_train.py`` + ``final_make_data.py`` (CoT records),
``configs/projector_config.json`` (``"ot": "t-s"``). Notes: /work/shared/methods/cot2align.md.

What the default computes, per batch of B examples (each a plain pair and its
"cot" view: CoT prompt, teacher rationale + "\\nTherefore, the answer is: " + gold):
the official code turns every example into a plain record and a CoT record, so a
step here is the batch of those 2B records:

    loss = (1-r) CE_sum/n + r (KD_sum/n + OT),   n = student target tokens of both formats
    KD   = DSKD-CMA terms (``_cma.cma_terms``) on the plain pair and on the CoT pair
    OT   = Σ_layer∈{emb, last} [ETP(s_plain, t_plain) + ETP(s_cot, t_cot)
                                + ETP(s_plain, t_cot) + ETP(s_cot, t_plain)] / (4 · 2B)

ETP(x, y) = Σ P ⊙ M with M = 1 - softmax_row(x ot(y)ᵀ / sqrt(d_s)) over response
positions (pre-shifted target masks), uniform marginals, Sinkhorn kernel
K = exp(-0.1·M) (the official ``sinkhorn_alpha`` MULTIPLIES the cost), Sinkhorn with
gradients through the iterations (officially at most 100; see deviations).
One ``ot`` projector (d_t -> d_s) serves every term and both layers.

Official data bug reproduced by default: the teacher's plain-format labels of a CoT
record are masked entirely, so ETP(s_cot, t_plain) is always 0 (terms 5-6).

Switches (all off by default = official):
- ``fix_masked_ot_terms``: mask only the teacher's plain prompt, making terms 5-6 live;
- ``ot_divisor="nonempty_rows"``: divide each OT call by 4 x its non-empty rows,
  not by 4 x all records (plain records count but contribute nothing to terms 3-6);
- ``ot_kernel="div"``: K = exp(-M / sinkhorn_alpha) (EMO's convention) instead of
  exp(-sinkhorn_alpha · M), which makes the plan almost uniform;
- DSKD-CMA's ``masked_std`` and ``gate_t2s_kd`` (see ``dskd.py``).

Deviations:
- Labels: core HF labels are converted to pre-shifted targets inside (``preshift_labels``).
- Examples: every example gets a CoT view (the official code makes CoT records only
  for examples with a non-empty ``input`` field; the core's tracks have none). The CoT
  prompt is the track prompt + "Let's think step by step.\\n" (officially a dedicated
  Alpaca template that also says "with reasoning step by step"), and the gold answer
  after the bridge is left-stripped.
- Records: the plain and CoT records of an example share one step (officially they
  are shuffled into different batches); normalisation treats the step as one batch
  of 2B records. Denominators are per micro-batch, not per global batch.
- Precision: OT in fp32 with fp32 marginals (official bf16, ETP even requires bf16 marginals).
- Sinkhorn: the shared log-domain ``align.ot.sinkhorn`` (u-first, no 1e-9 guards) instead
  of the official plain-domain loop (v first, ``+1e-9`` in each division); both reach the
  same plan (tested against a transcription of the official per-row loop).
- Sinkhorn stopping: the official loop checks its L1 column-marginal error against 1e-9
  at iterations 1 and 51 only, a level below fp32/bf16 noise, so it effectively always
  runs 100 iterations. Here the (row-)marginal error is checked every iteration against
  ``sinkhorn_tol`` (1e-6): with the official kernel the plan converges in 2-3 iterations,
  and value and gradient match the 100-iteration run to ~1e-5 (tested) at a fraction of
  the cost. ``sinkhorn_tol=0`` restores the fixed 100 iterations.
- The KD objective default is FKL (argparse default; the GPT-2 script uses
  ``skewed_reverse_kl``, the TinyLlama one FKL with kd_rate 0.9).
- Cost: the core runs one extra student and teacher pass per step on the view and a
  teacher generation pass over the training prompts (metered as the method's).

Contract with the core: ``needs.generations``; the teacher continues
``generation_prompt(example)`` once per training example with ``generation_settings``
(official ``eval_main_lora_gen_rationale.sh``: sampling, T = 1, top-k 0, top-p 1); the
text lands in ``example["generation"]``; ``views["cot"]`` turns that example into the
CoT record, which the core collates into ``batch.views["cot"]`` and runs through the
student (``student.views["cot"]``, with hidden states) and the teacher
(``teacher.views["cot"]``, the same declared signals).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ctkd_bench import Method, Needs, Paper, hookimpl
from ctkd_bench.align.ot import sinkhorn

from ._cma import cma_terms, preshift_labels, project
from ._divergences import KDObjective, canonical_objective
from .dskd import build_projectors, student_inputs, teacher_inputs

COT_TRIGGER = "Let's think step by step.\n"
ANSWER_BRIDGE = "\nTherefore, the answer is: "
KERNELS = ("mul", "div")
DIVISORS = ("records", "nonempty_rows")


# -- the CoT view ------------------------------------------------------------------------------
def cot_prompt(example: dict) -> str:
    """The prompt the teacher continues with its rationale, and the CoT view's prompt."""
    prompt = example["prompt"]
    sep = "" if not prompt or prompt[-1].isspace() else " "
    return prompt + sep + COT_TRIGGER


def cot_view(example: dict) -> tuple[str, str]:
    """(prompt, response) of the CoT record: teacher rationale, bridge, gold answer."""
    return cot_prompt(example), example["generation"] + ANSWER_BRIDGE + example["response"].lstrip()


# -- entropic OT (ETP) -------------------------------------------------------------------------
def attention_cost(x: torch.Tensor, y: torch.Tensor, y_mask: torch.Tensor) -> torch.Tensor:
    """M [R, n, m] = 1 - softmax over valid y of x yᵀ / sqrt(d) (official 'attention' cost)."""
    scores = x.matmul(y.transpose(-1, -2)) / math.sqrt(x.shape[-1])
    scores = scores.masked_fill(~y_mask.unsqueeze(1), torch.finfo(scores.dtype).min)
    return 1.0 - torch.softmax(scores, dim=-1)


def transport_plan(cost: torch.Tensor, x_mask: torch.Tensor, y_mask: torch.Tensor, *, alpha: float,
                   kernel: str = "mul", n_iters: int = 100, tol: float = 0.0) -> torch.Tensor:
    """ETP plan [R, n, m]: uniform marginals on the valid positions of each row.

    ``align.ot.sinkhorn`` with an explicit kernel convention: "mul" K = exp(-alpha·M) (the
    official CoT2Align code), "div" K = exp(-M/alpha) (EMO). Masked positions get zero
    marginal and an exactly zero plan, so a row equals the official run on the pruned
    sequences. ``tol`` > 0 stops once every row's marginal L1 error is below it.
    """
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    a = x_mask.to(cost.dtype) / x_mask.sum(-1, keepdim=True).clamp_min(1)
    b = y_mask.to(cost.dtype) / y_mask.sum(-1, keepdim=True).clamp_min(1)
    return sinkhorn(cost, a, b, alpha, n_iters=n_iters, kernel=kernel, tol=tol if tol > 0 else None)


def etp(x: torch.Tensor, y: torch.Tensor, x_mask: torch.Tensor, y_mask: torch.Tensor, *,
        alpha: float = 0.1, kernel: str = "mul", n_iters: int = 100, tol: float = 0.0) -> torch.Tensor:
    """ETP per row [R] (float32): Σ P ⊙ M between x [R, n, d] and y [R, m, d] on masked positions.

    Masks [R, n] / [R, m] bool mark the positions that take part (either padding side);
    a row with no valid position on either side gives 0 (and is not solved, so it cannot
    hold up the early stop). Both inputs may carry grad.
    """
    x_mask, y_mask = x_mask.bool(), y_mask.bool()
    live = (x_mask.any(-1) & y_mask.any(-1)).nonzero().squeeze(-1)
    out = x.new_zeros(x.shape[0], dtype=torch.float32)
    if live.numel() == 0:
        return out
    cost = attention_cost(x[live].float(), y[live].float(), y_mask[live])
    plan = transport_plan(cost, x_mask[live], y_mask[live], alpha=alpha, kernel=kernel, n_iters=n_iters,
                          tol=tol)
    return out.index_copy(0, live, (plan * cost).sum((-1, -2)))


# -- the six OT terms ----------------------------------------------------------------------------
@dataclass(frozen=True)
class FormatStates:
    """One answer format (plain or CoT) of a batch, for the OT terms.

    student: (embedding output, last hidden) [B, L_s, d_s]; teacher: the same two layers
    already through the ``ot`` projector, [B, L_t, d_s]; masks [B, L] bool = pre-shifted
    target masks (response positions as the official code scores them).
    """
    student: tuple[torch.Tensor, torch.Tensor]
    teacher: tuple[torch.Tensor, torch.Tensor]
    student_mask: torch.Tensor
    teacher_mask: torch.Tensor


def _pad_to(t: torch.Tensor, length: int) -> torch.Tensor:
    extra = length - t.shape[1]
    if extra == 0:
        return t
    return torch.cat([t, t.new_zeros((t.shape[0], extra) + tuple(t.shape[2:]))], dim=1)


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
    pairs = []  # (student format, teacher format, teacher mask), order = calls 1-2p, 1-2c, 3-4, 5-6
    pairs.append((plain, plain, plain.teacher_mask))
    pairs.append((cot, cot, cot.teacher_mask))
    pairs.append((plain, cot, cot.teacher_mask))
    pairs.append((cot, plain, t_plain_cross))
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
    """ETP rows [2 layers, 4 pairs, B] in one batched Sinkhorn; pairs not in `live` stay 0
    (the faithful terms 5-6 have an all-False teacher mask and are not computed)."""
    fmt = pairs[0][0]
    B = fmt.student_mask.shape[0]
    if not live:
        return fmt.student[0].new_zeros((2, 4, B), dtype=torch.float32)
    n_max = max(pairs[k][0].student_mask.shape[1] for k in live)
    m_max = max(pairs[k][2].shape[1] for k in live)
    xs, ys, xm, ym = [], [], [], []
    for layer in (0, 1):
        for k in live:
            s_fmt, t_fmt, t_mask = pairs[k]
            xs.append(_pad_to(s_fmt.student[layer], n_max))
            ys.append(_pad_to(t_fmt.teacher[layer], m_max))
            xm.append(_pad_to(s_fmt.student_mask, n_max))
            ym.append(_pad_to(t_mask, m_max))
    values = etp(torch.cat(xs), torch.cat(ys), torch.cat(xm), torch.cat(ym), alpha=alpha, kernel=kernel,
                 n_iters=n_iters, tol=tol)
    rows = values.new_zeros((2, 4, B))
    rows[:, live] = values.view(2, len(live), B)
    return rows


# -- the method ----------------------------------------------------------------------------------
def _format_states(side_s, student, side_t, teacher, ot: nn.Module) -> FormatStates:
    hs, ht = student.hidden_states, teacher.hidden_states
    return FormatStates(student=(hs[0], hs[-1]), teacher=(project(ot, ht[0].detach()), project(ot, ht[-1].detach())),
                        student_mask=preshift_labels(side_s.labels) != -100,
                        teacher_mask=preshift_labels(side_t.labels) != -100)


class CoT2Align(Method):
    name = "cot2align"
    category = "reasoning alignment"
    summary = ("The student learns the teacher's reasoning process: teacher chain-of-thought is distilled "
               "with DSKD-CMA plus optimal-transport alignment of hidden states across CoT and plain answers.")
    paper = Paper(title="CoT2Align: Cross-Chain of Thought Distillation via Optimal Transport Alignment "
                        "for Language Models with Different Tokenizers",
                  url="https://arxiv.org/abs/2502.16806", venue="arXiv 2025")
    tracks = ("math", "instruct")
    needs = Needs(logits=True, hidden_states=(0, -1), embeddings=True, lm_head=True, generations=True,
                  student_hidden_states=True)
    views = {"cot": cot_view}
    # For the core's generation stage: the prompt the teacher continues (CoT-triggered), and how.
    generation_prompt = staticmethod(cot_prompt)
    generation_settings = {"do_sample": True, "temperature": 1.0, "top_k": 0, "top_p": 1.0}
    variant = "official: brianminhle/dskd_ot_rationale@0c45965 (dual_space_kd_with_cma_ot_rationale)"

    @dataclass(frozen=True)
    class Config:
        kd_rate: float = 0.5
        kd_objective: str = "fkl"
        kd_temperature: float = 2.0
        teacher_temperature: float = 1.0
        skew_lambda: float = 0.1
        akl_alpha: float = 0.5
        projector_lr: float = 1e-3
        sinkhorn_alpha: float = 0.1
        sinkhorn_iters: int = 100
        sinkhorn_tol: float = 1e-6           # early stop on the marginal L1 error (0: all iterations)
        ot_kernel: str = "mul"               # official exp(-alpha*M); "div" = exp(-M/alpha)
        ot_divisor: str = "records"          # official 4 x records; "nonempty_rows" = fix
        fix_masked_ot_terms: bool = False    # fix: teacher plain labels not fully masked (terms 5-6)
        masked_std: bool = False             # DSKD-CMA fix, see dskd.py
        gate_t2s_kd: bool = True             # DSKD-CMA official gate

        def __post_init__(self):
            canonical_objective(self.kd_objective)
            if self.ot_kernel not in KERNELS:
                raise ValueError(f"ot_kernel must be one of {KERNELS}, got {self.ot_kernel!r}")
            if self.sinkhorn_iters < 1 or self.sinkhorn_tol < 0:
                raise ValueError("sinkhorn_iters must be >= 1 and sinkhorn_tol >= 0")
            if self.ot_divisor not in DIVISORS:
                raise ValueError(f"ot_divisor must be one of {DIVISORS}, got {self.ot_divisor!r}")

    def objective(self) -> KDObjective:
        c = self.config
        return KDObjective(c.kd_objective, c.kd_temperature, c.teacher_temperature, c.skew_lambda, c.akl_alpha)

    def setup(self, ctx) -> nn.Module:
        d_s, d_t = ctx.student_dims.hidden_size, ctx.teacher_dims.hidden_size
        projectors = build_projectors(d_s, d_t, cma=True)
        projectors["ot"] = nn.Linear(d_t, d_s)
        return projectors

    def _kd(self, batch, student, teacher):
        p, c = self.modules, self.config
        return cma_terms(student_inputs(batch.student, student), teacher_inputs(batch.teacher, teacher),
                         query=p["query"], t2s=p["t2s"], s2t=p["s2t"], objective=self.objective(),
                         masked_std=c.masked_std, gate_t2s_kd=c.gate_t2s_kd)

    def loss(self, batch, student, teacher):
        if self.modules is None:
            raise RuntimeError("cot2align: setup(ctx) must run (and its modules be attached) before loss")
        if "cot" not in batch.views or "cot" not in student.views or "cot" not in teacher.views:
            raise RuntimeError("cot2align needs the 'cot' view on the batch, the student and the teacher")
        vb, vs, vt = batch.views["cot"], student.views["cot"], teacher.views["cot"]
        c, ot = self.config, self.modules["ot"]
        plain_kd, cot_kd = self._kd(batch, student, teacher), self._kd(vb, vs, vt)
        n = (plain_kd.n_student + cot_kd.n_student).clamp_min(1).float()
        ce_sum = student.ce * plain_kd.n_student + vs.ce * cot_kd.n_student
        ot_loss = cross_cot_ot(_format_states(batch.student, student, batch.teacher, teacher, ot),
                               _format_states(vb.student, vs, vb.teacher, vt, ot),
                               fix_masked_ot_terms=c.fix_masked_ot_terms, divisor=c.ot_divisor,
                               alpha=c.sinkhorn_alpha, kernel=c.ot_kernel, n_iters=c.sinkhorn_iters,
                               tol=c.sinkhorn_tol)
        kd = (plain_kd.kd_sum + cot_kd.kd_sum) / n
        loss = (1 - c.kd_rate) * ce_sum / n + c.kd_rate * (kd + ot_loss)
        return {"loss": loss, "ce": (ce_sum / n).detach(), "kd": kd.detach(), "ot": ot_loss.detach(),
                "t2s_acc": ((plain_kd.t2s_correct + cot_kd.t2s_correct) / n).detach()}


@hookimpl
def ctkd_register_methods(register):
    register(CoT2Align)
