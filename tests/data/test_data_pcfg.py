import math
import random

import pytest

from ctkd_bench.data.tasks.pcfg import PCFG
from pcfg_brute_force import derivation_probs, language

# Ambiguous on purpose: "x y z" has three derivations (A B two ways, and C).
RULES = {
    "S": [(1, ("A", "B")), (1, ("C",))],
    "A": [(3, ("x",)), (1, ("x", "y"))],
    "B": [(1, ("y", "z")), (1, ("z",)), (2, ())],
    "C": [(1, ("x", "y", "z")), (1, ("w",)), (2, ("D",))],
    "D": [(1, ("x",)), (1, ())],
}


def test_hand_computed_probabilities():
    g = PCFG("S", RULES)
    # S->A B: A=x (3/4) B=y z (1/4); A=x y (1/4) B=z (1/4); S->C: C=x y z (1/4)
    assert g.string_prob(["x", "y", "z"]) == pytest.approx(0.5 * (0.75 * 0.25 + 0.25 * 0.25) + 0.5 * 0.25)
    # S->A B with B empty: x (3/4 * 1/2); S->C->D->x: 1/2 * 1/2 * 1/2
    assert g.string_prob(["x"]) == pytest.approx(0.5 * 0.75 * 0.5 + 0.5 * 0.5 * 0.5)
    assert g.string_prob([]) == pytest.approx(0.5 * 0.5 * 0.5)
    assert g.string_prob(["z"]) == 0.0
    assert g.string_prob(["x", "y", "z", "z"]) == 0.0


def test_matches_enumeration_of_the_whole_language():
    g = PCFG("S", RULES)
    lang = language(g.rules, "S")
    assert sum(lang.values()) == pytest.approx(1.0)
    for words, p in lang.items():
        assert g.string_prob(words) == pytest.approx(p, rel=1e-12)
        assert sum(derivation_probs(g.rules, "S", words)) == pytest.approx(p, rel=1e-12)
    assert len(derivation_probs(g.rules, "S", ("x", "y", "z"))) == 3


def test_sample_frequencies_and_derivation_logprob():
    g = PCFG("S", RULES)
    rng = random.Random(0)
    counts: dict[tuple, int] = {}
    for _ in range(4000):
        words, logp = g.sample(rng)
        assert math.exp(logp) <= g.string_prob(words) + 1e-12   # one derivation <= all of them
        counts[tuple(words)] = counts.get(tuple(words), 0) + 1
    for words, p in language(g.rules, "S").items():
        assert counts.get(words, 0) / 4000 == pytest.approx(p, abs=0.03)


def test_start_symbol_and_shared_chart():
    g = PCFG("S", RULES)
    assert g.string_probs(["x"], ["S", "D", "A"]) == pytest.approx([g.string_prob(["x"]), 0.5, 0.75])


def test_rejects_cycles_and_bad_weights():
    with pytest.raises(ValueError, match="cyclic"):
        PCFG("S", {"S": [(1, ("T",))], "T": [(1, ("S", "a")), (1, ("a",))]})
    with pytest.raises(ValueError, match="positive"):
        PCFG("S", {"S": [(0, ("a",))]})
    with pytest.raises(ValueError, match="empty string"):
        PCFG("S", {"S": [(1, ("",))]})
