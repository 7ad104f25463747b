"""Independent reference computations for grammars (no chart, no pruning): used by tests/data."""
from __future__ import annotations

from collections import defaultdict


def language(rules, start) -> dict[tuple[str, ...], float]:
    """Every string of an acyclic grammar with its total probability, by expanding all derivations."""
    memo: dict[str, dict[tuple[str, ...], float]] = {}

    def dist(sym):
        if sym not in rules:
            return {(sym,): 1.0}
        if sym not in memo:
            out = defaultdict(float)
            for p, rhs in rules[sym]:
                partial = {(): p}
                for s in rhs:
                    nxt = defaultdict(float)
                    for a, q in partial.items():
                        for b, r in dist(s).items():
                            nxt[a + b] += q * r
                    partial = nxt
                for a, q in partial.items():
                    out[a] += q
            memo[sym] = dict(out)
        return memo[sym]

    return dist(start)


def derivation_count(rules, start) -> int:
    memo: dict[str, int] = {}

    def count(sym):
        if sym not in rules:
            return 1
        if sym not in memo:
            total = 0
            for _, rhs in rules[sym]:
                k = 1
                for s in rhs:
                    k *= count(s)
                total += k
            memo[sym] = total
        return memo[sym]

    return count(start)


def derivation_probs(rules, start, words) -> list[float]:
    """The probability of each leftmost derivation of exactly ``words`` (plain backtracking)."""
    words = tuple(words)
    found: list[float] = []
    stack = [((start,), 0, 1.0)]
    while stack:
        symbols, i, prob = stack.pop()
        if not symbols:
            if i == len(words):
                found.append(prob)
            continue
        head, rest = symbols[0], symbols[1:]
        if head not in rules:
            if i < len(words) and words[i] == head:
                stack.append((rest, i + 1, prob))
            continue
        if sum(1 for s in symbols if s not in rules) > len(words) - i:   # too many words left to match
            continue
        for p, rhs in rules[head]:
            stack.append((tuple(rhs) + rest, i, prob * p))
    return found
