"""ALM: Approximate Likelihood Matching (cross-tokenizer distillation on equal-text chunks).

Paper: B. Minixhofer, I. Vulić, E. M. Ponti, "Universal Cross-Tokenizer Distillation via Approximate
Likelihood Matching", NeurIPS 2025, arXiv:2503.20083 — Sec. 3: chunk likelihoods of aligned chunks,
the binarised f-divergence with temperature tau, outcome-chunk debiasing, the optional hidden-state
("latents") loss, and GradMag for combining losses (equation numbers [UNVERIFIED]: the paper's PDF
was not readable here).
Official code: bminixhofer/tokenkit @ bcacdef43fb01397ff562ed397bddf9c20273194,
tokenkit/training/losses.py (`compute_alm_loss`, `compute_alm_latents_loss`), tokenkit/align.py,
scripts/cross_tokenizer_distill.py (`train_step`, GradMag), tokenkit/utils.py (`get_space_mask`).
The pure tensor functions live in `_alm_loss` (re-exported here) and `_alm_extras`.

Loss (per batch): chunks are the exact `ctkd_bench.align.groups` groups at coinciding character
boundaries; a chunk's log-likelihood is the sum of its tokens' log-probs (clipped at 0) on each side;
with ``append_space`` the log-prob that the token after the chunk starts with whitespace or is special
is added (debiasing); with ``merge_by_space_prob`` chunks whose teacher space probability is <= the
threshold are merged with the following ones; then ``binary_ce(exp(L_T/tau), exp(L_S/tau))`` is
averaged over the valid chunks. The total is the mean of ``losses`` (or GradMag).

Defaults follow the official maths distillation example (examples/gemma2_distill_from_openmath2-
llama_gpu.sh: a different, larger teacher — the paper's cross-tokenizer distillation use case, i.e. our
setting): losses [sft, alm_unconstrained], alm_mode merge_by_space_prob+append_space, threshold 0.1,
tau 100, binary_ce, no GradMag (mean of the losses). ``gradmag=True`` gives the tokenizer-transfer
examples' `approx_gradmag_preserve_mag`.

Quirk switch (off by default = official): ``fix_double_merge`` — the official denominator merges the
already merged chunk counts a second time (losses.py L487-491); the fix counts the merged chunks once.

Deviations and interpretations:
- Chunks come from character offsets (`batch_chunk_matrices`), not from tokenkit's byteified token
  strings and special-token replacement table; on tiling spans both give the minimal equal-text
  chunks, BOS/EOS on both sides form their own chunks. Inexact chunks (truncation) are dropped, as
  tokenkit's ``check=True`` drops chunks whose texts differ. Only ``unconstrained`` chunks exist here
  (``space``/``unbiased`` chunks need tokenizer-pair bias matrices; no official example uses them with
  sft).
- Loss mask: the response tokens (the benchmark's training targets, as SFT's), not tokenkit's default
  of every token; ``chunks_on_prompt=True`` uses every real token. Prompt chunks are dropped before
  merging (chunk slots start at the first chunk in the loss), so the faithful double merge sees the
  official layout of an unmasked sequence; with leading empty slots it can reach a zero denominator.
- The denominator is clamped to >= 1 (the official code divides by zero when no chunk is valid).
- The space log-prob is a logsumexp over the masked log-probs (official: log of a dot product of
  probabilities, -inf on underflow); the space mask checks the token string's first character in its
  byte-level, SentencePiece (▁, <0x20>/<0x0A>/<0x09>) or raw form, which is what tokenkit checks on its
  byteified strings.
- GradMag needs per-loss gradients of the student's last transformer block; the method contract gives
  no parameters, so they are found by walking the autograd graph between the last two student hidden
  states (includes a final norm, which tokenkit's layer mask does not). Without that graph the last
  hidden state stands in (activation gradients). Loss weights have no effect under GradMag (as
  officially).
- Latents (``losses`` containing "latents"): last hidden states at the last token of every exact
  chunk of all real tokens (not loss-masked, as officially), ``l2_channelwise``; a Linear(d_s, d_t)
  projector (official ``projector_latents``) is used when ``latents_project`` or when the hidden sizes
  differ (the official code requires equal sizes then). Official projector lr: 2 x the model lr; the
  contract takes an absolute lr, so the default (None) is the student's lr — set ``projector_lr`` to
  twice the suite lr to reproduce.
- Needs follow the config (`ALM.needs_for`; the class attribute declares the superset): teacher and
  student hidden states only with the latents loss, student hidden states also with GradMag.
- Cost: chunks are memoised per sentence (tokenkit builds them in its data collator) and the token /
  space log-probs have an analytic gradient (`_alm_loss._TokenSpaceLogprobs`); same values.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from ctkd_bench import Method, Needs, Paper, hookimpl
from ctkd_bench.align.groups import span_groups
from ctkd_bench.data.collate import encode_causal
from ctkd_bench.defaults import IGNORE_INDEX

from ._alm_extras import gradmag_combine, last_block_parameters, latents_loss, space_mask
from ._alm_loss import (DIVERGENCES, alm_loss, binarised_divergence, chunk_logliks,  # noqa: F401
                        last_index_per_chunk, merge_matrix, parse_mode, token_and_space_logprobs)

LOSS_NAMES = ("sft", "alm", "latents")


def loss_memberships(chunk_s: torch.Tensor, chunk_t: torch.Tensor, exact: torch.Tensor,
                     keep_s: torch.Tensor, keep_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One-hot chunk membership [B, L, C'] of the kept tokens of exact chunks, slots compacted.

    chunk_s [B, S] / chunk_t [B, T]: chunk id per token (-1 padding); exact [B, C]; keep_*: tokens in
    the loss. Slots are renumbered to the chunks holding a kept teacher token, in text order.
    """
    def kept_ids(chunk, keep):
        ok = keep & (chunk >= 0)
        ok &= exact.gather(1, chunk.clamp_min(0))
        return torch.where(ok, chunk, -1)

    ids_s, ids_t = kept_ids(chunk_s, keep_s), kept_ids(chunk_t, keep_t)
    B, C = exact.shape
    used = torch.zeros(B, C + 1, dtype=torch.bool, device=exact.device)
    used.scatter_(1, torch.where(ids_t >= 0, ids_t, C), True)
    used = used[:, :C]
    slot = used.long().cumsum(1) - 1
    n_slots = max(int(used.sum(1).max()) if B else 0, 1)

    def onehot(ids):
        keep = (ids >= 0) & used.gather(1, ids.clamp_min(0))
        return chunk_member_matrix(torch.where(keep, slot.gather(1, ids.clamp_min(0)), -1), n_slots)

    return onehot(ids_s), onehot(ids_t)


def _span_key(spans) -> bytes:
    """Cache key of one row's real-token spans: their int64 bytes (as `Side.offsets` holds them)."""
    return np.ascontiguousarray(spans, dtype=np.int64).reshape(-1, 2).tobytes()


@lru_cache(maxsize=1 << 17)
def _row_chunks(key_s: bytes, key_t: bytes) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Chunk id of every real token of one row (both sides) and which chunks are exact (`span_groups`),
    from the rows' `_span_key`s."""
    spans_s = np.frombuffer(key_s, dtype=np.int64).reshape(-1, 2).tolist()
    spans_t = np.frombuffer(key_t, dtype=np.int64).reshape(-1, 2).tolist()
    groups = span_groups([tuple(sp) for sp in spans_s], [tuple(sp) for sp in spans_t])
    return (torch.tensor([c for c, g in enumerate(groups) for _ in g.a], dtype=torch.long),
            torch.tensor([c for c, g in enumerate(groups) for _ in g.b], dtype=torch.long),
            torch.tensor([g.exact for g in groups], dtype=torch.bool))


def chunk_ids(side_s, side_t) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Chunk id per token of both `Side`s ([B, S], [B, T] long; -1 on padding) and which chunks are
    exact ([B, C] bool): the `span_groups` of each row's real tokens, in text order.

    Same result as `ctkd_bench.align.groups.batch_chunk_matrices` (checked by the tests), built from
    per-row results memoised on the rows' spans (`prepare` fills the cache for the training set, as
    tokenkit computes its alignments in the data collator, outside the step) with one masked write
    per side.
    """
    real_s, real_t = side_s.attention_mask.bool(), side_t.attention_mask.bool()
    rows = [_row_chunks(_span_key(a), _span_key(b)) for a, b in zip(_real_rows(side_s.offsets, real_s),
                                                                     _real_rows(side_t.offsets, real_t))]
    device = side_s.input_ids.device
    ids_s = torch.full(real_s.shape, -1, dtype=torch.long)
    ids_t = torch.full(real_t.shape, -1, dtype=torch.long)
    width = max((len(r[2]) for r in rows), default=0)
    exact = torch.zeros(len(rows), width, dtype=torch.bool)
    if rows:
        ids_s[real_s.cpu()] = torch.cat([r[0] for r in rows])
        ids_t[real_t.cpu()] = torch.cat([r[1] for r in rows])
        for b, r in enumerate(rows):
            exact[b, :len(r[2])] = r[2]
    return ids_s.to(device), ids_t.to(device), exact.to(device)


def _real_rows(offsets: torch.Tensor, real: torch.Tensor) -> list[np.ndarray]:
    """Each row's real-token spans [n_b, 2] (int64, text order), from padded offsets [B, L, 2]."""
    flat = offsets[real].cpu().numpy()
    return np.split(flat, np.cumsum(real.sum(1).cpu().numpy())[:-1])


def chunk_member_matrix(ids: torch.Tensor, n_chunks: int) -> torch.Tensor:
    """[B, L] chunk ids (-1: none) -> [B, L, C] bool one-hot membership."""
    m = torch.zeros(*ids.shape, n_chunks + 1, dtype=torch.bool, device=ids.device)
    m.scatter_(2, torch.where(ids >= 0, ids, n_chunks).unsqueeze(-1), True)
    return m[..., :n_chunks]


def predicted_tokens(attention_mask: torch.Tensor) -> torch.Tensor:
    """[B, L] bool: real tokens that have a prediction (a real token before them), any padding side."""
    real = attention_mask.bool()
    out = torch.zeros_like(real)
    out[:, 1:] = real[:, 1:] & real[:, :-1]
    return out


class ALM(Method):
    name = "alm"
    category = "text alignment"
    summary = ("Chunk both tokenisations into equal-text spans and match the teacher's and student's chunk "
               "likelihoods (with next-word debiasing) by a binarised f-divergence at temperature 100.")
    paper = Paper(title="Universal Cross-Tokenizer Distillation via Approximate Likelihood Matching",
                  url="https://arxiv.org/abs/2503.20083", venue="NeurIPS 2025")
    tracks = ("lm", "math", "instruct")
    needs = Needs(logits=True, hidden_states=(-1,), student_hidden_states=True)
    variant = "official (tokenkit bcacdef, maths example settings)"

    @dataclass(frozen=True)
    class Config:
        losses: tuple = ("sft", "alm")                  # example: [sft, alm_unconstrained]
        tau: float = 100.0                              # binarization_temp
        alm_mode: str = "merge_by_space_prob+append_space"
        threshold: float = 0.1                          # tokenizer_pair_bias_threshold (examples)
        divergence: str = "binary_ce"                   # alm_diff_fn
        fix_double_merge: bool = False                  # quirk switch (official: merged twice)
        gradmag: bool = False                           # approx_gradmag_preserve_mag
        chunks_on_prompt: bool = False                  # True: every real token is in the loss
        latents_project: bool = False                   # latents_do_project
        projector_lr: float | None = None               # None: the student's lr (official: 2 x it)

        def __post_init__(self):
            bad = set(self.losses) - set(LOSS_NAMES)
            if bad or not self.losses:
                raise ValueError(f"losses must be a non-empty list of {LOSS_NAMES}, got {list(self.losses)}")
            parse_mode(self.alm_mode)
            if self.divergence not in DIVERGENCES:
                raise ValueError(f"divergence must be one of {DIVERGENCES}, got {self.divergence!r}")
            if self.tau <= 0:
                raise ValueError(f"tau must be positive, got {self.tau}")

    def __init__(self, config=None):
        super().__init__(config)
        self._space_s = self._space_t = None
        self.needs = self.needs_for(self.config)

    @classmethod
    def needs_for(cls, config) -> Needs:
        """This configuration's needs (the class declares the superset): hidden states only for the
        latents loss (teacher and student) and GradMag (the student's last block)."""
        latents = "latents" in config.losses
        return Needs(logits=True, hidden_states=(-1,) if latents else (),
                     student_hidden_states=latents or (config.gradmag and len(config.losses) > 1))

    def prepare(self, ctx):
        self._space_s = space_mask(ctx.student_tokenizer, ctx.student_dims.vocab_size)
        self._space_t = space_mask(ctx.teacher_tokenizer, ctx.teacher_dims.vocab_size)
        ctx.state["alm_space_masks"] = (self._space_s, self._space_t)
        for ex in ctx.train_examples:   # one-off: the chunks of every training example (before truncation)
            if "response" not in ex:
                continue
            prompt = ex.get("prompt", "")
            enc_s = encode_causal(ctx.student_tokenizer, prompt, ex["response"], 1 << 30)
            enc_t = encode_causal(ctx.teacher_tokenizer, prompt, ex["response"], 1 << 30)
            _row_chunks(_span_key(enc_s.spans), _span_key(enc_t.spans))

    def setup(self, ctx):
        if "latents" not in self.config.losses:
            return None
        d_s, d_t = ctx.student_dims.hidden_size, ctx.teacher_dims.hidden_size
        if self.config.latents_project or d_s != d_t:
            return torch.nn.Linear(d_s, d_t)
        return None

    def _alm_term(self, batch, student, teacher, chunks) -> dict[str, torch.Tensor]:
        if self._space_s is None:
            raise RuntimeError("alm: prepare(ctx) must run before loss() (it builds the space masks)")
        c = self.config
        s_side, t_side = batch.student, batch.teacher
        if c.chunks_on_prompt:
            keep_s, keep_t = predicted_tokens(s_side.attention_mask), predicted_tokens(t_side.attention_mask)
        else:
            keep_s, keep_t = s_side.labels != IGNORE_INDEX, t_side.labels != IGNORE_INDEX
        m_s, m_t = loss_memberships(*chunks, keep_s, keep_t)
        s_logits, t_logits = student.logits, teacher.logits
        s_tok, s_sp = token_and_space_logprobs(s_logits, s_side.input_ids, self._space_s.to(s_logits.device))
        t_tok, t_sp = token_and_space_logprobs(t_logits, t_side.input_ids, self._space_t.to(t_logits.device))
        return alm_loss(t_tok, t_sp, m_t, s_tok, s_sp, m_s, tau=c.tau, mode=c.alm_mode,
                        threshold=c.threshold, divergence=c.divergence, fix_double_merge=c.fix_double_merge)

    def _latents_term(self, student, teacher, chunks) -> torch.Tensor:
        ids_s, ids_t, exact = chunks
        s_member = chunk_member_matrix(ids_s, exact.shape[1])
        t_member = chunk_member_matrix(ids_t, exact.shape[1])
        valid = exact & s_member.any(1) & t_member.any(1)
        return latents_loss(student.hidden_states[-1], teacher.hidden_states[-1], last_index_per_chunk(s_member),
                            last_index_per_chunk(t_member), valid, self.modules)

    def loss(self, batch, student, teacher):
        c = self.config
        chunks = chunk_ids(batch.student, batch.teacher)
        terms: dict[str, torch.Tensor] = {}
        out: dict[str, torch.Tensor] = {}
        for name in c.losses:
            if name == "sft":
                terms["sft"] = student.ce
            elif name == "alm":
                alm = self._alm_term(batch, student, teacher, chunks)
                terms["alm"], out["alm_chunks"] = alm["loss"], alm["n_chunks"]
            else:
                terms["latents"] = self._latents_term(student, teacher, chunks)
        values = list(terms.values())
        if c.gradmag and len(values) > 1:
            params = last_block_parameters(student.hidden_states) or [student.hidden_states[-1]]
            total, weights = gradmag_combine(values, params)
            out.update({f"gradmag_w_{k}": w for k, w in zip(terms, weights)})
        else:
            total = torch.stack(values).mean()
        out.update({k: v.detach() for k, v in terms.items()})
        out["loss"] = total
        return out


@hookimpl
def ctkd_register_methods(register):
    register(ALM)
