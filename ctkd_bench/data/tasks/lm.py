"""Track ``lm``: short documents from a probabilistic grammar whose entropy is known exactly.

A document is 1-3 sentences about one latent topic (farm, kitchen, forest, sea,
city), e.g. "The hungry cows that the farmer feeds graze near the barn. They
sleep again." What a model can learn, roughly from easy to hard:

- local syntax: determiners, adjective order, punctuation and capitals;
- number agreement: determiner-noun, subject-verb, also across an object
  relative clause ("the dog that the farmers feed barks") and across sentences
  (a following "It"/"They" agrees with the previous subject);
- the latent topic, which fixes the nouns, verbs, places and adjectives of the
  whole document, so later words depend on the first content words;
- the Zipfian word frequencies within each slot (rare words are seen only a few
  times in a few thousand documents).

Dark knowledge: almost every slot is a real choice among several words with
graded probabilities (synonyms such as big/large/huge), so the teacher's soft
next-word distribution carries far more than the sampled word; and the topic is
latent, so its posterior (visible in the teacher's predictions) sharpens as the
document goes on.

Exact entropy: ``logprob_bits`` is log2 P(text), computed at generation time by
`PCFG.string_prob` over every derivation of the text's words (the topic and some
numbers/tenses are ambiguous by design). The realisation words -> text is
invertible (`words_of`), so P(text) = P(words). ``logprob_bits`` includes the end
of the document (the floor for a score that includes the EOS token);
``prefix_logprob_bits`` = log2 P(a document starts with this text) leaves it out
(the floor for lm-eval's ``loglikelihood_rolling``, which scores no EOS). The
end event has probability `p_end` whatever the topic or numbers, so the two
differ by exactly log2 p_end(number of sentences). The floor of the metric is
``entropy_floor_bpb(test examples, eos)`` = -sum(bits) / sum(n_bytes).
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from functools import lru_cache

from .lm_lexicon import LEXICON, Lexicon
from .pcfg import PCFG

TRACK = "lm"
PUNCTUATION = (".", ",")
NUMBERS = ("sg", "pl")


@dataclass(frozen=True)
class Shape:
    """Structural rule weights; a zero weight removes that alternative (tests use smaller shapes)."""
    max_sentences: int = 3
    p_stop: float = 0.5           # the document ends after a sentence (if more were allowed)
    p_pronoun: float = 0.25       # a further sentence starts with it/they, agreeing with the last subject
    number: tuple = (("sg", 0.55), ("pl", 0.45))
    opener: tuple = (("pres", 0.6), ("past", 0.3), ("today", 0.04), ("yesterday", 0.06))
    pronoun_tense: tuple = (("pres", 0.6), ("past", 0.4))
    relative: tuple = (("none", 0.7), ("subject", 0.16), ("object", 0.14))
    main_vp: tuple = (("iv_adv", 0.3), ("iv_pp", 0.15), ("tv_obj_adv", 0.3), ("tv_obj_pp", 0.1), ("cop", 0.15))
    inner_vp: tuple = (("iv", 0.5), ("tv_obj", 0.4), ("cop", 0.1))
    adjp: tuple = (("none", 0.55), ("topic", 0.2), ("size", 0.1), ("colour", 0.07), ("size_colour", 0.08))
    pred: tuple = (("adj", 0.5), ("very", 0.2), ("not", 0.1), ("size", 0.2))
    advp: tuple = (("none", 0.7), ("adv", 0.3))
    obj_noun: tuple = (("agent", 0.4), ("thing", 0.6))
    topic_verb_share: float = 0.65   # the rest goes to the verbs shared by all topics


SHAPE = Shape()


def zipf(items) -> list[tuple[float, object]]:
    """Rank r (0-based) gets weight 1/(r+1)."""
    return [(1.0 / (r + 1), item) for r, item in enumerate(items)]


def _verb_key(number: str, tense: str) -> str:
    return number if tense == "pres" else "any"   # past forms do not agree


def build_grammar(lexicon: Lexicon = LEXICON, shape: Shape = SHAPE) -> PCFG:
    rules: dict[str, list] = {}

    def add(lhs: str, weight: float, *rhs: str) -> None:
        if weight > 0:
            rules.setdefault(lhs, []).append((weight, rhs))

    _shared_rules(add, lexicon)
    for kind, w in shape.advp:
        add("ADVP", w, *(() if kind == "none" else ("ADV",)))
    for topic in lexicon.topics:
        add("DOC", 1.0, f"DOC.{topic.name}")
        _topic_words(add, lexicon, topic, shape)
        _topic_phrases(add, topic.name, shape)
        _topic_document(add, topic.name, shape)
    return PCFG("DOC", rules)


def _shared_rules(add, lx: Lexicon) -> None:
    for name, words in (("DET.sg", lx.det_sg), ("DET.pl", lx.det_pl), ("SIZE", lx.sizes),
                        ("COLOUR", lx.colours), ("ADV", lx.adverbs), ("PREP", lx.prepositions)):
        for w, word in zipf(words):
            add(name, w, word)
    for lhs, word in (("COP.sg.pres", "is"), ("COP.pl.pres", "are"), ("COP.sg.past", "was"),
                      ("COP.pl.past", "were"), ("PRON.sg", lx.pronoun_sg), ("PRON.pl", lx.pronoun_pl)):
        add(lhs, 1.0, word)


def _topic_words(add, lx: Lexicon, topic, shape: Shape) -> None:
    t = topic.name
    for k, number in enumerate(NUMBERS):
        for w, noun in zipf(topic.agents):
            add(f"AGENT.{t}.{number}", w, noun[k])
        for w, noun in zipf(topic.things):
            add(f"THING.{t}.{number}", w, noun[k])
    for w, word in zipf(topic.places):
        add(f"PLACE.{t}", w, word)
    for w, word in zipf(topic.adjectives):
        add(f"ADJ.{t}", w, word)
    share = shape.topic_verb_share
    for kind, own, common in (("IV", topic.intransitive, lx.intransitive), ("TV", topic.transitive, lx.transitive)):
        for key, form in (("sg.pres", 0), ("pl.pres", 1), ("any.past", 2)):
            for source, part in ((own, share), (common, 1.0 - share)):
                total = sum(w for w, _ in zipf(source))
                for w, verb in zipf(source):
                    add(f"{kind}.{t}.{key}", part * w / total, verb[form])


def _topic_phrases(add, t: str, shape: Shape) -> None:
    for number, p_number in shape.number:
        add(f"INP.{t}.{number}", 1.0, f"DET.{number}", f"ADJP.{t}", f"AGENT.{t}.{number}")
        add(f"OBJ.{t}", p_number, f"DET.{number}", f"ADJP.{t}", f"OBJN.{t}.{number}")
        for kind, w in shape.obj_noun:
            add(f"OBJN.{t}.{number}", w, f"{kind.upper()}.{t}.{number}")
    add(f"PP.{t}", 1.0, "PREP", "the", f"PLACE.{t}")
    adjp = {"none": (), "topic": (f"ADJ.{t}",), "size": ("SIZE",), "colour": ("COLOUR",),
            "size_colour": ("SIZE", "COLOUR")}
    for kind, w in shape.adjp:
        add(f"ADJP.{t}", w, *adjp[kind])
    pred = {"adj": (f"ADJ.{t}",), "very": ("very", f"ADJ.{t}"), "not": ("not", f"ADJ.{t}"), "size": ("SIZE",)}
    for kind, w in shape.pred:
        add(f"PRED.{t}", w, *pred[kind])


def _topic_document(add, t: str, shape: Shape) -> None:
    for number, p_number in shape.number:
        add(f"DOC.{t}", p_number, f"SENT.{t}.{number}", ".", f"CONT.{t}.{number}.{shape.max_sentences - 1}")
    for n in NUMBERS:
        _continuations(add, t, n, shape)
        openers = {"pres": (f"CL.{t}.{n}.pres",), "past": (f"CL.{t}.{n}.past",),
                   "today": ("today", ",", f"CL.{t}.{n}.pres"), "yesterday": ("yesterday", ",", f"CL.{t}.{n}.past")}
        for kind, w in shape.opener:
            add(f"SENT.{t}.{n}", w, *openers[kind])
        for tense, w in shape.pronoun_tense:
            add(f"PSENT.{t}.{n}", w, f"PRON.{n}", f"VP.{t}.{n}.{tense}")
        for tense in ("pres", "past"):
            _clause(add, t, n, tense, shape)


def _continuations(add, t: str, n: str, shape: Shape) -> None:
    add(f"CONT.{t}.{n}.0", 1.0)
    go_on = 1.0 - shape.p_stop
    for k in range(1, shape.max_sentences):
        lhs, rest = f"CONT.{t}.{n}.{k}", f"{k - 1}"
        add(lhs, shape.p_stop)
        for m, p_m in shape.number:
            add(lhs, go_on * (1 - shape.p_pronoun) * p_m, f"SENT.{t}.{m}", ".", f"CONT.{t}.{m}.{rest}")
        add(lhs, go_on * shape.p_pronoun, f"PSENT.{t}.{n}", ".", f"CONT.{t}.{n}.{rest}")


def _clause(add, t: str, n: str, tense: str, shape: Shape) -> None:
    iv, tv = f"IV.{t}.{_verb_key(n, tense)}.{tense}", f"TV.{t}.{_verb_key(n, tense)}.{tense}"
    cop = f"COP.{n}.{tense}"
    add(f"CL.{t}.{n}.{tense}", 1.0, f"NP.{t}.{n}.{tense}", f"VP.{t}.{n}.{tense}")
    add(f"NP.{t}.{n}.{tense}", 1.0, f"DET.{n}", f"ADJP.{t}", f"AGENT.{t}.{n}", f"REL.{t}.{n}.{tense}")
    rel = f"REL.{t}.{n}.{tense}"
    for kind, w in shape.relative:
        if kind == "none":
            add(rel, w)
        elif kind == "subject":
            add(rel, w, "that", f"VPI.{t}.{n}.{tense}")
        else:   # object relative: its own subject, whose number the embedded verb agrees with
            for m, p_m in shape.number:
                add(rel, w * p_m, "that", f"INP.{t}.{m}", f"TV.{t}.{_verb_key(m, tense)}.{tense}")
    main = {"iv_adv": (iv, "ADVP"), "iv_pp": (iv, f"PP.{t}"), "tv_obj_adv": (tv, f"OBJ.{t}", "ADVP"),
            "tv_obj_pp": (tv, f"OBJ.{t}", f"PP.{t}"), "cop": (cop, f"PRED.{t}")}
    for kind, w in shape.main_vp:
        add(f"VP.{t}.{n}.{tense}", w, *main[kind])
    inner = {"iv": (iv,), "tv_obj": (tv, f"OBJ.{t}"), "cop": (cop, f"PRED.{t}")}
    for kind, w in shape.inner_vp:
        add(f"VPI.{t}.{n}.{tense}", w, *inner[kind])


@lru_cache(maxsize=None)
def grammar_for(lexicon: Lexicon = LEXICON, shape: Shape = SHAPE) -> PCFG:
    return build_grammar(lexicon, shape)


def default_grammar() -> PCFG:
    return grammar_for(LEXICON, SHAPE)


def p_end(n_sentences: int, shape: Shape = SHAPE) -> float:
    """P(the document ends | it has n_sentences so far): the CONT rules' empty alternative."""
    return shape.p_stop if n_sentences < shape.max_sentences else 1.0


def realise(words: list[str]) -> str:
    """Words -> text: punctuation attaches to the previous word; sentences start with a capital."""
    out: list[str] = []
    capital = True
    for word in words:
        if word in PUNCTUATION:
            out[-1] += word
            capital = word == "."
        else:
            out.append(word[:1].upper() + word[1:] if capital else word)
            capital = False
    return " ".join(out)


def words_of(text: str) -> list[str]:
    """The inverse of `realise` (grammar words are lower-case letters only)."""
    words: list[str] = []
    for token in text.split(" "):
        core = token.rstrip("".join(PUNCTUATION))
        words.append(core.lower())
        words.extend(token[len(core):])
    return words


def sample(rng: random.Random, lexicon: Lexicon = LEXICON, shape: Shape = SHAPE) -> dict:
    grammar = grammar_for(lexicon, shape)
    words, _ = grammar.sample(rng)
    text = realise(words)
    bits = math.log2(grammar.string_prob(words))   # = P(text): realise is invertible (words_of; tested)
    return {"prompt": "", "response": text, "logprob_bits": bits,
            "prefix_logprob_bits": bits - math.log2(p_end(words.count("."), shape)),
            "n_bytes": len(text.encode("utf-8"))}


def generate(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [{"id": f"{TRACK}-{seed}-{i}", **sample(rng)} for i in range(n)]


def entropy_floor_bpb(examples, eos: bool = False) -> float:
    """The true distribution's bits per byte on these examples: -sum(log2 P) / sum(UTF-8 bytes).

    ``eos=False`` (lm-eval ``loglikelihood_rolling``): P(a document starts with the text);
    ``eos=True``: P(the document is the text), for scores that include the end-of-sequence token.
    """
    key = "logprob_bits" if eos else "prefix_logprob_bits"
    bits = -sum(float(ex[key]) for ex in examples)
    return bits / sum(int(ex["n_bytes"]) for ex in examples)
