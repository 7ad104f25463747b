"""Batched DTW paths equal the per-matrix `dtw.dtw` paths (ties included) on padded batches, through
the C kernel and through the numpy path."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctkd_bench import native
from ctkd_bench.align import dtw_batch
from ctkd_bench.align.dtw import dtw
from ctkd_bench.align.dtw_batch import dtw_paths_batch

small_ints = st.integers(min_value=0, max_value=3)     # small range: many ties


@st.composite
def padded_batches(draw):
    sizes = draw(st.lists(st.tuples(st.integers(0, 7), st.integers(0, 7)), min_size=1, max_size=5))
    N = max(n for n, _ in sizes) + draw(st.integers(0, 2))
    M = max(m for _, m in sizes) + draw(st.integers(0, 2))
    cost = np.array(draw(st.lists(small_ints, min_size=len(sizes) * N * M, max_size=len(sizes) * N * M)),
                    dtype=np.float64).reshape(len(sizes), N, M)
    return cost, [n for n, _ in sizes], [m for _, m in sizes]


@pytest.fixture(params=["native", "numpy"])
def path_kind(request, monkeypatch):
    if request.param == "numpy":
        monkeypatch.setenv("CTKD_NATIVE", "0")
    elif native.library("dtw_paths", dtw_batch.KERNEL, dtw_batch.SIGNATURES) is None:
        pytest.skip("no C compiler here")
    return request.param


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=padded_batches())
def test_paths_equal_the_single_matrix_dtw(path_kind, case):
    cost, n, m = case
    on = dtw_paths_batch(cost, n, m)
    assert on.dtype == bool and on.shape == cost.shape
    for b in range(len(n)):
        want = np.zeros(cost.shape[1:], dtype=bool)
        for i, j in dtw(cost[b, :n[b], :m[b]])[1]:
            want[i, j] = True
        assert (on[b] == want).all()


def test_hand_path_with_ties_and_padding(path_kind):
    # all-zero costs: every move ties and the back-trace takes the diagonal while it can
    # (from the end cell), then walks along the border
    cost = np.zeros((2, 3, 4))
    on = dtw_paths_batch(cost, [3, 2], [2, 4])
    assert np.argwhere(on[0]).tolist() == [[0, 0], [1, 0], [2, 1]]
    assert np.argwhere(on[1]).tolist() == [[0, 0], [0, 1], [0, 2], [1, 3]]


def test_non_integer_costs_are_refused():
    with pytest.raises(ValueError, match="integer"):
        dtw_paths_batch(np.full((1, 2, 2), 0.5), [2], [2])


def test_sizes_beyond_the_padded_matrices_are_refused(path_kind):
    with pytest.raises(ValueError, match="within"):
        dtw_paths_batch(np.zeros((2, 3, 4)), [3, 4], [2, 4])
    with pytest.raises(ValueError, match="one per matrix"):
        dtw_paths_batch(np.zeros((2, 3, 4)), [3], [2])
