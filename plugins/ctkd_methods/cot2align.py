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
- Sinkhorn: log-domain (u-first, no 1e-9 guards; the iteration of ``align.ot.sinkhorn``,
  batched over all OT terms of a step in ``_cot2align_ot``) instead of the official
  plain-domain loop (v first, ``+1e-9`` in each division); both reach the same plan (tested
  against a transcription of the official per-row loop and against one ``align.ot.sinkhorn``
  call over all terms).
- Sinkhorn stopping: the official loop checks its L1 column-marginal error against 1e-9
  at iterations 1 and 51 only, a level below fp32/bf16 noise, so it effectively always
  runs 100 iterations. Here the (row-)marginal error is checked every iteration against
  ``sinkhorn_tol`` (1e-6): with the official kernel the plan converges in 2-3 iterations,
  and value and gradient match the 100-iteration run to ~1e-5 (tested) at a fraction of
  the cost. ``sinkhorn_tol=0`` restores the fixed 100 iterations.
- The KD objective default is FKL (argparse default; the GPT-2 script uses
  ``skewed_reverse_kl``, the TinyLlama one FKL with kd_rate 0.9).
- Cost: the core runs one extra student and teacher pass per step on the view and a
  teacher generation pass over the training prompts (metered as the method's). The student
  processes 2B records per step (forward and backward), and the CoT record is the longer one:
  on tiny math a step runs ~2.5x SFT's student tokens, and a CE-only step on both formats
  already costs ~2.5x an SFT step (1.0x per token). The full step is ~4x SFT, ~1.6x per student
  token: DSKD-CMA on both records (DSKD alone ~1.5x SFT) plus ~0.15x per token for the OT.
  One padded student pass over both formats instead of two was measured slower on CPU (the
  plain rows get padded to the CoT length).

Contract with the core: ``needs.generations``; the teacher continues
``generation_prompt(example)`` once per training example with ``generation_settings``
(official ``eval_main_lora_gen_rationale.sh``: sampling, T = 1, top-k 0, top-p 1); the
text lands in ``example["generation"]``; ``views["cot"]`` turns that example into the
CoT record, which the core collates into ``batch.views["cot"]`` and runs through the
student (``student.views["cot"]``, with hidden states) and the teacher
(``teacher.views["cot"]``, the same declared signals).
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ctkd_bench import Method, Needs, Paper, hookimpl

from ._cma import cma_terms, preshift_labels
from ._cot2align_ot import (DIVISORS, KERNELS, FormatStates, attention_cost, cross_cot_ot, etp,
                            transport_plan)
from ._divergences import KDObjective, canonical_objective
from .dskd import build_projectors, student_inputs, teacher_inputs

COT_TRIGGER = "Let's think step by step.\n"
ANSWER_BRIDGE = "\nTherefore, the answer is: "


# -- the CoT view ------------------------------------------------------------------------------
def cot_prompt(example: dict) -> str:
    """The prompt the teacher continues with its rationale, and the CoT view's prompt."""
    prompt = example["prompt"]
    sep = "" if not prompt or prompt[-1].isspace() else " "
    return prompt + sep + COT_TRIGGER


def cot_view(example: dict) -> tuple[str, str]:
    """(prompt, response) of the CoT record: teacher rationale, bridge, gold answer."""
    return cot_prompt(example), example["generation"] + ANSWER_BRIDGE + example["response"].lstrip()


# -- the method ----------------------------------------------------------------------------------
def _format_states(side_s, student, side_t, teacher, ot: nn.Module) -> FormatStates:
    hs, ht = student.hidden_states, teacher.hidden_states
    return FormatStates(student=(hs[0], hs[-1]), teacher=(ht[0].detach(), ht[-1].detach()),
                        student_mask=preshift_labels(side_s.labels) != -100,
                        teacher_mask=preshift_labels(side_t.labels) != -100, teacher_projector=ot)


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


__all__ = ["CoT2Align", "FormatStates", "attention_cost", "cot_prompt", "cot_view", "cross_cot_ot", "etp",
           "transport_plan"]
