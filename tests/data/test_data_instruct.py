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


# -- noisy student labels (a track's `noise`) -------------------------------------------------------
def test_corrupt_reverses_an_answer_of_several_words_and_swaps_a_one_word_answer():
    import random
    rng = random.Random(0)
    many = {"prompt": "Instruction: Copy the input.\nInput: cat red moon\nAnswer:", "response": " cat red moon",
            "answer": "cat red moon", "task": "copy_words", "id": "x"}
    assert instruct.corrupt(many, rng) == {**many, "response": " moon red cat", "answer": "moon red cat"}
    one = {"prompt": "Instruction: Give the first word.\nInput: cat red cat moon\nAnswer:", "response": " cat",
           "answer": "cat", "task": "first_word", "id": "y"}
    seen = {instruct.corrupt(one, rng)["answer"] for _ in range(50)}
    assert seen == {"red", "moon"}                       # another word of the input, never the answer
    lone = {**one, "prompt": "Instruction: Give the first word.\nInput: cat cat\nAnswer:"}
    assert instruct.corrupt(lone, rng) == lone           # no other word to pick
    palindrome = {**many, "response": " cat red cat", "answer": "cat red cat"}
    assert instruct.corrupt(palindrome, rng) == palindrome


def test_corrupt_share_corrupts_exactly_that_share_seeded_in_place_order():
    import pytest

    from ctkd_bench.data.tasks import corrupt_share, noisy_tasks, split_examples
    train = split_examples("instruct", {"train": 200}, 1)["train"]
    noisy = corrupt_share("instruct", train, 0.5, 7)
    assert len(noisy) == 200 and [e["id"] for e in noisy] == [e["id"] for e in train]
    changed = [i for i, (a, b) in enumerate(zip(train, noisy)) if a != b]
    assert 90 <= len(changed) <= 100                     # 100 chosen; the few palindromes stay right
    for i in changed:
        assert noisy[i]["prompt"] == train[i]["prompt"] and noisy[i]["response"] != train[i]["response"]
        assert noisy[i]["response"] == " " + noisy[i]["answer"]
    assert corrupt_share("instruct", train, 0.5, 7) == noisy
    assert corrupt_share("instruct", train, 0.5, 8) != noisy
    assert corrupt_share("instruct", train, 0.0, 7) == train
    assert "instruct" in noisy_tasks() and "math" not in noisy_tasks()
    with pytest.raises(ValueError, match="corrupt"):
        corrupt_share("math", split_examples("math", {"train": 4}, 1)["train"], 0.5, 7)


def test_the_student_gets_the_noisy_answers_and_the_teacher_the_clean_ones(tmp_path):
    import copy

    import yaml

    from ctkd_bench.run.environment import SuiteEnvironment
    from ctkd_bench.specs import builtin_suite_dir, parse_suite
    data = yaml.safe_load((builtin_suite_dir() / "tiny.yaml").read_text())
    clean = copy.deepcopy(data)
    clean["tracks"]["instruct"]["noise"] = 0
    data["tracks"]["instruct"]["noise"] = 0.25
    noisy_env = SuiteEnvironment(parse_suite(data, profile="test"), tmp_path)
    clean_env = SuiteEnvironment(parse_suite(clean, profile="test"), tmp_path)
    track = noisy_env.suite.track("instruct")
    student, right = noisy_env.student_train(track), clean_env.student_train(clean_env.suite.track("instruct"))
    assert [e["prompt"] for e in student] == [e["prompt"] for e in right]
    chosen = round(0.25 * track.train)
    assert chosen - 3 <= sum(a != b for a, b in zip(student, right)) <= chosen
    assert noisy_env.splits(track)["train"][:track.train] == right        # the teacher's data stays clean
    assert noisy_env.track("instruct").train == student                    # what the cells train on
