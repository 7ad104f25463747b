"""EMO's token-string work (per example, no tensors with grad): MinED maps and index lists.

Official: haian1910/LLM2Vec_Distillation @ 9676fdb, Classification/criterions/ot_pro_rmse_cka.py
(`align_text_tokens`, `find_best_mapping`, `get_top_k_reciprocal_mapping`, `get_indices_from_mapping`,
`align_tokens`, `project_importance`, `preprocess_text`). Edit distances are on the *raw* token strings
(with their ``▁``/``Ġ``/``##`` markers), as `editdistance.eval` is in the official code.

Deviation (quirk 1 of the notes): the official code iterates Python sets of strings, so its ties depend
on PYTHONHASHSEED; here candidates are visited in order of first occurrence in the sentence and the
first minimum wins (deterministic).
"""
from __future__ import annotations

import re

import numpy as np

from ctkd_bench.align.strings import pairwise_edit_distance

# The stop-word set EMO's `preprocess_text` removes before ranking tokens by attention (reproduced as
# data, sorted; "." included as in the official list).
STOP_WORDS = frozenset("""
. a about all am an any are at be been being between both by can could did do does doing during each
few for had has have having he he'd he'll he's her here here's hers herself him himself his how's i i'd
i'll i'm i've into is it it's its itself just let's me my myself now of other ought our ours ourselves
s she she'd she'll she's should such t than that that's the their theirs them themselves there there's
these they they'd they'll they're they've this those through too very was we we'd we'll we're we've
were what what's when's where's which who who's whom why's will with would you you'd you'll you're
you've your yours yourself yourselves
""".split())


def unique_in_order(tokens: list[str]) -> list[str]:
    return list(dict.fromkeys(tokens))


def nearest(src: list[str], dst: list[str], dist: np.ndarray) -> list[str]:
    """For each src string: itself if it is in dst, else the first dst string at minimal distance."""
    dst_set = set(dst)
    return [s if s in dst_set else dst[int(dist[i].argmin())] for i, s in enumerate(src)]


def reciprocal_map(teacher_tokens: list[str], student_tokens: list[str]) -> dict[str, str]:
    """IRA's 1:1 MinED map over the sentence's token *sets* (no special tokens): t -> s kept only if s -> t."""
    t_set, s_set = unique_in_order(teacher_tokens), unique_in_order(student_tokens)
    if not t_set or not s_set:
        return {}
    dist = pairwise_edit_distance(t_set, s_set)
    t2s = dict(zip(t_set, nearest(t_set, s_set, dist)))
    s2t = dict(zip(s_set, nearest(s_set, t_set, dist.T)))
    return {t: s for t, s in t2s.items() if s2t[s] == t}


def word_excluded_mask(text: str, spans: list[tuple[int, int]]) -> list[bool]:
    """True for tokens inside a word EMO's `preprocess_text` drops (stop word, or digits only).

    Stands in for the official extra teacher pass on the stop-word-free text: such tokens are not
    ranked. Tokens with empty spans (special tokens) and whitespace-only tokens are kept.
    """
    dropped = []
    for match in re.finditer(r"\S+", text):
        cleaned = re.sub(r"\d+", "", match.group().lower())
        if not cleaned or cleaned in STOP_WORDS:
            dropped.append((match.start(), match.end()))
    return [any(s < e2 and e > s2 for s2, e2 in dropped) for s, e in spans]


def top_reciprocal_map(mapping: dict[str, str], teacher_tokens: list[str], importance: list[float],
                       excluded: list[bool]) -> dict[str, str]:
    """Keep the pairs whose teacher string is among the top len(mapping)//3 ranked teacher tokens.

    teacher_tokens/importance/excluded are per position of the full teacher sequence (specials
    included, as the official ranking pass has them); ties go to the earlier position.
    """
    k = len(mapping) // 3
    order = sorted((i for i in range(len(teacher_tokens)) if not excluded[i]), key=lambda i: -importance[i])
    top = {teacher_tokens[i] for i in order[:k]}
    return {t: s for t, s in mapping.items() if t in top}


def first_positions(tokens: list[str], wanted) -> dict[str, int]:
    """First position of each wanted string in `tokens`."""
    found: dict[str, int] = {}
    for i, tok in enumerate(tokens):
        if tok in wanted and tok not in found:
            found[tok] = i
    return found


def ira_rows(mapping: dict[str, str], teacher_tokens: list[str], student_tokens: list[str],
             pair_by_mapping: bool = False) -> tuple[list[int], list[int]]:
    """Row indices (teacher, student) whose attention rows IRA compares.

    Official (`get_indices_from_mapping`): each side lists the first position of each mapped token in
    position order, and the two lists are paired by order, not by the map (quirk 3). With
    ``pair_by_mapping`` the rows are paired through the map instead (ordered by teacher position).
    """
    t_first = first_positions(teacher_tokens, set(mapping))
    s_first = first_positions(student_tokens, set(mapping.values()))
    if pair_by_mapping:
        pairs = sorted((t_first[t], s_first[s]) for t, s in mapping.items() if t in t_first and s in s_first)
        return [p[0] for p in pairs], [p[1] for p in pairs]
    t_rows, s_rows = sorted(t_first.values()), sorted(s_first.values())
    m = min(len(t_rows), len(s_rows))
    return t_rows[:m], s_rows[:m]


def otis_token_map(teacher_tokens: list[str], student_tokens: list[str], teacher_special: str,
                   student_special: str) -> dict[str, str]:
    """OTIS's teacher -> student MinED map (`align_tokens`): not reciprocal, over the token lists.

    Exact match (after renaming the teacher's special token to the student's) first; otherwise the
    first student token (in sequence order, the student special skipped) at minimal edit distance.
    """
    if not teacher_tokens or not student_tokens:
        return {}
    renamed = [t.replace(teacher_special, student_special) for t in teacher_tokens]
    candidates = [s for s in student_tokens if s != student_special]
    s_set = set(student_tokens)
    mapping = {}
    if teacher_special in teacher_tokens and student_special in s_set:
        mapping[teacher_special] = student_special
    uniq_c = unique_in_order(candidates)
    need = unique_in_order([r for r in renamed if r not in s_set])
    dist = pairwise_edit_distance(need, uniq_c) if uniq_c else None
    best = {r: uniq_c[int(dist[i].argmin())] for i, r in enumerate(need)} if uniq_c else {}
    for t, r in zip(teacher_tokens, renamed):
        if r in s_set:
            mapping[t] = r
        elif r in best:
            mapping[t] = best[r]
    return mapping


def mass_sources(mapping: dict[str, str], teacher_tokens: list[str], student_tokens: list[str]) -> list[int]:
    """For each student position, the teacher position whose importance it takes (-1: none).

    Official `project_importance`: every student position holding mapping[t] takes t's importance;
    later teacher positions overwrite earlier ones.
    """
    last_for_string: dict[str, int] = {}
    for t_idx, t in enumerate(teacher_tokens):
        if t in mapping:
            last_for_string[mapping[t]] = t_idx
    return [last_for_string.get(s, -1) for s in student_tokens]
