"""Top-k selection against a full stable sort."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from recforget.kernels.topk import topk_rows


def _reference(scores, k):
    out = []
    for row in scores:
        order = sorted(range(len(row)), key=lambda j: (-row[j], j))
        out.append(order[:k])
    return np.array(out, dtype=np.int64).reshape(len(scores), -1)


@settings(max_examples=200, deadline=None)
@given(
    scores=hnp.arrays(
        np.float64,
        st.tuples(st.integers(1, 6), st.integers(1, 9)),
        elements=st.sampled_from([-np.inf, 0.0, 0.5, 1.0, 2.0, np.inf]),
    ),
    k=st.integers(1, 9),
)
def test_topk_equals_stable_sort_with_ties(scores, k):
    k = min(k, scores.shape[1])
    idx, val = topk_rows(scores, k)
    np.testing.assert_array_equal(idx, _reference(scores, k))
    np.testing.assert_array_equal(val, np.take_along_axis(scores, idx, axis=1))


def test_tie_at_the_cut_goes_to_the_lower_index():
    idx, _ = topk_rows(np.array([[-np.inf, -np.inf, 0.0, 0.0, 1.0]]), 2)
    assert idx.tolist() == [[4, 2]]
