"""Probabilistic context-free grammars: sampling, and the exact probability of a word sequence.

`PCFG.string_prob(words)` sums over ALL derivations of ``words`` (a memoised
top-down inside computation: ``inside(A, i)`` maps each end position ``j`` to
``P(A =>* words[i:j])``), so a grammar may be ambiguous on purpose (latent topics,
forms shared between singular and plural) and the probabilities of generated
texts, hence the entropy floors of the ``lm`` and the Bayes labels of the ``embed``
track, are still exact.

Restriction (checked at construction): the grammar is acyclic, i.e. no
nonterminal can derive itself. The language is then finite, the inside recursion
terminates, and the tests can enumerate a small grammar's whole language.
Nonterminals are the keys of the rule table; every other symbol is a terminal.
"""
from __future__ import annotations

import math
import random
from bisect import bisect_right
from collections import defaultdict
from itertools import accumulate
from typing import Mapping, Sequence

Rhs = tuple[str, ...]
_TERMINAL, _LEXICAL, _NONTERMINAL = 0, 1, 2


class PCFG:
    def __init__(self, start: str, weighted_rules: Mapping[str, Sequence[tuple[float, Sequence[str]]]]):
        """``weighted_rules``: nonterminal -> [(weight > 0, rhs symbols)]; weights are normalised per lhs."""
        self.start = start
        self.rules: dict[str, tuple[tuple[float, Rhs], ...]] = {}
        for lhs, alts in weighted_rules.items():
            if not alts or any(w <= 0 for w, _ in alts):
                raise ValueError(f"{lhs}: needs alternatives with positive weights")
            total = float(sum(w for w, _ in alts))
            self.rules[lhs] = tuple((w / total, tuple(rhs)) for w, rhs in alts)
        if start not in self.rules:
            raise ValueError(f"start symbol {start!r} has no rules")
        if "" in self.terminals():
            raise ValueError("the empty string cannot be a terminal (write an empty rhs instead)")
        self._cumulative = {lhs: list(accumulate(p for p, _ in alts)) for lhs, alts in self.rules.items()}
        # Preterminals (all alternatives a single terminal) become word -> probability tables:
        # the inside computation then costs one dict lookup for them.
        self._lexical: dict[str, dict[str, float]] = {}
        for lhs, alts in self.rules.items():
            if all(len(rhs) == 1 and rhs[0] not in self.rules for _, rhs in alts):
                table: dict[str, float] = defaultdict(float)
                for p, rhs in alts:
                    table[rhs[0]] += p
                self._lexical[lhs] = dict(table)
        self._check_acyclic()
        self._nullable: dict[str, bool] = {}
        self._first: dict[str, frozenset[str]] = {}
        self._vocab: dict[str, frozenset[str]] = {}
        for lhs in self.rules:
            self._summarise(lhs)
        self._compiled = {lhs: tuple((p, tuple(self._symbol_kind(s) for s in rhs)) for p, rhs in alts)
                          for lhs, alts in self.rules.items()}

    def terminals(self) -> set[str]:
        return {s for alts in self.rules.values() for _, rhs in alts for s in rhs if s not in self.rules}

    def _check_acyclic(self) -> None:
        state: dict[str, int] = {}  # 1 = on the DFS stack, 2 = finished

        def visit(sym: str) -> None:
            state[sym] = 1
            for _, rhs in self.rules[sym]:
                for s in rhs:
                    if s in self.rules:
                        if state.get(s) == 1:
                            raise ValueError(f"grammar is cyclic through {s!r}")
                        if s not in state:
                            visit(s)
            state[sym] = 2

        for lhs in self.rules:
            if lhs not in state:
                visit(lhs)

    def _symbol_kind(self, s: str) -> tuple[int, str, object]:
        if s not in self.rules:
            return (_TERMINAL, s, None)
        if s in self._lexical:
            return (_LEXICAL, s, self._lexical[s])
        return (_NONTERMINAL, s, None if self._nullable[s] else self._first[s])

    def _summarise(self, sym: str) -> None:
        """Nullable?, FIRST set and vocabulary of ``sym`` (pruning tables for `string_prob`)."""
        if sym in self._vocab:
            return
        nullable, first, vocab = False, set(), set()
        for _, rhs in self.rules[sym]:
            prefix_nullable = True
            for s in rhs:
                if s in self.rules:
                    self._summarise(s)
                    s_null, s_first, s_vocab = self._nullable[s], self._first[s], self._vocab[s]
                else:
                    s_null, s_first, s_vocab = False, {s}, {s}
                vocab |= s_vocab
                if prefix_nullable:
                    first |= s_first
                prefix_nullable = prefix_nullable and s_null
            nullable = nullable or prefix_nullable
        self._nullable[sym], self._first[sym], self._vocab[sym] = nullable, frozenset(first), frozenset(vocab)

    def sample(self, rng: random.Random, start: str | None = None) -> tuple[list[str], float]:
        """One derivation from ``start`` (default: the grammar's): (words, its natural-log probability)."""
        words: list[str] = []
        logp = 0.0
        stack = [start or self.start]
        while stack:
            sym = stack.pop()
            alts = self.rules.get(sym)
            if alts is None:
                words.append(sym)
                continue
            cum = self._cumulative[sym]
            k = min(bisect_right(cum, rng.random() * cum[-1]), len(alts) - 1)
            p, rhs = alts[k]
            logp += math.log(p)
            stack.extend(reversed(rhs))
        return words, logp

    def string_prob(self, words: Sequence[str], start: str | None = None) -> float:
        """P(start =>* words), summed over every derivation (0.0 if not in the language)."""
        return self.string_probs(words, (start or self.start,))[0]

    def string_probs(self, words: Sequence[str], starts: Sequence[str]) -> list[float]:
        """`string_prob` from several start symbols, sharing one chart."""
        words = tuple(words)
        n = len(words)
        memo: list[dict[str, dict[int, float]]] = [{} for _ in range(n + 1)]   # memo[i][sym]
        rules, lexical, compiled = self.rules, self._lexical, self._compiled
        padded = words + ("",)      # "" is never a terminal: no bounds checks in the inner loops
        present = set(words)

        def inside(sym: str, i: int) -> dict[int, float]:
            at = memo[i]
            hit = at.get(sym)
            if hit is not None:
                return hit
            ends: dict[int, float] = defaultdict(float)
            for p, rhs in compiled[sym]:
                cur = {i: p}
                for kind, s, table in rhs:
                    if kind == _TERMINAL:                   # j -> j + 1 is injective: no sums needed
                        cur = {j + 1: q for j, q in cur.items() if padded[j] == s}
                    elif kind == _LEXICAL:
                        cur = {j + 1: q * table[padded[j]] for j, q in cur.items() if padded[j] in table}
                    else:                                   # table: FIRST set, None if nullable
                        nxt: dict[int, float] = {}
                        for j, q in cur.items():
                            if table is None or padded[j] in table:
                                for k, r in inside(s, j).items():
                                    nxt[k] = nxt.get(k, 0.0) + q * r
                        cur = nxt
                    if not cur:
                        break
                for j, q in cur.items():
                    ends[j] += q
            at[sym] = ends = dict(ends)
            return ends

        def whole(sym: str) -> float:
            # A symbol spanning the whole text must have every word in its vocabulary; descending
            # through unit rules applies this test to, e.g., each latent topic before parsing.
            if not present <= self._vocab[sym]:
                return 0.0
            alts = rules[sym]
            if sym not in lexical and all(len(rhs) == 1 and rhs[0] in rules for _, rhs in alts):
                return sum(p * whole(rhs[0]) for p, rhs in alts)
            return inside(sym, 0).get(n, 0.0)

        return [whole(start) for start in starts]
