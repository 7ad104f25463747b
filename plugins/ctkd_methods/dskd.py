"""DSKD: Dual-Space Knowledge Distillation (plain, same vocabulary; DSKD-CMA, different vocabularies).

Paper: Songming Zhang, Xue Zhang, Zengkui Sun, Yufeng Chen, Jinan Xu, "Dual-Space
Knowledge Distillation for Large Language Models", EMNLP 2024, arXiv 2406.17328:
Sec. 3.2 (dual-space KD: t2s/s2t projections, L_kd = L_t2s_ce + L_t2s_kd + L_s2t_kd)
and Sec. 3.3 (cross-model attention for different vocabularies).
Official code: songmzhang/DSKD @ 077337ac989045ccf11a6dd927418e3cf4f40971:
``code/criterions/dual_space_kd.py`` :: ``DualSpaceKD.compute_dual_space_kd_loss`` (plain),
``code/criterions/dual_space_kd_with_cross_model_attention.py`` (CMA, in ``_cma.py``),
``code/criterions/various_divergence.py`` (objectives, in ``_divergences.py``),
``code/distiller.py`` + ``configs/projector_config.json`` (projectors),
``code/distillation.py`` L160-168 (loss / number of student target tokens).

Default: variant ``auto`` picks plain DSKD when both tokenizers have the same
vocabulary, DSKD-CMA otherwise; FKL, kd_rate 0.5, kd_temperature 2.0 (every
official script; the argparse default is 1.0), teacher_temperature 1.0, projectors
``nn.Linear`` with bias and default init at ``projector_lr`` 1e-3.

    loss = (1 - kd_rate) * CE_tok + kd_rate * (t2s_ce + t2s_kd + s2t_kd) / n_student_tokens

Plain: ``z_t2s = t2s(h_t) sg(W_s)ᵀ``; ``t2s_ce = CE(z_t2s, y)`` (trains t2s only);
``t2s_kd = D(z_s || sg(z_t2s))``; ``z_s2t = s2t(h_s) sg(W_t)ᵀ``; ``s2t_kd = FKL(z_t || z_s2t)``.

Deviations (all deliberate):

- Labels: the core's HF unshifted labels are converted to the official
  pre-shifted targets inside (`_cma.preshift_labels`), visibly.
- CE is the core's token-mean student CE; it equals the official CE sum divided
  by the same student token count. The denominator is the micro-batch's student
  target tokens (the official one is the global batch's, across grad-acc and DDP).
- The teacher lm_head has no bias here (``needs.lm_head`` is the weight only); the
  official plain path calls the teacher's ``lm_head`` module (biasless for the
  paper's GPT-2/LLaMA/Qwen/Mistral teachers).
- The CMA teacher-embedding lookup reads ``needs.embeddings``, so the official
  GPT-2-teacher crash (``teacher_model.model.wte``) does not occur.
- No projector pre-training mode (``--only-save-projector``). Precision is the core's
  (the official runs train in bf16); projector inputs are cast to the projector dtype.
- Switches, all off by default: ``masked_std`` (CMA std over target positions only,
  official: one std over the padded batch), ``gate_t2s_kd=False`` (ablation: CMA
  t2s KD on every target, official: only where argmax t2s == target).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ctkd_bench import Method, Needs, Paper, hookimpl

from ._cma import (DualSpaceTerms, Projector, SpaceInputs, argmax_hits, cma_terms, dual_space_loss,
                   masked_ce_sum, preshift_labels, project)
from ._divergences import OBJECTIVES, KDObjective, canonical_objective

VARIANTS = ("auto", "dskd", "cma")


def dual_space_terms(student: SpaceInputs, teacher: SpaceInputs, *, t2s: Projector, s2t: Projector,
                     objective: KDObjective) -> DualSpaceTerms:
    """Plain DSKD terms as token sums (official ``compute_dual_space_kd_loss``).

    Both sides must be the same tokenisation (same L, same positions); targets
    are pre-shifted. ``embeddings`` and ``input_ids`` are not read. The teacher
    is a constant; the t2s KD uses no teacher temperature (as officially).
    """
    teacher = teacher.detached()
    if student.hidden.shape[:2] != teacher.hidden.shape[:2]:
        raise ValueError("plain DSKD needs identical tokenisations; use the CMA variant")
    m_s, m_t = student.mask, teacher.mask   # heads and divergences on target rows only
    t2s_hidden = project(t2s, teacher.hidden[m_s]).to(student.lm_head.dtype)
    t2s_logits = t2s_hidden.matmul(student.lm_head.detach().transpose(-1, -2))
    targets = student.targets[m_s]
    t2s_ce = masked_ce_sum(t2s_logits, targets)
    t2s_kd = objective(student.logits[m_s], t2s_logits.detach()).sum()
    s2t_hidden = project(s2t, student.hidden[m_t]).to(teacher.lm_head.dtype)
    s2t_logits = s2t_hidden.matmul(teacher.lm_head.transpose(-1, -2))
    s2t_kd = objective.forward_kl(s2t_logits, teacher.logits[m_t]).sum()
    correct = argmax_hits(t2s_logits.detach(), targets)
    return DualSpaceTerms(t2s_ce, t2s_kd, s2t_kd, correct.sum(), student.mask.sum())


def same_vocabulary(student_tokenizer, teacher_tokenizer) -> bool:
    return student_tokenizer.get_vocab() == teacher_tokenizer.get_vocab()


def resolve_variant(variant: str, student_tokenizer, teacher_tokenizer) -> str:
    if variant not in VARIANTS:
        raise ValueError(f"dskd variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    if variant != "auto":
        return variant
    return "dskd" if same_vocabulary(student_tokenizer, teacher_tokenizer) else "cma"


def build_projectors(d_s: int, d_t: int, cma: bool) -> nn.ModuleDict:
    """Official projector_config.json: t2s 't-s', s2t 's-t', query '2s-2t' (CMA only)."""
    mods = {"t2s": nn.Linear(d_t, d_s), "s2t": nn.Linear(d_s, d_t)}
    if cma:
        mods["query"] = nn.Linear(2 * d_s, 2 * d_t)
    return nn.ModuleDict(mods)


def student_inputs(side, student) -> SpaceInputs:
    """SpaceInputs from a core `Side` and `StudentOutputs` (HF labels -> pre-shifted)."""
    return SpaceInputs(student.logits, student.hidden_states[-1], side.input_ids,
                       preshift_labels(side.labels), student.embedding_weight, student.lm_head_weight)


def teacher_inputs(side, teacher) -> SpaceInputs:
    return SpaceInputs(teacher.logits, teacher.hidden_states[-1], side.input_ids,
                       preshift_labels(side.labels), teacher.embeddings, teacher.lm_head)


def report_terms(loss: torch.Tensor, ce: torch.Tensor, terms: DualSpaceTerms) -> dict[str, torch.Tensor]:
    n = terms.n_student.clamp_min(1).float()
    return {"loss": loss, "ce": ce.detach(), "kd": (terms.kd_sum / n).detach(),
            "t2s_ce": (terms.t2s_ce / n).detach(), "t2s_kd": (terms.t2s_kd / n).detach(),
            "s2t_kd": (terms.s2t_kd / n).detach(), "t2s_acc": terms.t2s_correct.float() / n}


class DSKD(Method):
    name = "dskd"
    category = "probability-distribution alignment"
    summary = ("Learns the teacher's probability distribution and the semantics of its hidden states: "
               "projectors carry hidden states into the other model's output space (cross-model "
               "attention aligns positions when vocabularies differ).")
    paper = Paper(title="Dual-Space Knowledge Distillation for Large Language Models",
                  url="https://arxiv.org/abs/2406.17328", venue="EMNLP 2024")
    tracks = ("lm", "math", "instruct")
    needs = Needs(logits=True, hidden_states=(-1,), embeddings=True, lm_head=True,
                  student_hidden_states=True)
    variant = "official: songmzhang/DSKD@077337a (dual_space_kd / dual_space_kd_with_cross_model_attention)"

    @dataclass(frozen=True)
    class Config:
        variant: str = "auto"             # auto | dskd (same vocabulary) | cma (cross-model attention)
        kd_rate: float = 0.5
        kd_objective: str = "fkl"         # fkl | rkl | js | skl | srkl | akl (official names accepted)
        kd_temperature: float = 2.0
        teacher_temperature: float = 1.0  # CMA t2s KD only, as officially
        skew_lambda: float = 0.1
        akl_alpha: float = 0.5
        projector_lr: float = 1e-3
        masked_std: bool = False          # fix: CMA std over target positions (official: padded batch)
        gate_t2s_kd: bool = True          # official: CMA t2s KD only where the t2s argmax is correct

        def __post_init__(self):
            if self.variant not in VARIANTS:
                raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}")
            canonical_objective(self.kd_objective)

    def __init__(self, config=None):
        super().__init__(config)
        self.resolved_variant: str | None = None

    def objective(self) -> KDObjective:
        c = self.config
        return KDObjective(c.kd_objective, c.kd_temperature, c.teacher_temperature, c.skew_lambda, c.akl_alpha)

    def setup(self, ctx) -> nn.Module:
        self.resolved_variant = resolve_variant(self.config.variant, ctx.student_tokenizer,
                                                ctx.teacher_tokenizer)
        return build_projectors(ctx.student_dims.hidden_size, ctx.teacher_dims.hidden_size,
                                cma=self.resolved_variant == "cma")

    def loss(self, batch, student, teacher):
        if self.modules is None:
            raise RuntimeError("dskd: setup(ctx) must run (and its modules be attached) before loss")
        s_in, t_in = student_inputs(batch.student, student), teacher_inputs(batch.teacher, teacher)
        p = self.modules
        if "query" in p:  # setup built the CMA projectors (variant resolved there)
            terms = cma_terms(s_in, t_in, query=p["query"], t2s=p["t2s"], s2t=p["s2t"],
                              objective=self.objective(), masked_std=self.config.masked_std,
                              gate_t2s_kd=self.config.gate_t2s_kd)
        else:
            if not torch.equal(batch.student.input_ids, batch.teacher.input_ids):
                raise ValueError("dskd variant 'dskd' needs the same tokenisation on both sides; "
                                 "use variant 'cma' (or 'auto') for different tokenizers")
            terms = dual_space_terms(s_in, t_in, t2s=p["t2s"], s2t=p["s2t"], objective=self.objective())
        loss = dual_space_loss(student.ce, terms.kd_sum, terms.n_student, self.config.kd_rate)
        return report_terms(loss, student.ce, terms)


@hookimpl
def ctkd_register_methods(register):
    register(DSKD)


__all__ = ["DSKD", "OBJECTIVES", "dual_space_terms", "resolve_variant", "build_projectors"]
