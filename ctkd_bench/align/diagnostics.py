"""How well two tokenizers line up: numbers shown per teacher-student pair in reports.

`pair_diagnostics(student_tok, teacher_tok, texts)` returns a JSON-serialisable dict:

- ``vocab_overlap``: |S ∩ T| / |S ∪ T| over the sets of normalised token strings
  (`vocab.normalized_vocab`, specials excluded); also ``vocab_overlap_student`` =
  |S ∩ T| / |S| and ``vocab_overlap_teacher`` = |S ∩ T| / |T|;
- ``one_to_one_student`` / ``one_to_one_teacher``: share of the tokens of the texts
  (no special tokens) that sit in exact 1:1 groups (`groups.one_to_one`);
- ``mean_group_student`` / ``mean_group_teacher``: mean number of tokens per group;
- ``n_groups``, ``n_tokens_student``, ``n_tokens_teacher``, ``n_texts``;
- ``student_vocab`` / ``teacher_vocab``: vocabulary sizes; ``*_kind``: token family.
"""
from __future__ import annotations

from typing import Iterable

from .groups import span_groups
from .spans import encode_with_spans
from .vocab import normalized_vocab, special_ids, tokenizer_kind


def _vocab_set(tokenizer) -> set[str]:
    specials = special_ids(tokenizer)
    return {s for i, s in enumerate(normalized_vocab(tokenizer)) if i not in specials}


def vocabulary_overlap(student_tok, teacher_tok) -> dict[str, float]:
    S, T = _vocab_set(student_tok), _vocab_set(teacher_tok)
    inter = len(S & T)
    return {"vocab_overlap": inter / max(len(S | T), 1),
            "vocab_overlap_student": inter / max(len(S), 1),
            "vocab_overlap_teacher": inter / max(len(T), 1)}


def pair_diagnostics(student_tok, teacher_tok, texts: Iterable[str]) -> dict:
    """Vocabulary overlap and group statistics of a tokenizer pair on `texts` (see module doc)."""
    n_s = n_t = one_s = one_t = n_groups = n_texts = 0
    for text in texts:
        n_texts += 1
        _, spans_s = encode_with_spans(student_tok, text)
        _, spans_t = encode_with_spans(teacher_tok, text)
        for g in span_groups(spans_s, spans_t):
            n_groups += 1
            if g.exact and len(g.a) == 1 and len(g.b) == 1:
                one_s += 1
                one_t += 1
        n_s += len(spans_s)
        n_t += len(spans_t)
    out = {
        "n_texts": n_texts, "n_groups": n_groups,
        "n_tokens_student": n_s, "n_tokens_teacher": n_t,
        "one_to_one_student": one_s / n_s if n_s else 0.0,
        "one_to_one_teacher": one_t / n_t if n_t else 0.0,
        "mean_group_student": n_s / n_groups if n_groups else 0.0,
        "mean_group_teacher": n_t / n_groups if n_groups else 0.0,
        "student_vocab": len(student_tok), "teacher_vocab": len(teacher_tok),
        "student_kind": tokenizer_kind(student_tok), "teacher_kind": tokenizer_kind(teacher_tok),
    }
    out.update(vocabulary_overlap(student_tok, teacher_tok))
    return out
