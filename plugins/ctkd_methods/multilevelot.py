"""MultiLevelOT: Multi-Level Optimal Transport (Cui et al., AAAI 2025, arXiv 2412.14528).

Paper: a token-level "holistic absolute difference" term and a "sequential logarithmic" term on
the top-k (sorted) probabilities of the answer positions, plus a sequence-level Sinkhorn
distance in which the answer positions are the transport points; added to the student CE.

Official code: ``2018cx/Multi-Level-OT`` (a fork of llm-recipes), ``models/distillation_model.py``
:: ``DistillationLoss.forward`` with ``normalize``, ``improved_sort``, ``KL_wo`` and
``Sinkhorn_seq``; ``train/train_utils.py`` (``skip_student_eos=True``, ``f=1``);
``configs/distillation.py`` (``distil_factor = 1.5``). The loss changed twice after
publication; ``version`` selects the code:

- ``"v1"`` (default) = ``77e32ae`` (2025-01-16, the code released with the paper): per-position
  descending sort, then top-k columns; the Sinkhorn batch loop *assigns* instead of
  accumulating, so only the last row's Sinkhorn term counts (a defect: see ``"v2"``).
- ``"v2"`` = ``d8d298f`` (2025-04-20): as v1, the Sinkhorn term summed over the batch.
- ``"head"`` = ``712cfb4`` (2026-02-04): the per-position sort removed; columns ranked once for
  the whole batch by total probability mass (``improved_sort``), top-k kept.

Computed per side (student s, teacher t; teacher detached): logits divided by their std over
the vocabulary (+1e-4, not centred); the answer rows (rows predicting answer tokens, EOS
included; the student drops its last, EOS-predicting row) softmaxed at tau = 1 and
left-aligned into ``[B, Lm, V]`` with zero rows after each answer, Lm = the longest answer
window of either side; the k = 50 columns above; vocabularies narrower than k zero-padded. Then

- AD_b = mean over the first min(n_s, n_t) rows of sum_c |s - t|; AD = mean_b AD_b;
- LG = -mean over all B x Lm rows of sum_c softmax(s)_c log_softmax(t)_c (a softmax of
  probabilities: the official "double softmax"; padding rows included);
- SD_b = sum P * C with C = L1 cdist between rows of softmax(t/2) and softmax(s/2) ([Lm, Lm]),
  P = 10 rounds of row- then column-normalising exp(-C / 0.1) (no marginals; P not detached);
  SD = sum_b SD_b (v2, head) or SD_{B-1} (v1);
- ``loss = CE + 1.5 * (AD + 0.1 * LG + 0.1 * 0.001 * SD)``.

Switches for official defects (off by default): ``mask_padding_rows`` (LG and SD over real answer
rows only), ``fix_double_softmax`` (LG and SD on the selected normalised logits, not on
probabilities; our reading, the source does not define it).

Deviations (deliberate):

- Answer windows from the shifted label mask (see ``ctkd_methods.uld``); rows with no pair are
  left out of the AD mean (the official code gives NaN).
- In v1/v2 ``improved_sort`` after the per-position sort is the identity up to exact ties in
  column sums, so it is skipped and ``topk`` takes the k largest probabilities directly.
- Logits are the real vocabulary (the core slices padded heads), so the std and the softmax do
  not see padded head columns.
- ``f = 2`` (``greedy_algorithm_adjust_s``, an unused ablation that fails for Lm > 50) is not
  offered.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ctkd_bench import Method, Needs, Paper, hookimpl
from ctkd_bench.errors import ConfigError
from ctkd_methods.uld import at_least_fp32, gather_rows, response_rows

VERSIONS = ("v1", "v2", "head")


def std_normalize(z: torch.Tensor) -> torch.Tensor:
    """The official ``normalize``: divide by the (unbiased) std over the vocabulary + 1e-4."""
    return z / (z.std(dim=-1, keepdim=True) + 1e-4)


def answer_block(logits: torch.Tensor, labels: torch.Tensor, drop_last: int, width: int,
                 temperature: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left-aligned answer rows of one side, padded with zero rows to ``width``.

    Returns (probs [B, width, V], normalised logits [B, width, V] (0 on padding rows),
    sizes [B] after dropping ``drop_last`` rows per answer).
    """
    rows, sizes = response_rows(labels)
    sizes = (sizes - drop_last).clamp(min=0)
    rows = rows[:, :min(rows.shape[1], width)]
    z = std_normalize(at_least_fp32(gather_rows(logits, rows))) / temperature
    real = (torch.arange(rows.shape[1], device=z.device) < sizes.unsqueeze(1)).unsqueeze(-1)
    z = z * real
    probs = torch.softmax(z, dim=-1) * real
    pad = width - rows.shape[1]
    if pad:
        probs = torch.nn.functional.pad(probs, (0, 0, 0, pad))
        z = torch.nn.functional.pad(z, (0, 0, 0, pad))
    return probs, z, sizes


def select_columns(probs: torch.Tensor, z: torch.Tensor, k: int, version: str):
    """The k kept vocabulary columns: per-position top-k (v1, v2) or batch-global rank (head)."""
    k = min(k, probs.shape[-1])
    if version == "head":
        cols = probs.detach().sum(dim=(0, 1)).topk(k).indices
        return probs[..., cols], z[..., cols]
    top = probs.topk(k, dim=-1)
    return top.values, z.gather(-1, top.indices)


def pad_vocab(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    gap = a.shape[-1] - b.shape[-1]
    if gap > 0:
        b = torch.nn.functional.pad(b, (0, gap))
    elif gap < 0:
        a = torch.nn.functional.pad(a, (0, -gap))
    return a, b


def row_col_sinkhorn(kernel: torch.Tensor, n_iters: int) -> torch.Tensor:
    """Plain Sinkhorn scaling of [B, n, m]: rows then columns to sum 1, no marginals.

    Rows or columns that are all zero (masked) stay zero instead of dividing by zero.
    """
    for _ in range(n_iters):
        kernel = kernel / kernel.sum(dim=2, keepdim=True).clamp(min=1e-30)
        kernel = kernel / kernel.sum(dim=1, keepdim=True).clamp(min=1e-30)
    return kernel


def multilevelot_terms(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                       student_labels: torch.Tensor, teacher_labels: torch.Tensor, *,
                       version: str = "v1", top_k: int = 50, student_temperature: float = 1.0,
                       teacher_temperature: float = 1.0, skip_student_eos: bool = True,
                       skip_teacher_eos: bool = False, sinkhorn_temperature: float = 2.0,
                       sinkhorn_eps: float = 0.1, sinkhorn_iters: int = 10,
                       mask_padding_rows: bool = False,
                       fix_double_softmax: bool = False) -> dict[str, torch.Tensor]:
    """The three MultiLevelOT terms (unweighted scalars): ``ad``, ``lg``, ``sd``.

    Inputs: raw **logits** [B, L_s, V_s] and [B, L_t, V_t] (real vocabularies; the teacher is
    detached here); HF-unshifted labels (-100 on BOS, prompt, padding), padding on either side.
    ``sd`` is the plain batch sum (v2, head) or the last row's value (v1), without the 0.001.
    """
    if version not in VERSIONS:
        raise ValueError(f"version must be one of {VERSIONS}, got {version!r}")
    n_s = (response_rows(student_labels)[1] - int(skip_student_eos)).clamp(min=0)
    n_t = (response_rows(teacher_labels)[1] - int(skip_teacher_eos)).clamp(min=0)
    width = int(torch.maximum(n_s, n_t).max()) if n_s.numel() else 0
    p_s, z_s, _ = answer_block(student_logits, student_labels, int(skip_student_eos), width, student_temperature)
    p_t, z_t, _ = answer_block(teacher_logits.detach(), teacher_labels, int(skip_teacher_eos), width,
                               teacher_temperature)
    s, zs = select_columns(p_s, z_s, top_k, version)
    t, zt = select_columns(p_t, z_t, top_k, version)
    s, t = pad_vocab(s, t)
    zs, zt = pad_vocab(zs, zt)
    k = torch.minimum(n_s, n_t)
    positions = torch.arange(width, device=s.device)
    is_pair = positions < k.unsqueeze(1)                                   # [B, Lm]

    ad_rows = ((s - t).abs().sum(-1) * is_pair).sum(1) / k.clamp(min=1)
    has_pairs = k > 0
    ad = ad_rows[has_pairs].sum() / has_pairs.sum().clamp(min=1)

    lg_s, lg_t = (zs, zt) if fix_double_softmax else (s, t)
    lg_rows = -(torch.softmax(lg_s, -1) * torch.log_softmax(lg_t, -1)).sum(-1)  # [B, Lm]
    if mask_padding_rows:
        lg = (lg_rows * is_pair).sum() / is_pair.sum().clamp(min=1)
    else:
        lg = lg_rows.sum() / max(lg_rows.numel(), 1)

    q_t = torch.softmax(lg_t / sinkhorn_temperature, -1)
    q_s = torch.softmax(lg_s / sinkhorn_temperature, -1)
    cost = torch.cdist(q_t, q_s, p=1)                                      # [B, Lm(t), Lm(s)]
    kernel = torch.exp(-cost / sinkhorn_eps)
    if mask_padding_rows:
        real = (positions < n_t.unsqueeze(1)).unsqueeze(2) & (positions < n_s.unsqueeze(1)).unsqueeze(1)
        kernel = kernel * real
    plan = row_col_sinkhorn(kernel, sinkhorn_iters)
    sd_rows = (plan * cost).sum(dim=(1, 2))
    sd = sd_rows[-1] if version == "v1" else sd_rows.sum()
    return {"ad": ad, "lg": lg, "sd": sd}


class MultiLevelOT(Method):
    name = "multilevelot"
    category = "multi-level alignment"
    summary = ("Multi-level optimal transport: token-level (absolute and log differences over the "
               "top-k sorted distributions) and sequence-level Sinkhorn distance, aligned together.")
    paper = Paper(title="Multi-Level Optimal Transport for Universal Cross-Tokenizer Knowledge "
                        "Distillation on Language Models", url="https://arxiv.org/abs/2412.14528",
                  venue="AAAI 2025")
    tracks = ("lm", "math", "instruct")
    needs = Needs(logits=True)
    variant = "official-v1"

    @dataclass(frozen=True)
    class Config:
        version: str = "v1"               # "v1" (paper's code) | "v2" | "head"
        top_k: int = 50
        distil_factor: float = 1.5        # lambda
        ce_weight: float = 1.0            # hard-wired 1 in the official code
        lg_weight: float = 0.1
        sd_weight: float = 1e-4           # 0.1 in the combination x 0.001 inside Sinkhorn_seq
        student_temperature: float = 1.0
        teacher_temperature: float = 1.0
        skip_student_eos: bool = True
        skip_teacher_eos: bool = False
        sinkhorn_temperature: float = 2.0
        sinkhorn_eps: float = 0.1
        sinkhorn_iters: int = 10
        mask_padding_rows: bool = False   # fix: LG and SD over real answer rows only
        fix_double_softmax: bool = False  # fix: LG and SD on normalised logits, not probabilities

        def __post_init__(self):
            if self.version not in VERSIONS:
                raise ConfigError(f"methods.multilevelot.version: expected one of {VERSIONS}, "
                                  f"got {self.version!r}")
            if self.top_k < 1:
                raise ConfigError("methods.multilevelot.top_k: must be at least 1")

    def loss(self, batch, student, teacher):
        cfg = self.config
        terms = multilevelot_terms(
            student.logits, teacher.logits, batch.student.labels, batch.teacher.labels,
            version=cfg.version, top_k=cfg.top_k, student_temperature=cfg.student_temperature,
            teacher_temperature=cfg.teacher_temperature, skip_student_eos=cfg.skip_student_eos,
            skip_teacher_eos=cfg.skip_teacher_eos, sinkhorn_temperature=cfg.sinkhorn_temperature,
            sinkhorn_eps=cfg.sinkhorn_eps, sinkhorn_iters=cfg.sinkhorn_iters,
            mask_padding_rows=cfg.mask_padding_rows, fix_double_softmax=cfg.fix_double_softmax)
        distill = cfg.distil_factor * (terms["ad"] + cfg.lg_weight * terms["lg"] + cfg.sd_weight * terms["sd"])
        out = {"loss": cfg.ce_weight * student.ce + distill, "ce": student.ce, "distill": distill.detach()}
        out.update({k: v.detach() for k, v in terms.items()})
        return out


@hookimpl
def ctkd_register_methods(register):
    register(MultiLevelOT)
