import math
import random
import re

import pytest

from ctkd_bench.data.tasks import lm
from ctkd_bench.data.tasks.lm_lexicon import TINY_LEXICON
from pcfg_brute_force import derivation_count, derivation_probs, language

# Two sentences (so the it/they continuation is covered) with few structures, to enumerate.
MICRO = lm.Shape(max_sentences=2, opener=(("pres", 0.5), ("yesterday", 0.5)), relative=(("none", 1.0),),
                 main_vp=(("iv_adv", 0.6), ("cop", 0.4)), adjp=(("none", 1.0),), pred=(("not", 1.0),),
                 advp=(("none", 1.0),))


def test_tiny_grammar_probabilities_are_exact_and_text_is_invertible():
    g = lm.build_grammar(TINY_LEXICON, MICRO)
    lang = language(g.rules, "DOC")
    assert sum(lang.values()) == pytest.approx(1.0, abs=1e-12)
    assert derivation_count(g.rules, "DOC") > len(lang)      # ambiguous: topics, numbers share words
    texts = set()
    for words, p in lang.items():
        assert g.string_prob(words) == pytest.approx(p, rel=1e-9)
        text = lm.realise(list(words))
        assert lm.words_of(text) == list(words)
        texts.add(text)
    assert len(texts) == len(lang)                            # realisation is injective


def test_prefix_probability_drops_exactly_the_end_event():
    lang = language(lm.build_grammar(TINY_LEXICON, MICRO).rules, "DOC")
    starts_with: dict[tuple, float] = {}                     # P(a document starts with these sentences)
    for words, p in lang.items():
        for i, w in enumerate(words):
            if w == ".":
                starts_with[words[:i + 1]] = starts_with.get(words[:i + 1], 0.0) + p
    rng = random.Random(0)
    for _ in range(200):
        ex = lm.sample(rng, TINY_LEXICON, MICRO)
        words = tuple(lm.words_of(ex["response"]))
        assert 2 ** ex["logprob_bits"] == pytest.approx(lang[words], rel=1e-9)
        assert 2 ** ex["prefix_logprob_bits"] == pytest.approx(starts_with[words], rel=1e-9)


def test_logprob_bits_is_the_exact_probability_of_the_text():
    g = lm.default_grammar()
    examples = lm.generate(60, seed=5)
    ambiguous = 0
    for ex in examples:
        probs = derivation_probs(g.rules, "DOC", lm.words_of(ex["response"]))
        assert math.log2(sum(probs)) == pytest.approx(ex["logprob_bits"], abs=1e-9)
        assert ex["n_bytes"] == len(ex["response"].encode("utf-8"))
        ambiguous += len(probs) > 1
    assert ambiguous >= 1   # ~5% of documents have several derivations


def test_agreement_and_topic_constraints():
    g = lm.default_grammar()

    def p(text):
        return g.string_prob(lm.words_of(text))

    assert p("The dogs sleep.") > 0 and p("The dogs sleeps.") == 0
    assert p("The dog that the farmers feed sleeps.") > 0
    assert p("The dog that the farmers feeds sleeps.") == 0
    assert p("The dogs sleep. They run.") > 0 and p("The dogs sleep. It runs.") == 0
    assert p("The cow pulls the fence.") > 0 and p("The cow pulls the boat.") == 0   # farm vs sea
    assert p("Yesterday, the dog sleeps.") == 0 and p("Yesterday, the dog slept.") > 0
    # "sheep" and past tense leave the number open: both readings count
    assert p("The sheep slept.") > p("The cow slept.")


def test_generation_is_seeded_and_well_formed():
    a, b = lm.generate(200, seed=1), lm.generate(200, seed=1)
    assert a == b and a != lm.generate(200, seed=2)
    for ex in a:
        assert ex["prompt"] == "" and ex["response"].isascii()
        assert re.fullmatch(r"[A-Z][a-z]*(,? [a-z]+)*\.( [A-Z][a-z]*(,? [a-z]+)*\.)*", ex["response"])
        assert ex["logprob_bits"] < 0 and len(ex["response"].split()) <= 60
    floor = lm.entropy_floor_bpb(a, eos=True)
    assert floor == pytest.approx(-sum(ex["logprob_bits"] for ex in a) / sum(ex["n_bytes"] for ex in a))
    assert 0.5 < lm.entropy_floor_bpb(a) < floor < 1.0


def test_vocabulary_is_lower_case_words_and_punctuation():
    terminals = lm.default_grammar().terminals()
    assert all(re.fullmatch(r"[a-z]+", t) or t in lm.PUNCTUATION for t in terminals)
    assert 300 <= len(terminals) <= 500
