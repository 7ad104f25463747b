from ctkd_bench.data.tasks import instruct


def expected(task: str, target: str, text: str) -> str:
    """The correct output, recomputed from the prompt text alone."""
    w = text.split()
    if task == "reverse_words":
        return " ".join(w[::-1])
    if task == "sort_words":
        return " ".join(sorted(w))
    if task == "sort_numbers_up":
        return " ".join(map(str, sorted(map(int, w))))
    if task == "sort_numbers_down":
        return " ".join(map(str, sorted(map(int, w), reverse=True)))
    if task == "uppercase":
        return text.upper()
    if task == "capitalise":
        return " ".join(x[0].upper() + x[1:] for x in w)
    if task == "count_words":
        return str(len(w))
    if task == "count_word":
        return str(sum(x == target for x in w))
    if task == "first_word":
        return w[0]
    if task == "last_word":
        return w[-1]
    if task == "largest_number":
        return str(max(map(int, w)))
    if task == "list_numbers":
        return " ".join(x for x in w if x.isdigit())
    if task == "remove_word":
        return " ".join(x for x in w if x != target) or "nothing"
    if task == "spell_word":
        return " ".join(text)
    if task == "add_numbers":
        return str(sum(map(int, w)))
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
        assert ex["response"] == " " + ex["answer"] == " " + expected(ex["task"], target, text)
        assert "\n" not in ex["response"] and 1 <= len(ex["answer"].split()) <= 15


def test_seeded():
    assert instruct.generate(50, 1) == instruct.generate(50, 1) != instruct.generate(50, 2)
