"""Suite metrics as pure functions (no model, no I/O).

- `exact_match`: after `normalize_text` (trim, collapse whitespace, drop trailing
  sentence punctuation). Case is kept: the ``instruct`` track has upper-case tasks.
- `extract_final_answer`: the number after the last ``####`` (GSM8K format); else
  after the last "answer is"; else the last number in the text; numbers are
  canonicalised ("1,000" -> "1000", "$7" -> "7", "12.50" -> "12.5", "3.0" -> "3").
- `rouge_l`: ROUGE-L F1 (beta = 1, as in the common ``rouge-score`` package) of
  the longest common subsequence of whitespace tokens; deviation from that
  package: no lower-casing or punctuation stripping, tokens are taken as they are.
- `token_f1`: SQuAD-style answer F1: lower-case, drop punctuation and the articles
  a/an/the, then F1 of the bags of whitespace tokens (MultiLevelOT's QA tracks).
- `accuracy`, `bits_per_byte`.
"""
from __future__ import annotations

import math
import re
import string
from collections import Counter
from typing import Sequence

# Metrics each task kind reports, and whether higher is better (a track's `primary_metric`
# picks one; the default is the first).
TASK_METRICS = {"lm": {"bits_per_byte": False}, "math": {"exact_match": True},
                "instruct": {"rouge_l": True, "exact_match": True, "f1": True}, "embed": {"accuracy": True}}

_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?")
_FINAL = re.compile(r"####\s*(" + _NUMBER.pattern + ")")
_ANSWER_IS = re.compile(r"answer is:?\s*(" + _NUMBER.pattern + ")", re.IGNORECASE)


def normalize_text(text: str) -> str:
    """Trim, collapse runs of whitespace to one space, drop trailing . ! ? (and spaces)."""
    return " ".join(text.split()).rstrip(".!? ")


def exact_match(pred: str, gold: str) -> float:
    return float(normalize_text(pred) == normalize_text(gold))


def normalize_number(token: str) -> str:
    """Canonical form of a number token: no $ or thousands commas, no trailing zeros after a point."""
    s = token.replace("$", "").replace(",", "")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    if s in ("-0", ""):
        s = "0"
    return s


def extract_final_answer(text: str) -> str | None:
    """The final numeric answer of a rationale, canonicalised; None when the text has no number."""
    for pattern in (_FINAL, _ANSWER_IS):
        hits = pattern.findall(text)
        if hits:
            return normalize_number(hits[-1])
    numbers = _NUMBER.findall(text)
    return normalize_number(numbers[-1]) if numbers else None


def answer_match(pred_text: str, gold_answer: str) -> float:
    """Exact match of the extracted final answer against the gold answer (math track)."""
    pred = extract_final_answer(pred_text)
    return float(pred is not None and pred == normalize_number(gold_answer.strip()))


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (dynamic programming, one row)."""
    if len(a) < len(b):
        a, b = b, a
    row = [0] * (len(b) + 1)
    for x in a:
        prev_diag = 0
        for j, y in enumerate(b, start=1):
            prev_row_j = row[j]
            row[j] = prev_diag + 1 if x == y else max(row[j], row[j - 1])
            prev_diag = prev_row_j
    return row[-1]


def rouge_l(pred: str, gold: str) -> float:
    """ROUGE-L F1 on whitespace tokens: 2PR/(P+R), P = LCS/|pred|, R = LCS/|gold|; 0 if either is empty."""
    p_tokens, g_tokens = pred.split(), gold.split()
    if not p_tokens or not g_tokens:
        return 0.0
    lcs = lcs_length(p_tokens, g_tokens)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(p_tokens), lcs / len(g_tokens)
    return 2 * precision * recall / (precision + recall)


def accuracy(preds: Sequence, golds: Sequence) -> float:
    if len(preds) != len(golds):
        raise ValueError(f"{len(preds)} predictions for {len(golds)} labels")
    if not golds:
        raise ValueError("accuracy of zero examples")
    return sum(p == g for p, g in zip(preds, golds)) / len(golds)


def bits_per_byte(total_nll_nats: float, total_bytes: int) -> float:
    """Total negative log-likelihood (nats, summed over tokens) per UTF-8 byte, in bits."""
    if total_bytes <= 0:
        raise ValueError("bits per byte needs a positive byte count")
    return total_nll_nats / (math.log(2) * total_bytes)


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD answer normalisation: lower-case, no punctuation, no articles, single spaces."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCT)).split())


def token_f1(pred: str, gold: str) -> float:
    """F1 of the normalised token bags; 1.0 when both are empty, 0.0 when only one is."""
    p_tokens, g_tokens = normalize_answer(pred).split(), normalize_answer(gold).split()
    if not p_tokens or not g_tokens:
        return float(p_tokens == g_tokens)
    common = sum((Counter(p_tokens) & Counter(g_tokens)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p_tokens), common / len(g_tokens)
    return 2 * precision * recall / (precision + recall)
