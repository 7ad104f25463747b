"""Exact string twins between two vocabularies (computed once, in `prepare`)."""
from __future__ import annotations

import torch


def surface_strings(tokenizer) -> list[str | None]:
    """The text each token id stands for after a word, e.g. "Ġdog" and "▁dog" -> " dog".

    Decoding a token after an anchor token keeps the leading space that decoders drop at
    the start of a text. None: a special token, or part of a character (byte pieces).
    """
    anchor = tokenizer.encode("a", add_special_tokens=False)[-1]
    prefix = tokenizer.decode([anchor], clean_up_tokenization_spaces=False)
    texts = tokenizer.batch_decode([[anchor, i] for i in range(len(tokenizer))],
                                   clean_up_tokenization_spaces=False)
    special = set(tokenizer.all_special_ids)
    out = []
    for i, text in enumerate(texts):
        ok = i not in special and text.startswith(prefix) and len(text) > len(prefix) and "\ufffd" not in text
        out.append(text[len(prefix):] if ok else None)
    return out


def exact_match_map(teacher_tokenizer, student_tokenizer) -> torch.Tensor:
    """[V_teacher] long: the student id standing for the same text, -1 if none; EOS maps to EOS.

    Injective: when several tokens of one side share a text, the lowest id takes it.
    """
    student_ids: dict[str, int] = {}
    for sid, text in enumerate(surface_strings(student_tokenizer)):
        if text is not None:
            student_ids.setdefault(text, sid)
    twins = torch.full((len(teacher_tokenizer),), -1, dtype=torch.long)
    for tid, text in enumerate(surface_strings(teacher_tokenizer)):
        if text in student_ids:
            twins[tid] = student_ids.pop(text)  # pop: a student id is used once
    t_eos, s_eos = teacher_tokenizer.eos_token_id, student_tokenizer.eos_token_id
    if t_eos is not None and s_eos is not None:
        twins[t_eos] = s_eos
    return twins
