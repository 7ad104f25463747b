"""Track ``math``: GSM8K-style word problems with a chain-of-thought rationale.

Prompt ``"Question: <problem>\\nAnswer:"``; response ``" <line>\\n<line>...\\n#### <N>"``:
2-4 rationale lines, one arithmetic step each ("a * b = c"), then the final
answer. Seven templates, small numbers (operands <= 12 mostly, answers < 200),
every intermediate a non-negative integer. Metric: exact match of
`metrics.extract_final_answer` against ``answer``.

Dark knowledge: each step has two or three equally valid phrasings, and one
template has two valid solution paths (per day, or total hours first), so the
teacher's distribution over rationale tokens is genuinely spread while the
numbers are forced. Names and items vary freely.

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
WORKERS = (("baker", "cakes"), ("potter", "bowls"), ("cook", "pies"), ("tailor", "shirts"))
CONTAINERS = ("jar", "basket", "box", "bag")
THINGS = ("bike", "game", "lamp", "backpack", "kite")


def _people(rng: random.Random, k: int) -> list[tuple[str, str]]:
    return rng.sample(NAMES, k)


def _cap(word: str) -> str:
    return word[:1].upper() + word[1:]


def boxes_give(rng):
    (name, he), (other, _) = _people(rng, 2)
    item = rng.choice(ITEMS)
    a, b = rng.randint(2, 9), rng.randint(2, 12)
    x = a * b
    c = rng.randint(1, x - 1)
    r = x - c
    q = (f"{name} has {a} boxes of {item}. Each box holds {b} {item}. {_cap(he)} gives {c} {item} "
         f"to {other}. How many {item} does {name} have left?")
    lines = [rng.choice([f"{name} has {a} * {b} = {x} {item}.",
                         f"There are {a} * {b} = {x} {item} in the boxes."]),
             rng.choice([f"After giving away {c}, {he} has {x} - {c} = {r} {item} left.",
                         f"{x} - {c} = {r}, so {name} has {r} {item} left."])]
    return q, lines, r


def shop_change(rng):
    (name, he), = _people(rng, 1)
    g1, g2 = rng.sample(GOODS, 2)
    while True:
        a, b, p, s = rng.randint(2, 6), rng.randint(2, 6), rng.randint(2, 9), rng.randint(2, 9)
        x, y = a * p, b * s
        z = x + y
        if z < 100:
            break
    bill = 50 if z < 50 else 100
    r = bill - z
    q = (f"{name} buys {a} {g1} at {p} dollars each and {b} {g2} at {s} dollars each. "
         f"{_cap(he)} pays with {bill} dollars. How much change does {he} get?")
    lines = [f"The {g1} cost {a} * {p} = {x} dollars.",
             f"The {g2} cost {b} * {s} = {y} dollars.",
             rng.choice([f"That is {x} + {y} = {z} dollars.", f"{_cap(he)} spends {x} + {y} = {z} dollars."]),
             rng.choice([f"The change is {bill} - {z} = {r} dollars.", f"{_cap(he)} gets {bill} - {z} = {r} dollars back."])]
    return q, lines, r


def work_hours(rng):
    worker, made = rng.choice(WORKERS)
    he = rng.choice(("he", "she"))
    a, h, k = rng.randint(2, 9), rng.randint(2, 8), rng.randint(2, 8)
    z = a * (h + k)
    q = (f"A {worker} makes {a} {made} an hour. {_cap(he)} works {h} hours on Monday and {k} hours "
         f"on Tuesday. How many {made} does {he} make?")
    if rng.random() < 0.5:   # two valid solution paths
        lines = [f"On Monday {he} makes {a} * {h} = {a * h} {made}.",
                 f"On Tuesday {he} makes {a} * {k} = {a * k} {made}.",
                 rng.choice([f"In total {a * h} + {a * k} = {z} {made}.", f"That is {a * h} + {a * k} = {z} {made}."])]
    else:
        lines = [f"{_cap(he)} works {h} + {k} = {h + k} hours.",
                 rng.choice([f"So {he} makes {a} * {h + k} = {z} {made}.", f"That is {a} * {h + k} = {z} {made}."])]
    return q, lines, z


def share(rng):
    item = rng.choice(ITEMS)
    while True:
        a, b = rng.randint(2, 9), rng.randint(2, 12)
        x = a * b
        divisors = [c for c in range(2, 10) if x % c == 0 and x // c >= 2]
        if divisors:
            break
    c = rng.choice(divisors)
    r = x // c
    q = (f"There are {a} bags with {b} {item} in each bag. The {item} are shared equally among {c} "
         f"children. How many {item} does each child get?")
    lines = [rng.choice([f"There are {a} * {b} = {x} {item}.", f"The bags hold {a} * {b} = {x} {item}."]),
             rng.choice([f"Each child gets {x} / {c} = {r} {item}.", f"{x} / {c} = {r}, so each child gets {r} {item}."])]
    return q, lines, r


def compare_total(rng):
    (n1, _), (n2, _), (n3, _) = _people(rng, 3)
    item = rng.choice(ITEMS)
    a, b = rng.randint(2, 12), rng.randint(1, 9)
    m, m_word = rng.choice(((2, "twice"), (3, "three times")))
    x = a + b
    y = m * x
    z = a + x + y
    q = (f"{n1} has {a} {item}. {n2} has {b} more than {n1}. {n3} has {m_word} as many as {n2}. "
         f"How many {item} do they have together?")
    lines = [f"{n2} has {a} + {b} = {x} {item}.",
             f"{n3} has {m} * {x} = {y} {item}.",
             rng.choice([f"Together they have {a} + {x} + {y} = {z} {item}.", f"In total {a} + {x} + {y} = {z} {item}."])]
    return q, lines, z


def half_then_buy(rng):
    (name, he), = _people(rng, 1)
    item, box = rng.choice(ITEMS), rng.choice(CONTAINERS)
    a, b = 2 * rng.randint(2, 20), rng.randint(2, 12)
    x = a // 2
    z = x + b
    q = (f"A {box} has {a} {item}. {name} takes out half of them and then puts in {b} more. "
         f"How many {item} are in the {box} now?")
    lines = [rng.choice([f"{name} takes out {a} / 2 = {x} {item}.", f"Half of {a} is {a} / 2 = {x}."]),
             f"{a} - {x} = {x} {item} are left.",
             rng.choice([f"After adding {b} there are {x} + {b} = {z} {item}.", f"Then {x} + {b} = {z} {item}."])]
    return q, lines, z


def save_spend(rng):
    (name, he), = _people(rng, 1)
    thing = rng.choice(THINGS)
    a, w = rng.randint(2, 12), rng.randint(2, 8)
    x = a * w
    c = rng.randint(1, x - 1)
    r = x - c
    q = (f"{name} saves {a} dollars every week for {w} weeks. Then {he} spends {c} dollars on a {thing}. "
         f"How many dollars does {name} have left?")
    lines = [rng.choice([f"{name} saves {a} * {w} = {x} dollars.", f"In {w} weeks {he} saves {a} * {w} = {x} dollars."]),
             rng.choice([f"After buying the {thing}, {he} has {x} - {c} = {r} dollars.",
                         f"{x} - {c} = {r}, so {r} dollars are left."])]
    return q, lines, r


TEMPLATES = {f.__name__: f for f in (boxes_give, shop_change, work_hours, share, compare_total,
                                       half_then_buy, save_spend)}


def sample(rng: random.Random) -> dict:
    name = rng.choice(sorted(TEMPLATES))
    question, lines, answer = TEMPLATES[name](rng)
    response = " " + "\n".join(lines) + f"\n#### {answer}"
    return {"prompt": f"Question: {question}\nAnswer:", "response": response, "answer": str(answer),
            "template": name}


def generate(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [{"id": f"{TRACK}-{seed}-{i}", **sample(rng)} for i in range(n)]
