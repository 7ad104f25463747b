import re

from ctkd_bench.data.tasks import math as math_task
from ctkd_bench.evaluate.metrics import extract_final_answer


def solve(template: str, question: str) -> int:
    """Re-solve a question from the numbers in its text, independently of the generator."""
    n = [int(x) for x in re.findall(r"\d+", question)]
    if template == "boxes_give":
        a, b, c = n
        return a * b - c
    if template == "shop_change":
        a, p, b, s, bill = n
        return bill - a * p - b * s
    if template == "work_hours":
        a, h, k = n
        return a * (h + k)
    if template == "share":
        a, b, c = n
        assert a * b % c == 0
        return a * b // c
    if template == "compare_total":
        a, b = n
        m = 2 if "twice" in question else 3
        return a + (a + b) + m * (a + b)
    if template == "half_then_buy":
        a, b = n
        return a // 2 + b
    if template == "save_spend":
        a, w, c = n
        return a * w - c
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
        assert int(ex["answer"]) == solve(ex["template"], question) >= 0
        assert ex["response"].startswith(" ") and "\n\n" not in ex["response"]
        *lines, final = ex["response"][1:].split("\n")
        assert final == f"#### {ex['answer']}"
        assert 2 <= len(lines) <= 4
        steps = [m for line in lines for m in STEP.findall(line)]
        assert len(steps) == len(lines)
        for expression, result in steps:
            check_step(expression, result)
        assert steps[-1][1] == ex["answer"]
        assert len(" ".join(lines).split()) <= 60
        assert extract_final_answer(ex["response"]) == ex["answer"]


def test_seeded():
    assert math_task.generate(50, 1) == math_task.generate(50, 1) != math_task.generate(50, 2)
