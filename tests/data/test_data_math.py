import re

from ctkd_bench.data.tasks import math as math_task
from ctkd_bench.evaluate.metrics import extract_final_answer


def solve(template: str, question: str) -> int:
    """Re-solve a question from the numbers in its text, independently of the generator."""
    n = [int(x) for x in re.findall(r"\d+", question)]
    if template == "find_then_give":
        a, b, c = n
        return a + b - c
    if template == "boxes_eat":
        a, b, c = n
        return a * b - c
    if template == "more_than_total":
        a, b = n
        return a + (a + b)
    if template == "buy_change":
        a, p, bill = n
        return bill - a * p
    if template == "half_then_add":
        a, b = n
        assert a % 2 == 0
        return a // 2 + b
    if template == "share_left":
        total, k, each = n
        return total - k * each
    raise AssertionError(template)


STEP = re.compile(r"(\d+(?: [-+*/] \d+)+) = (\d+)")


def check_step(expression: str, result: str) -> None:
    tokens = expression.split()
    value = int(tokens[0])
    for op, operand in zip(tokens[1::2], map(int, tokens[2::2])):
        if op == "/":
            assert value % operand == 0
            value //= operand
        else:
            value = {"+": value + operand, "-": value - operand, "*": value * operand}[op]
        assert value >= 0
    assert value == int(result), (expression, result)


def test_answers_and_every_step_are_correct():
    examples = math_task.generate(400, seed=3)
    assert {ex["template"] for ex in examples} == set(math_task.TEMPLATES)
    for ex in examples:
        question = ex["prompt"].removeprefix("Question: ").removesuffix("\nAnswer:")
        assert ex["prompt"] == f"Question: {question}\nAnswer:"
        assert 0 <= int(ex["answer"]) == solve(ex["template"], question) < 60
        assert ex["response"].startswith(" ") and "\n\n" not in ex["response"]
        *lines, final = ex["response"][1:].split("\n")
        assert final == f"#### {ex['answer']}"
        assert len(lines) == 2
        steps = [m for line in lines for m in STEP.findall(line)]
        assert len(steps) == len(lines)
        for expression, result in steps:
            check_step(expression, result)
            assert all(int(t) < 60 for t in expression.split()[::2])
        assert steps[-1][1] == ex["answer"]
        assert len(" ".join(lines).split()) <= 24
        assert extract_final_answer(ex["response"]) == ex["answer"]


def test_each_step_has_two_phrasings():
    """Paraphrased steps (dark knowledge): with numbers, names and nouns masked, every step of
    every template still comes in at least two forms."""
    nouns = [n for n, _ in math_task.NAMES] + list(math_task.ITEMS + math_task.GOODS + math_task.CONTAINERS)
    mask = re.compile(r"\b(" + "|".join(nouns + ["he", "she", "He", "She"]) + r")\b")
    shapes = {}
    for ex in math_task.generate(600, seed=5):
        for i, line in enumerate(ex["response"][1:].split("\n")[:2]):
            shapes.setdefault((ex["template"], i), set()).add(mask.sub("X", re.sub(r"\d+", "N", line)))
    assert len(shapes) == 2 * len(math_task.TEMPLATES)
    assert all(len(forms) == 2 for forms in shapes.values()), shapes


def test_seeded():
    assert math_task.generate(50, 1) == math_task.generate(50, 1) != math_task.generate(50, 2)
