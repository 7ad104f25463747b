"""Track ``instruct``: instruction -> response on generated inputs.

Prompt ``"Instruction: <instruction>\\nInput: <input>\\nAnswer:"``; response
``" <output>"`` (one line, at most 15 words). Fifteen tasks: reverse, sort
words, sort numbers up/down, upper case, capitalise, count words, count one
word, first/last word, largest number, list the numbers, remove a word, spell a
word, add numbers. Each task has two or three paraphrased instructions, so the
model must map several phrasings to one operation. The output is a deterministic
function of the input (exact match is well defined); metrics: exact match and
ROUGE-L.

Dark knowledge: a model that is unsure what to output spreads its mass over
the input's tokens; the teacher's soft distribution says which of them are the
plausible next outputs (e.g. the remaining input words during a reversal).
"""
from __future__ import annotations

import random

TRACK = "instruct"

WORDS = ("apple", "banana", "cherry", "grape", "lemon", "mango", "pear", "plum", "cat", "dog", "fox", "owl",
         "bear", "wolf", "fish", "horse", "red", "blue", "green", "black", "white", "pink", "gold", "silver",
         "book", "chair", "table", "lamp", "door", "cup", "spoon", "clock", "river", "hill", "stone", "cloud",
         "rain", "snow", "wind", "star", "moon", "sun", "road", "ship", "train", "bike", "kite", "drum")
SHORT = WORDS[:16]   # a small pool, so that words repeat in the counting/removal tasks


def _words(rng, lo=3, hi=7, pool=WORDS):
    return [rng.choice(pool) for _ in range(rng.randint(lo, hi))]


def _numbers(rng, lo=3, hi=7, top=99):
    return [rng.randint(0, top) for _ in range(rng.randint(lo, hi))]


def _join(xs) -> str:
    return " ".join(str(x) for x in xs)


def reverse_words(rng):
    w = _words(rng)
    return _join(w), _join(reversed(w))


def sort_words(rng):
    w = _words(rng)
    return _join(w), _join(sorted(w))


def sort_numbers_up(rng):
    x = _numbers(rng)
    return _join(x), _join(sorted(x))


def sort_numbers_down(rng):
    x = _numbers(rng)
    return _join(x), _join(sorted(x, reverse=True))


def uppercase(rng):
    w = _words(rng, 2, 5)
    return _join(w), _join(w).upper()


def capitalise(rng):
    w = _words(rng, 2, 6)
    return _join(w), _join(x.capitalize() for x in w)


def count_words(rng):
    w = _words(rng, 2, 9)
    return _join(w), str(len(w))


def count_word(rng):
    w = _words(rng, 4, 9, SHORT[:6])
    target = rng.choice(w)
    return (target, _join(w)), str(w.count(target))


def first_word(rng):
    w = _words(rng)
    return _join(w), w[0]


def last_word(rng):
    w = _words(rng)
    return _join(w), w[-1]


def largest_number(rng):
    x = _numbers(rng)
    return _join(x), str(max(x))


def list_numbers(rng):
    n = rng.randint(1, 4)
    items = _words(rng, 2, 6) + [str(v) for v in _numbers(rng, n, n)]
    rng.shuffle(items)
    return _join(items), _join(t for t in items if t.isdigit())


def remove_word(rng):
    w = _words(rng, 4, 8, SHORT[:8])
    target = rng.choice(w)
    return (target, _join(w)), _join(t for t in w if t != target) or "nothing"


def spell_word(rng):
    word = rng.choice(WORDS)
    return word, _join(word)


def add_numbers(rng):
    x = _numbers(rng, 2, 3, 50)
    return _join(x), str(sum(x))


# task -> (input maker, instruction paraphrases; "{w}" is the task's target word)
TASKS = {
    "reverse_words": (reverse_words, ("Reverse the order of the words.", "Write the words in reverse order.",
                                      "List the words from last to first.")),
    "sort_words": (sort_words, ("Sort the words in alphabetical order.", "Put the words in alphabetical order.",
                                "Arrange the words from A to Z.")),
    "sort_numbers_up": (sort_numbers_up, ("Sort the numbers from smallest to largest.",
                                          "Order the numbers in increasing order.")),
    "sort_numbers_down": (sort_numbers_down, ("Sort the numbers from largest to smallest.",
                                              "Order the numbers in decreasing order.")),
    "uppercase": (uppercase, ("Write the words in capital letters.", "Convert the text to upper case.")),
    "capitalise": (capitalise, ("Capitalize the first letter of each word.", "Start every word with a capital letter.")),
    "count_words": (count_words, ("How many words are in the input?", "Count the words.")),
    "count_word": (count_word, ('How many times does the word "{w}" appear?', 'Count how often "{w}" occurs.')),
    "first_word": (first_word, ("What is the first word?", "Give the first word.")),
    "last_word": (last_word, ("What is the last word?", "Give the last word.")),
    "largest_number": (largest_number, ("What is the largest number?", "Give the biggest number.")),
    "list_numbers": (list_numbers, ("List the numbers in the text.", "Extract all the numbers.")),
    "remove_word": (remove_word, ('Remove every "{w}" from the list.', 'Delete the word "{w}" everywhere.')),
    "spell_word": (spell_word, ("Spell the word with spaces between the letters.", "Write the letters of the word one by one.")),
    "add_numbers": (add_numbers, ("Add the numbers.", "What is the sum of the numbers?")),
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


def generate(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [{"id": f"{TRACK}-{seed}-{i}", **sample(rng)} for i in range(n)]
