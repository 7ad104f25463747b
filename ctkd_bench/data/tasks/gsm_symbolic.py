"""Generator ``gsm-symbolic`` for the ``math`` task: GSM8K-style problems from reasoning-gym.

reasoning-gym (pip ``reasoning-gym``, Apache-2.0) ships GSM-Symbolic templates:
each ``generate_<k>(rng, difficulty)`` draws the numbers and names of one GSM8K
problem from the `random.Random` it is given and returns the question with a
chain-of-thought rationale ending in ``#### N``. Same prompt/response shape as
the built-in ``math`` generator (``"Question: ...\\nAnswer:"``, response
``" <rationale>\\n#### N"``), so the metric (exact match of the final answer)
is unchanged. Deterministic in the caller's generator for a given
reasoning-gym version (the templates are its code; pinned in the ``smol``
extra). ``template`` records ``gsm-<k>``.

Templates used: reasoning-gym's own list of working ones (``tasks_ok``). A
template that still raises for some draw (one does, rarely: a number needing
more decimals than its formatter allows) is skipped: another template is drawn
from the same stream, so the sequence stays deterministic.
"""
from __future__ import annotations

import random
from functools import lru_cache

TRACK = "math"
MAX_RETRIES = 50


@lru_cache(maxsize=1)
def templates() -> tuple[tuple[int, object], ...]:
    """``((k, generate_k), ...)`` for reasoning-gym's working templates, sorted by k."""
    try:
        from reasoning_gym.arithmetic.gsm_symbolic import generators_00_49, generators_50_99, gsm_symbolic
    except ImportError:
        from ...errors import UsageError
        raise UsageError("the 'gsm-symbolic' generator needs reasoning-gym "
                         "(pip install reasoning-gym, or ctkd-bench[smol])") from None
    found = {}
    for module in (generators_00_49, generators_50_99):
        for attr in dir(module):
            if attr.startswith("generate_") and attr[len("generate_"):].isdigit():
                found[int(attr[len("generate_"):])] = getattr(module, attr)
    return tuple((k, found[k]) for k in sorted(gsm_symbolic.tasks_ok) if k in found)


def sample(rng: random.Random) -> dict:
    table = templates()
    for _ in range(MAX_RETRIES):
        k, make = table[rng.randrange(len(table))]
        try:
            item = make(rng, 1.0)
        except Exception:       # a template that fails on this draw: draw another (see module docstring)
            continue
        cot = item["metadata"]["answer_cot"].strip()
        return {"prompt": f"Question: {item['question'].strip()}\nAnswer:", "response": " " + cot,
                "answer": str(item["answer"]).strip(), "template": f"gsm-{k}"}
    raise RuntimeError(f"gsm-symbolic: {MAX_RETRIES} template draws in a row failed")


def generate(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [{"id": f"gsm-symbolic-{seed}-{i}", **sample(rng)} for i in range(n)]
