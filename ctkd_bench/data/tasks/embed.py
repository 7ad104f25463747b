"""Track ``embed``: three-way sentiment of short generated reviews (encoder classification).

Text is lower-case words separated by single spaces, without punctuation (EMO
re-tokenises lower-cased, punctuation-free text), e.g. "honestly the food was
not bad but the staff were rude" -> negative. Labels: negative, neutral,
positive. Metric: accuracy.

What makes it more than keyword spotting:
- negation flips polarity ("not bad" is positive, "not friendly" negative);
- in "X but Y" the second clause decides, in "X and Y" with mixed polarity the
  review is neutral;
- polarity of "high"/"low" depends on the noun (high quality vs high prices);
- some phrases are genuinely ambiguous ("not very good": negative or neutral),
  and 6% of labels are noise (a review written for another label).

Each label is a start symbol of one PCFG (uniform prior over labels), so the
posterior P(label | text) is exact (`PCFG.string_prob` from each label's start
symbol). ``bayes_label`` is its argmax: mean(bayes_label == label) on the test
split is the Bayes-optimal accuracy, the ceiling of the metric (about 0.9). The
teacher's soft class distribution carries this posterior: dark knowledge.
"""
from __future__ import annotations

import random
from functools import lru_cache

from .lm import zipf
from .pcfg import PCFG

TRACK = "embed"
LABELS = ("negative", "neutral", "positive")
num_labels = len(LABELS)
LABEL_NOISE = 0.06

ASPECTS_SG = ("food", "service", "room", "location", "view", "breakfast", "coffee", "price", "music", "bed",
              "wifi", "quality")
ASPECTS_PL = ("staff", "rooms", "drinks", "prices", "beds", "waiters", "portions")
POSITIVE = ("good", "great", "friendly", "excellent", "lovely", "nice", "amazing", "clean", "wonderful", "tasty",
            "perfect", "fresh", "fantastic", "decent", "fine")
NEGATIVE = ("bad", "slow", "terrible", "rude", "awful", "dirty", "poor", "noisy", "cold", "horrible", "bland",
            "boring", "expensive")
NEUTRAL = ("okay", "fine", "average", "alright", "ordinary", "decent", "normal", "acceptable", "standard", "plain")
PLACES = ("hotel", "restaurant", "place", "cafe")
SHORT = {"positive": "pos", "negative": "neg", "neutral": "neu"}


def _words(add, lhs, words):
    for w, word in zipf(words):
        add(lhs, w, word)


def _clause_rules(add, pol: str, adjectives, intensifiers, verbs, negated) -> None:
    """CL.<pol>: "<subject> was/were <pred>", "<person> <verb> the <aspect>", high/low pairs."""
    _words(add, f"ADJ.{pol}", adjectives)
    for w, rhs in intensifiers:
        add(f"INT.{pol}", w, *rhs)
    add(f"PRED.{pol}", 0.75, f"INT.{pol}", f"ADJ.{pol}")
    for w, rhs in negated:
        add(f"PRED.{pol}", w, *rhs)
    add(f"CL.{pol}", 0.45, "SUBJ.sg", "was", f"PRED.{pol}")
    add(f"CL.{pol}", 0.30, "SUBJ.pl", "were", f"PRED.{pol}")
    for w, rhs in verbs:
        add(f"CL.{pol}", 0.2 * w, "PERSON", *rhs, "the", "ASPECT")


def _grammar_rules() -> dict:
    rules: dict[str, list] = {}

    def add(lhs, weight, *rhs):
        rules.setdefault(lhs, []).append((weight, rhs))

    _words(add, "ASPECT.sg", ASPECTS_SG)
    _words(add, "ASPECT.pl", ASPECTS_PL)
    add("ASPECT", 0.6, "ASPECT.sg")
    add("ASPECT", 0.4, "ASPECT.pl")
    for det, w in (("the", 0.7), ("our", 0.15), ("my", 0.15)):
        add("DET", w, det)
    add("SUBJ.sg", 1.0, "DET", "ASPECT.sg")
    add("SUBJ.pl", 1.0, "DET", "ASPECT.pl")
    for w, rhs in ((0.4, ("we",)), (0.3, ("i",)), (0.15, ("my", "family")), (0.15, ("my", "friends"))):
        add("PERSON", w, *rhs)
    _words(add, "PLACE", PLACES)
    for w, rhs in ((0.6, ()), (0.1, ("overall",)), (0.1, ("honestly",)), (0.1, ("i", "think")), (0.1, ("to", "be", "honest"))):
        add("OPEN", w, *rhs)
    strong = ((0.5, ()), (0.2, ("very",)), (0.15, ("really",)), (0.08, ("so",)), (0.07, ("quite",)))
    _clause_rules(add, "pos", POSITIVE, strong,
                  verbs=((0.4, ("loved",)), (0.3, ("liked",)), (0.2, ("enjoyed",)), (0.1, ("really", "liked"))),
                  negated=((0.25, ("not", "ADJ.negw")),))
    _clause_rules(add, "neg", NEGATIVE, strong,
                  verbs=((0.4, ("hated",)), (0.2, ("disliked",)), (0.25, ("did", "not", "like")), (0.15, ("did", "not", "enjoy"))),
                  negated=((0.15, ("not", "ADJ.pos")), (0.1, ("not", "very", "ADJ.pos"))))
    _clause_rules(add, "neu", NEUTRAL, ((0.7, ()), (0.15, ("quite",)), (0.15, ("pretty",))),
                  verbs=((0.6, ("did", "not", "mind")), (0.4, ("had", "no", "problem", "with"))),
                  negated=((0.15, ("not", "very", "ADJ.pos")), (0.1, ("not", "too", "ADJ.neg"))))
    _words(add, "ADJ.negw", ("bad", "terrible", "awful", "slow", "noisy"))
    for w, rhs in ((0.5, ()), (0.25, ("very",)), (0.15, ("really",)), (0.1, ("quite",))):
        add("INT.level", w, *rhs)
    for pol, good, bad in (("pos", "high", "low"), ("neg", "low", "high")):   # the noun decides
        add(f"CL.{pol}", 0.04, "DET", "quality", "was", "INT.level", good)
        add(f"CL.{pol}", 0.03, "DET", "prices", "were", "INT.level", bad)
        add(f"CL.{pol}", 0.03, "DET", "price", "was", "INT.level", bad)
    for w, rhs in ((0.5, ()), (0.3, ("definitely",)), (0.2, ("surely",))):
        add("SURE", w, *rhs)
    for w, rhs in ((0.4, ("we",)), (0.4, ("i",)), (0.2, ("my", "family"))):
        add("WHO", w, *rhs)
    add("REC.pos", 0.5, "i", "would", "SURE", "recommend", "this", "PLACE")
    add("REC.pos", 0.5, "WHO", "will", "SURE", "come", "back")
    add("REC.neg", 0.5, "i", "would", "not", "recommend", "this", "PLACE")
    add("REC.neg", 0.3, "WHO", "will", "SURE", "not", "come", "back")
    add("REC.neg", 0.2, "never", "again")
    add("REC.neu", 0.4, "WHO", "might", "come", "back")
    add("REC.neu", 0.3, "it", "was", "what", "we", "expected")
    add("REC.neu", 0.3, "nothing", "special", "about", "this", "PLACE")
    for pol, other in (("pos", "neg"), ("neg", "pos")):
        add(f"CORE.{pol}", 0.45, "OPEN", f"CL.{pol}")
        add(f"CORE.{pol}", 0.15, "OPEN", f"CL.{pol}", "and", f"CL.{pol}")
        add(f"CORE.{pol}", 0.12, "OPEN", f"CL.{other}", "but", f"CL.{pol}")
        add(f"CORE.{pol}", 0.08, "OPEN", "CL.neu", "but", f"CL.{pol}")
        add(f"CORE.{pol}", 0.16, "OPEN", f"CL.{pol}", "and", f"REC.{pol}")
        add(f"CORE.{pol}", 0.04, "OPEN", f"REC.{pol}")
    add("CORE.neu", 0.5, "OPEN", "CL.neu")
    add("CORE.neu", 0.12, "OPEN", "CL.neu", "and", "CL.neu")
    add("CORE.neu", 0.12, "OPEN", "CL.pos", "and", "CL.neg")
    add("CORE.neu", 0.12, "OPEN", "CL.neg", "and", "CL.pos")
    add("CORE.neu", 0.10, "OPEN", "CL.neu", "and", "REC.neu")
    add("CORE.neu", 0.04, "OPEN", "REC.neu")
    for label in LABELS:
        add(f"REVIEW.{SHORT[label]}", 1 - LABEL_NOISE, f"CORE.{SHORT[label]}")
        for other in LABELS:
            if other != label:
                add(f"REVIEW.{SHORT[label]}", LABEL_NOISE / (len(LABELS) - 1), f"CORE.{SHORT[other]}")
    return rules


@lru_cache(maxsize=None)
def grammar() -> PCFG:
    rules = _grammar_rules()
    rules["TEXT"] = [(1.0, (f"REVIEW.{SHORT[label]}",)) for label in LABELS]   # uniform prior
    return PCFG("TEXT", rules)


@lru_cache(maxsize=1 << 16)   # frequent short reviews recur
def _likelihoods(text: str) -> tuple[float, ...]:
    return tuple(grammar().string_probs(text.split(" "), [f"REVIEW.{SHORT[label]}" for label in LABELS]))


def posterior(text: str) -> list[float]:
    """Exact P(label | text) under the generating grammar (uniform label prior)."""
    likelihood = _likelihoods(text)
    total = sum(likelihood)
    return [p / total for p in likelihood]


def sample(rng: random.Random) -> dict:
    g = grammar()
    label = rng.randrange(len(LABELS))
    words, _ = g.sample(rng, start=f"REVIEW.{SHORT[LABELS[label]]}")
    text = " ".join(words)
    post = posterior(text)
    return {"text": text, "label": label, "bayes_label": max(range(len(LABELS)), key=post.__getitem__)}


def generate(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [{"id": f"{TRACK}-{seed}-{i}", **sample(rng)} for i in range(n)]


def bayes_accuracy(examples) -> float:
    """Accuracy of the Bayes-optimal classifier on these examples: the metric's ceiling."""
    return sum(int(ex["bayes_label"]) == int(ex["label"]) for ex in examples) / len(examples)
