"""MutableInteractions: in-place removals and appends agree with the immutable Interactions."""

from __future__ import annotations

import numpy as np
import pytest

from recforget import Interactions
from recforget.data.errors import UnknownIdError
from recforget.data.generators import random_ratings
from recforget.data.mutable import MutableInteractions


def _data(seed=0, m=40, n=25) -> Interactions:
    R = random_ratings(m, n, 0.3, seed=seed)
    base = Interactions.from_csr(R, users=[f"u{k}" for k in range(m)], items=np.arange(n) * 10)
    ts = np.random.default_rng(seed).integers(0, 10**6, base.nnz)
    return Interactions(base.indptr, base.indices, base.values, base.users, base.items, ts)


def _same(a: Interactions, b: Interactions) -> None:
    assert a.users == b.users and a.items == b.items
    np.testing.assert_array_equal(a.indptr, b.indptr)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.timestamps, b.timestamps)
    assert a.fingerprint() == b.fingerprint()


def _check_structure(view: MutableInteractions) -> None:
    """Both orientations describe the same slots; counts match the live flags."""
    rows = np.repeat(np.arange(view.n_users), np.diff(view.indptr))
    t_cols = np.repeat(np.arange(view.n_items), np.diff(view.t_indptr))
    np.testing.assert_array_equal(view.t_twin[view.twin], np.arange(view.capacity))
    np.testing.assert_array_equal(view.t_indices[view.twin], rows)
    np.testing.assert_array_equal(t_cols[view.twin], view.indices)
    np.testing.assert_array_equal(
        np.bincount(rows[view.live], minlength=view.n_users), view.user_counts
    )
    np.testing.assert_array_equal(
        np.bincount(view.indices[view.live], minlength=view.n_items), view.item_counts
    )
    assert not view.live[np.isin(rows, np.flatnonzero(~view.user_alive))].any()


def test_round_trip():
    data = _data()
    view = MutableInteractions.from_interactions(data)
    _same(view.to_interactions(), data)
    _check_structure(view)
    assert view.nnz == data.nnz and view.capacity == data.nnz


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_removals_match_interactions_remove(seed):
    rng = np.random.default_rng(seed)
    data = _data(seed)
    ref = data
    view = MutableInteractions.from_interactions(data)
    for step in range(25):
        frame = ref.to_frame()
        kind = rng.integers(3)
        pairs, users, items = [], [], []
        if kind == 0 and len(frame):
            rows = rng.choice(len(frame), min(3, len(frame)), replace=False)
            pairs = [(frame.user[r], frame.item[r]) for r in rows]
            pairs.append((ref.users.ids[0], ref.items.ids[-1]))  # maybe absent
        elif kind == 1 and ref.n_users > 2:
            users = [ref.users.ids[rng.integers(ref.n_users)]]
        elif ref.n_items > 2:
            items = [ref.items.ids[rng.integers(ref.n_items)]]
        expected = ref.remove(pairs=pairs, users=users, items=items)
        got = view.remove(pairs=pairs, users=users, items=items)
        assert got.n_removed == expected.n_removed
        assert got.absent_pairs == expected.absent_pairs
        assert sorted(view.users.ids[got.dropped_users]) == sorted(
            ref.users.ids[expected.dropped_users]
        )
        ref = expected.data
        _same(view.to_interactions(), ref)
        _check_structure(view)
        if step == 12:  # compaction in the middle keeps everything
            before = view.capacity
            view.compact()
            assert view.capacity == ref.nnz <= before
            _same(view.to_interactions(), ref)
            _check_structure(view)


def test_removed_ids_become_unknown():
    data = _data()
    view = MutableInteractions.from_interactions(data)
    view.remove(users=["u3"])
    with pytest.raises(UnknownIdError, match="u3"):
        view.remove(users=["u3"])
    out = view.remove(users=["u3", "nobody"], missing="ignore")
    assert out.is_noop and out.unknown["users"] == ["u3", "nobody"]


def test_user_map_follows_removals():
    data = _data()
    view = MutableInteractions.from_interactions(data)
    view.remove(users=["u1", "u7"], items=[30])
    ref = data.remove(users=["u1", "u7"], items=[30])
    np.testing.assert_array_equal(view.user_map(), ref.user_map)
    np.testing.assert_array_equal(view.item_map(), ref.item_map)


def test_appends_reuse_tombstones_and_grow_with_slack(rng):
    data = _data(3)
    view = MutableInteractions.from_interactions(data)
    frame = data.to_frame()
    # remove a pair, then put it back with another value: its own slot comes back
    u, i = frame.user[5], frame.item[5]
    pos = view.find(*view.users.index([u]), *view.items.index([i]))
    view.remove(pairs=[(u, i)])
    assert view.append(u, i, 4.5, timestamp=7) == pos
    frame.loc[5, "rating"] = 4.5
    frame.loc[5, "timestamp"] = 7
    # new pairs: no free slot, so the view compacts with slack and then fills slots in place
    dense = data.to_csr().toarray()
    empty = np.argwhere(dense == 0)
    new = empty[rng.choice(len(empty), 30, replace=False)]
    for k, (r, c) in enumerate(new):
        view.append(data.users.ids[r], data.items.ids[c], float(k + 1), timestamp=k)
        _check_structure(view)
    assert view.capacity > view.nnz  # slack left for more
    extra = {
        "user": data.users.ids[new[:, 0]],
        "item": data.items.ids[new[:, 1]],
        "rating": np.arange(1, 31, dtype=float),
        "timestamp": np.arange(30),
    }
    import pandas as pd

    full = pd.concat([frame, pd.DataFrame(extra)], ignore_index=True)
    expected = Interactions.from_frame(
        full, timestamp_col="timestamp", users=data.users, items=data.items
    )
    _same(view.to_interactions(), expected)
    with pytest.raises(ValueError, match="already present"):
        view.append(data.users.ids[new[0, 0]], data.items.ids[new[0, 1]])
    with pytest.raises(UnknownIdError):
        view.append("nobody", data.items.ids[0])
    # removals after appends still agree
    view.remove(users=[data.users.ids[new[0, 0]]])
    expected = expected.remove(users=[data.users.ids[new[0, 0]]]).data
    _same(view.to_interactions(), expected)
    view.compact()
    _same(view.to_interactions(), expected)


def test_should_compact_after_many_removals():
    data = _data()
    view = MutableInteractions.from_interactions(data)
    assert not view.should_compact()
    view.remove(users=list(data.users.ids[: data.n_users * 2 // 3]))
    assert view.should_compact(0.5)
    comp = view.compact()
    assert comp.capacity == view.nnz and not view.should_compact()
