"""Interactions: construction, round trips, fingerprint, removal (against dense references)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recforget import Interactions
from recforget.data.errors import DataError, UnknownIdError
from recforget.data.generators import random_ratings


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user": ["b", "a", "a", "c", "b"],
            "item": [10, 20, 10, 30, 30],
            "rating": [4.0, 5.0, 3.0, 1.0, 2.0],
        }
    )


def test_from_frame_builds_sorted_vocabularies_and_csr():
    data = Interactions.from_frame(frame())
    assert (data.n_users, data.n_items, data.nnz) == (3, 3, 5)
    assert data.users.ids.tolist() == ["a", "b", "c"]
    assert data.items.ids.tolist() == [10, 20, 30]
    dense = data.to_csr().toarray()
    expected = np.array([[3.0, 5.0, 0.0], [4.0, 0.0, 2.0], [0.0, 0.0, 1.0]])
    np.testing.assert_array_equal(dense, expected)


def test_to_frame_round_trip_and_fingerprint_ignores_row_order():
    data = Interactions.from_frame(frame())
    again = Interactions.from_frame(data.to_frame())
    assert again.fingerprint() == data.fingerprint()
    shuffled = Interactions.from_frame(frame().sample(frac=1.0, random_state=3))
    assert shuffled.fingerprint() == data.fingerprint()
    changed = frame()
    changed.loc[0, "rating"] = 4.5
    assert Interactions.from_frame(changed).fingerprint() != data.fingerprint()


def test_duplicates_are_refused_by_default_and_named():
    df = pd.concat([frame(), frame().iloc[[2]]], ignore_index=True)
    with pytest.raises(DataError, match="'a'") as err:
        Interactions.from_frame(df, source="r.csv", first_line=2)
    assert "r.csv" in str(err.value)
    summed = Interactions.from_frame(df, duplicates="sum")
    assert summed.nnz == 5
    assert summed.to_csr()[0, 0] == 6.0


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_ratings_are_refused(bad):
    df = frame()
    df.loc[3, "rating"] = bad
    with pytest.raises(DataError, match="rating"):
        Interactions.from_frame(df)


def test_wrong_column_name_is_named():
    with pytest.raises((DataError, KeyError, ValueError), match="usr"):
        Interactions.from_frame(frame(), user_col="usr")


def test_interactions_are_immutable():
    data = Interactions.from_frame(frame())
    with pytest.raises(ValueError):
        data.values[0] = 9.0
    with pytest.raises(ValueError):
        data.indices[0] = 1


def test_transpose_matches_scipy():
    data = Interactions.from_csr(random_ratings(25, 15, 0.3, seed=1))
    indptr, rows, values, perm = data.transpose_arrays()
    T = data.to_csr().T.tocsr()
    T.sort_indices()
    np.testing.assert_array_equal(indptr, T.indptr)
    np.testing.assert_array_equal(rows, T.indices)
    np.testing.assert_array_equal(values, T.data)
    np.testing.assert_array_equal(data.values[perm], values)


@pytest.mark.parametrize(
    "request_kind", ["pairs", "users", "items", "mixed"], ids=lambda s: f"remove-{s}"
)
def test_remove_matches_a_dense_reference(request_kind):
    R = random_ratings(25, 15, 0.3, seed=2)
    data = Interactions.from_csr(R)
    data.transpose_arrays()  # cached: the removal derives the new transpose from it
    rng = np.random.default_rng(0)
    u, i = np.nonzero(R)
    pick = rng.choice(len(u), 6, replace=False)
    pairs = list(zip(u[pick].tolist(), i[pick].tolist(), strict=True))
    users, items = [3, 7], [4]
    kwargs = {
        "pairs": {"pairs": pairs},
        "users": {"users": users},
        "items": {"items": items},
        "mixed": {"pairs": pairs, "users": users, "items": items},
    }[request_kind]
    removal = data.remove(**kwargs)

    expected = R.copy()
    for a, b in kwargs.get("pairs", []):
        expected[a, b] = 0
    keep_u = np.setdiff1d(np.arange(25), kwargs.get("users", []))
    keep_i = np.setdiff1d(np.arange(15), kwargs.get("items", []))
    expected = expected[np.ix_(keep_u, keep_i)]
    np.testing.assert_array_equal(removal.data.to_csr().toarray(), expected)
    assert removal.n_removed == np.count_nonzero(R) - np.count_nonzero(expected)
    assert removal.data.users.ids.tolist() == keep_u.tolist()
    np.testing.assert_array_equal(removal.user_map[keep_u], np.arange(len(keep_u)))
    assert (removal.user_map[kwargs.get("users", [])] == -1).all()

    fresh = Interactions.from_csr(expected)
    for derived, sorted_ in zip(
        removal.data.transpose_arrays(), fresh.transpose_arrays(), strict=True
    ):
        np.testing.assert_array_equal(derived, sorted_)


def test_remove_reports_affected_rows_and_absent_pairs():
    data = Interactions.from_frame(frame())
    removal = data.remove(pairs=[("a", 20), ("c", 10)])  # ("c", 10) is not an interaction
    assert removal.n_removed == 1
    assert removal.absent_pairs == 1
    assert removal.affected_users.tolist() == [0]
    assert removal.affected_items.tolist() == [1]


def test_remove_unknown_ids_error_lists_them_or_ignores():
    data = Interactions.from_frame(frame())
    with pytest.raises(UnknownIdError, match="'zed'"):
        data.remove(users=["zed"])
    removal = data.remove(users=["zed", "a"], missing="ignore")
    assert removal.unknown["users"] == ["zed"]
    assert removal.data.users.ids.tolist() == ["b", "c"]
    assert data.nnz == 5  # the original is untouched


def test_empty_removal_is_a_noop():
    data = Interactions.from_frame(frame())
    removal = data.remove()
    assert removal.is_noop
    assert removal.data.fingerprint() == data.fingerprint()
