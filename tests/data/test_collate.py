"""`pad_side`: padded ids, mask, labels, offsets and token strings, on either side."""
import pytest
import torch

from ctkd_bench.data.collate import Encoded, pad_side
from ctkd_bench.defaults import IGNORE_INDEX


class FakeTokenizer:
    pad_token_id, eos_token_id = 9, 8

    def __init__(self):
        self.calls = 0

    def convert_ids_to_tokens(self, ids):
        self.calls += 1
        return [f"t{i}" for i in ids]


def examples():
    return [Encoded([1, 2, 3], [(0, 0), (0, 2), (2, 5)], [IGNORE_INDEX, 2, 3]),
            Encoded([4], [(0, 3)], [4])]


def test_right_padding_by_hand():
    side = pad_side(examples(), FakeTokenizer(), "right")
    assert side.input_ids.tolist() == [[1, 2, 3], [4, 9, 9]]
    assert side.attention_mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert side.labels.tolist() == [[IGNORE_INDEX, 2, 3], [4, IGNORE_INDEX, IGNORE_INDEX]]
    # padding sits at the end of the text: the empty span at its last character
    assert side.offsets.tolist() == [[[0, 0], [0, 2], [2, 5]], [[0, 3], [3, 3], [3, 3]]]
    assert side.tokens == [["t1", "t2", "t3"], ["t4"]]
    assert side.input_ids.dtype == side.offsets.dtype == torch.long


def test_left_padding_by_hand():
    side = pad_side(examples(), FakeTokenizer(), "left")
    assert side.input_ids.tolist() == [[1, 2, 3], [9, 9, 4]]
    assert side.attention_mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert side.labels.tolist() == [[IGNORE_INDEX, 2, 3], [IGNORE_INDEX, IGNORE_INDEX, 4]]
    assert side.offsets.tolist() == [[[0, 0], [0, 2], [2, 5]], [[0, 0], [0, 0], [0, 3]]]
    assert side.tokens == [["t1", "t2", "t3"], ["t4"]]


def test_encoder_rows_have_no_labels_and_tokens_are_converted_once():
    rows = [Encoded([5, 6], [(0, 1), (2, 3)], None), Encoded([7], [(0, 4)], None)]
    tok = FakeTokenizer()
    first = pad_side(rows, tok)
    again = pad_side(rows, tok)
    assert first.labels is None and again.labels is None
    assert tok.calls == 2                       # one per example, not per batch it appears in
    assert again.tokens == [["t5", "t6"], ["t7"]]


@pytest.mark.parametrize("side", ["right", "left"])
def test_real_positions_hold_each_example_in_order(side):
    rows = [Encoded(list(range(n)), [(i, i + 1) for i in range(n)], list(range(n))) for n in (4, 1, 3)]
    padded = pad_side(rows, FakeTokenizer(), side)
    for b, e in enumerate(rows):
        real = padded.attention_mask[b].bool()
        assert padded.input_ids[b, real].tolist() == e.ids
        assert padded.labels[b, real].tolist() == e.labels
        assert [tuple(o) for o in padded.offsets[b, real].tolist()] == e.spans


def test_rows_without_tokens_give_empty_tensors():
    side = pad_side([Encoded([], [], None), Encoded([], [], None)], FakeTokenizer())
    assert side.input_ids.shape == (2, 0) and side.offsets.shape == (2, 0, 2)
    assert side.tokens == [[], []]
