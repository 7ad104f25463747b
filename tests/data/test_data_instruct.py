from ctkd_bench.data.tasks import instruct

NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven"]


def expected(task: str, target: str, text: str) -> str:
    """The correct output, recomputed from the prompt text alone."""
    w = text.split()
    if task == "copy_words":
        return text
    if task == "reverse_words":
        return " ".join(w[::-1])
    if task == "double_words":
        return " ".join(f"{x} {x}" for x in w)
    if task == "first_word":
        return w[0]
    if task == "second_word":
        return w[1]
    if task == "last_word":
        return w[-1]
    if task == "next_word":
        assert w.count(target) == 1
        return w[w.index(target) + 1]
    if task == "count_words":
        return NUMBER_WORDS[len(w)]
    if task == "remove_word":
        return " ".join(x for x in w if x != target) or "nothing"
    if task == "swap_ends":
        return " ".join([w[-1]] + w[1:-1] + [w[0]])
    raise AssertionError(task)


def test_responses_are_correct():
    examples = instruct.generate(600, seed=4)
    assert {ex["task"] for ex in examples} == set(instruct.TASKS)
    for ex in examples:
        head, input_line, tail = ex["prompt"].split("\n")
        assert head.startswith("Instruction: ") and input_line.startswith("Input: ") and tail == "Answer:"
        instruction, text = head.removeprefix("Instruction: "), input_line.removeprefix("Input: ")
        target = instruction.split('"')[1] if '"' in instruction else ""
        phrasings = [p.format(w=target) for p in instruct.TASKS[ex["task"]][1]]
        assert instruction in phrasings
        if target:
            assert target in text.split()
        assert set(text.split()) <= set(instruct.WORDS)
        assert ex["response"] == " " + ex["answer"] == " " + expected(ex["task"], target, text)
        assert "\n" not in ex["response"] and 1 <= len(ex["answer"].split()) <= 12


def test_seeded():
    assert instruct.generate(50, 1) == instruct.generate(50, 1) != instruct.generate(50, 2)
