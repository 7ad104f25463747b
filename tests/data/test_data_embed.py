import re

import pytest

from ctkd_bench.data.tasks import embed
from pcfg_brute_force import derivation_probs


def test_texts_are_lower_case_without_punctuation_and_labels_cover_all_classes():
    examples = embed.generate(500, seed=2)
    assert embed.num_labels == len(embed.LABELS) == 3
    assert {ex["label"] for ex in examples} == {0, 1, 2}
    for ex in examples:
        assert re.fullmatch(r"[a-z]+( [a-z]+)*", ex["text"])
        assert len(ex["text"].split()) <= 25


def test_posterior_is_exact():
    g = embed.grammar()
    for ex in embed.generate(40, seed=3):
        words = ex["text"].split()
        likelihood = [sum(derivation_probs(g.rules, f"REVIEW.{embed.SHORT[label]}", words)) for label in embed.LABELS]
        post = embed.posterior(ex["text"])
        assert post == pytest.approx([p / sum(likelihood) for p in likelihood], rel=1e-9)
        assert ex["bayes_label"] == max(range(3), key=post.__getitem__)
    # by hand: "never again" is only a negative core (OPEN empty, REC "never again"),
    # reached with probability 0.94 from the negative label and 0.03 from each other one
    assert embed.posterior("never again") == pytest.approx([0.94, 0.03, 0.03])


def test_meaning_needs_more_than_keywords():
    def best(text):
        post = embed.posterior(text)
        return embed.LABELS[max(range(3), key=post.__getitem__)]

    assert best("the food was bad") == "negative"
    assert best("the food was not bad") == "positive"
    assert best("the food was bad but the staff were friendly") == "positive"
    assert best("the staff were friendly but the food was bad") == "negative"
    assert best("the staff were friendly and the food was bad") == "neutral"
    assert best("the quality was high") == "positive" and best("the prices were high") == "negative"


def test_bayes_accuracy_is_high_but_not_perfect():
    examples = embed.generate(800, seed=4)
    assert 0.85 < embed.bayes_accuracy(examples) < 0.97


def test_seeded():
    assert embed.generate(50, 1) == embed.generate(50, 1) != embed.generate(50, 2)
