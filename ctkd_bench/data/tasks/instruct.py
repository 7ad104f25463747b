"""Track ``instruct``: instruction -> response on generated word lists.

Prompt ``"Instruction: <instruction>\\nInput: <input>\\nAnswer:"``; response
``" <output>"`` (one line, at most 12 words). The input is 3-6 words from a
vocabulary of 24 common words; every operation is over whole words (a
sub-word tokenizer cannot see characters, so no spelling or case tasks): copy,
reverse the order, each word twice, first / second / last word, the word after
a given word, count the words, remove a word, swap the first and last word.
Each task has two paraphrased instructions, so the model must map several
phrasings to one operation. The output is a deterministic function of the
input (exact match is well defined); metrics: ROUGE-L and exact match.

Dark knowledge: a model that is unsure what to output spreads its mass over
the input's words; the teacher's soft distribution says which of them are the
plausible next outputs (e.g. the remaining input words during a reversal).

Noisy student labels (`corrupt`, a track's ``noise``): the answer as written by
an annotator who reverses the word order; a one-word answer becomes another
word of the input. It keeps every word an answer could use, so only a model
that knows the task (the teacher, trained on clean answers) can tell the two
versions apart.
"""
from __future__ import annotations

import random

TRACK = "instruct"

WORDS = ("apple", "pear", "plum", "cat", "dog", "fox", "owl", "bear", "fish", "red", "blue", "green",
         "book", "chair", "lamp", "door", "cup", "river", "hill", "stone", "rain", "snow", "star", "moon")
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven")


def _words(rng, lo=3, hi=6, distinct=False):
    n = rng.randint(lo, hi)
    return rng.sample(WORDS, n) if distinct else [rng.choice(WORDS) for _ in range(n)]


def _join(xs) -> str:
    return " ".join(xs)


def copy_words(rng):
    w = _words(rng)
    return _join(w), _join(w)


def reverse_words(rng):
    w = _words(rng)
    return _join(w), _join(reversed(w))


def double_words(rng):
    w = _words(rng, 2, 5)
    return _join(w), _join(x for x in w for _ in range(2))


def first_word(rng):
    w = _words(rng)
    return _join(w), w[0]


def second_word(rng):
    w = _words(rng)
    return _join(w), w[1]


def last_word(rng):
    w = _words(rng)
    return _join(w), w[-1]


def next_word(rng):
    w = _words(rng, 3, 6, distinct=True)   # distinct, so "the word after X" is unique
    i = rng.randrange(len(w) - 1)
    return (w[i], _join(w)), w[i + 1]


def count_words(rng):
    w = _words(rng, 2, 7)
    return _join(w), NUMBER_WORDS[len(w)]


def remove_word(rng):
    w = _words(rng, 3, 6)
    target = rng.choice(w)
    return (target, _join(w)), _join(t for t in w if t != target) or "nothing"


def swap_ends(rng):
    w = _words(rng)
    return _join(w), _join([w[-1], *w[1:-1], w[0]])


# task -> (input maker, instruction paraphrases; "{w}" is the task's target word)
TASKS = {
    "copy_words": (copy_words, ("Repeat the words.", "Copy the input.")),
    "reverse_words": (reverse_words, ("Reverse the order of the words.", "Write the words from last to first.")),
    "double_words": (double_words, ("Write every word twice.", "Say each word two times.")),
    "first_word": (first_word, ("What is the first word?", "Give the first word.")),
    "second_word": (second_word, ("What is the second word?", "Give the second word.")),
    "last_word": (last_word, ("What is the last word?", "Give the last word.")),
    "next_word": (next_word, ('Which word comes after "{w}"?', 'Give the word that follows "{w}".')),
    "count_words": (count_words, ("How many words are there?", "Count the words.")),
    "remove_word": (remove_word, ('Remove every "{w}".', 'Delete the word "{w}" everywhere.')),
    "swap_ends": (swap_ends, ("Swap the first and the last word.", "Exchange the first word with the last word.")),
}


def sample(rng: random.Random) -> dict:
    task = rng.choice(sorted(TASKS))
    make, phrasings = TASKS[task]
    inp, out = make(rng)
    target = ""
    if isinstance(inp, tuple):
        target, inp = inp
    instruction = rng.choice(phrasings).format(w=target)
    prompt = f"Instruction: {instruction}\nInput: {inp}\nAnswer:"
    return {"prompt": prompt, "response": " " + out, "answer": out, "task": task}


def corrupt(example: dict, rng: random.Random) -> dict:
    """The example with its response as the reversing annotator writes it (see the module docstring).

    A several-word answer comes back in reverse order (unchanged if it reads the same both ways);
    a one-word answer becomes a different word of the input, drawn with `rng` (unchanged if the
    input has no other word)."""
    words = example["response"].split()
    if len(words) > 1:
        wrong = _join(reversed(words))
    else:
        given = example["prompt"].split("\nInput: ", 1)[1].split("\n", 1)[0].split()
        others = sorted(set(given) - set(words))
        wrong = rng.choice(others) if others else _join(words)
    return {**example, "response": " " + wrong, "answer": wrong}


def generate(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [{"id": f"{TRACK}-{seed}-{i}", **sample(rng)} for i in range(n)]
