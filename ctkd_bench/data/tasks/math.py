"""Track ``math``: GSM8K-style word problems with a short chain-of-thought rationale.

Prompt ``"Question: <problem>\\nAnswer:"``; response ``" <line>\\n<line>\\n#### <N>"``:
two rationale lines, one arithmetic step each ("a + b = c"), then the final
answer. Six templates, small numbers (question numbers mostly 1-9, at most
one multiplication or halving per problem, every intermediate and answer a
non-negative integer < 60), meant to be learnable by a 64-wide, 4-layer teacher
trained on a few thousand problems but not by a small student that sees only a
few hundred (measured: see docs/suites.md, Calibration). Metric:
exact match of `metrics.extract_final_answer` against ``answer``.

Dark knowledge: each step has two equally valid phrasings, so the teacher's
distribution over rationale tokens is genuinely spread while the numbers are
forced; near-miss numbers (off by one, the other operation) are where a soft
teacher and a sampled target differ. Names and items vary freely.

Each example also records ``template`` so that the tests can re-solve the
question independently from the numbers in its text.
"""
from __future__ import annotations

import random

TRACK = "math"

NAMES = (("Ann", "she"), ("Tom", "he"), ("Mia", "she"), ("Leo", "he"), ("Sara", "she"), ("Ben", "he"),
         ("Lily", "she"), ("Sam", "he"), ("Eva", "she"), ("Max", "he"), ("Nina", "she"), ("Omar", "he"))
ITEMS = ("apples", "pencils", "marbles", "cookies", "stickers", "cards", "shells", "eggs")
GOODS = ("pens", "cups", "toys", "books", "plates", "socks")
CONTAINERS = ("jar", "basket", "box", "bag")


def _cap(word: str) -> str:
    return word[:1].upper() + word[1:]


def find_then_give(rng):
    (name, he), (other, _) = rng.sample(NAMES, 2)
    item = rng.choice(ITEMS)
    a, b = rng.randint(2, 9), rng.randint(2, 9)
    x = a + b
    c = rng.randint(1, min(9, x - 1))
    r = x - c
    q = (f"{name} has {a} {item}. {_cap(he)} finds {b} more. Then {he} gives {c} {item} to {other}. "
         f"How many {item} does {name} have now?")
    lines = [rng.choice([f"{name} has {a} + {b} = {x} {item}.", f"After finding more, {he} has {a} + {b} = {x}."]),
             rng.choice([f"Then {he} has {x} - {c} = {r} {item}.", f"{x} - {c} = {r}, so {name} has {r} {item}."])]
    return q, lines, r


def boxes_eat(rng):
    (name, he), = rng.sample(NAMES, 1)
    item = rng.choice(ITEMS)
    a, b = rng.randint(2, 5), rng.randint(2, 9)
    x = a * b
    c = rng.randint(1, min(9, x - 1))
    r = x - c
    q = (f"{name} has {a} boxes with {b} {item} in each box. {_cap(he)} loses {c} {item}. "
         f"How many {item} are left?")
    lines = [rng.choice([f"The boxes hold {a} * {b} = {x} {item}.", f"There are {a} * {b} = {x} {item}."]),
             rng.choice([f"After losing {c}, {x} - {c} = {r} {item} are left.", f"{x} - {c} = {r} {item} are left."])]
    return q, lines, r


def more_than_total(rng):
    (n1, _), (n2, _) = rng.sample(NAMES, 2)
    item = rng.choice(ITEMS)
    a, b = rng.randint(2, 9), rng.randint(1, 9)
    x = a + b
    z = a + x
    q = f"{n1} has {a} {item}. {n2} has {b} more {item} than {n1}. How many {item} do they have together?"
    lines = [rng.choice([f"{n2} has {a} + {b} = {x} {item}.", f"{n2} has {x} {item}, since {a} + {b} = {x}."]),
             rng.choice([f"Together they have {a} + {x} = {z} {item}.", f"In total {a} + {x} = {z} {item}."])]
    return q, lines, z


def buy_change(rng):
    (name, he), = rng.sample(NAMES, 1)
    good = rng.choice(GOODS)
    a, p = rng.randint(2, 5), rng.randint(2, 9)
    x = a * p
    bill = 50
    r = bill - x
    q = (f"{name} buys {a} {good} at {p} dollars each. {_cap(he)} pays with {bill} dollars. "
         f"How much change does {he} get?")
    lines = [rng.choice([f"The {good} cost {a} * {p} = {x} dollars.", f"{_cap(he)} spends {a} * {p} = {x} dollars."]),
             rng.choice([f"The change is {bill} - {x} = {r} dollars.", f"{_cap(he)} gets {bill} - {x} = {r} dollars back."])]
    return q, lines, r


def half_then_add(rng):
    (name, he), = rng.sample(NAMES, 1)
    item, box = rng.choice(ITEMS), rng.choice(CONTAINERS)
    a, b = 2 * rng.randint(2, 9), rng.randint(1, 9)
    x = a // 2
    z = x + b
    q = (f"A {box} has {a} {item}. {name} takes out half of them and then puts in {b} more. "
         f"How many {item} are in the {box} now?")
    lines = [rng.choice([f"Half of {a} is {a} / 2 = {x}.", f"{name} leaves {a} / 2 = {x} {item} in the {box}."]),
             rng.choice([f"After adding {b} there are {x} + {b} = {z} {item}.", f"Then {x} + {b} = {z} {item}."])]
    return q, lines, z


def share_left(rng):
    item = rng.choice(ITEMS)
    k, each = rng.randint(2, 5), rng.randint(2, 9)
    extra = rng.randint(1, 9)
    a = k * each + extra
    x = k * each
    q = (f"There are {a} {item}. {k} children take {each} {item} each. How many {item} are left?")
    lines = [rng.choice([f"The children take {k} * {each} = {x} {item}.", f"They take {k} * {each} = {x}."]),
             rng.choice([f"So {a} - {x} = {extra} {item} are left.", f"{a} - {x} = {extra} {item} are left."])]
    return q, lines, extra


TEMPLATES = {f.__name__: f for f in (find_then_give, boxes_eat, more_than_total, buy_change, half_then_add,
                                       share_left)}


def sample(rng: random.Random) -> dict:
    name = rng.choice(sorted(TEMPLATES))
    question, lines, answer = TEMPLATES[name](rng)
    response = " " + "\n".join(lines) + f"\n#### {answer}"
    return {"prompt": f"Question: {question}\nAnswer:", "response": response, "answer": str(answer),
            "template": name}


def generate(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [{"id": f"{TRACK}-{seed}-{i}", **sample(rng)} for i in range(n)]
