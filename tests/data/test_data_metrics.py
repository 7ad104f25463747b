import math

import pytest

from ctkd_bench.evaluate.metrics import (accuracy, answer_match, bits_per_byte, exact_match, extract_final_answer,
                                         lcs_length, normalize_number, rouge_l)


def test_rouge_l_hand_values():
    # LCS "the cat on the mat" = 5; P = 5/6, R = 5/5, F1 = 10/11
    assert rouge_l("the cat sat on the mat", "the cat on the mat") == pytest.approx(10 / 11)
    assert rouge_l("a b c d", "a c d e") == pytest.approx(0.75)          # LCS a c d
    assert rouge_l("b a", "a b") == pytest.approx(0.5)                   # order matters: LCS 1
    assert rouge_l("x y", "x y") == 1.0
    assert rouge_l("x", "y") == 0.0 and rouge_l("", "y") == 0.0 and rouge_l("x", "") == 0.0
    assert rouge_l("RED", "red") == 0.0                                    # case-sensitive


def test_lcs_length_classic_example():
    assert lcs_length(list("ABCBDAB"), list("BDCABA")) == 4
    assert lcs_length(list("BDCABA"), list("ABCBDAB")) == 4
    assert lcs_length([], list("abc")) == 0


def test_extract_final_answer():
    assert extract_final_answer(" 3 * 4 = 12 apples.\n12 - 5 = 7 left.\n#### 7") == "7"
    assert extract_final_answer("#### 3\n#### 1,234") == "1234"
    assert extract_final_answer("so the answer is $7.") == "7"
    assert extract_final_answer("we get 3 and then 5 apples") == "5"
    assert extract_final_answer("####12.50") == "12.5"
    assert extract_final_answer("#### -3") == "-3"
    assert extract_final_answer("no digits here") is None
    assert normalize_number("4.0") == "4" and normalize_number("$1,000") == "1000"


def test_exact_and_answer_match():
    assert exact_match("  Hello   world. ", "Hello world") == 1.0
    assert exact_match("hello world", "Hello world") == 0.0
    assert exact_match("a b", "a  b\n") == 1.0
    assert answer_match(" 2 + 2 = 4\n#### 4", "4") == 1.0
    assert answer_match(" 2 + 2 = 4\n#### 5", "4") == 0.0
    assert answer_match("no answer", "4") == 0.0


def test_accuracy_and_bits_per_byte():
    assert accuracy([0, 1, 2], [0, 1, 1]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        accuracy([0], [0, 1])
    assert bits_per_byte(8 * math.log(2), 4) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        bits_per_byte(1.0, 0)
