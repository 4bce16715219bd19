"""Transforms (implicit, filters, k-core) and splits (seeded, disjoint, covering)."""

from __future__ import annotations

import numpy as np
import pytest

from recforget.data import (
    Interactions,
    drop_empty,
    filter_values,
    k_core,
    leave_k_out,
    random_holdout,
    temporal,
    temporal_leave_k_out,
    to_implicit,
)


@pytest.fixture
def rated() -> Interactions:
    """60 users x 40 items, ratings 1..5, distinct timestamps, some users with 1-2 entries."""
    r = np.random.default_rng(3)
    dense = (r.random((60, 40)) < 0.2) * r.integers(1, 6, (60, 40))
    dense[:5] = 0
    dense[:5, :2] = 4  # five users with exactly two entries
    dense[5, 1:] = 0
    dense[5, 0] = 5  # one user with one entry
    u, i = np.nonzero(dense)
    ts = r.permutation(len(u)) * 10 + 1_000_000
    ids = [f"u{k}" for k in u]
    return Interactions.from_arrays(ids, i + 100, dense[u, i], ts)


def triples(data: Interactions) -> set[tuple]:
    f = data.to_frame()
    cols = [c for c in ("user", "item", "rating", "timestamp") if c in f]
    return set(map(tuple, f[cols].itertuples(index=False)))


def check_partition(data, train, test):
    assert train.users == data.users == test.users
    assert train.items == data.items == test.items
    a, b = triples(train), triples(test)
    assert not a & b
    assert a | b == triples(data)
    assert train.nnz + test.nnz == data.nnz


# ---------------------------------------------------------------------- transforms


def test_to_implicit(rated):
    imp = to_implicit(rated, threshold=4)
    assert imp.nnz == int((rated.values >= 4).sum())
    np.testing.assert_array_equal(imp.values, 1.0)
    assert imp.users == rated.users and imp.timestamps is not None
    kept = {(u, i) for u, i, *_ in triples(imp)}
    assert kept == {(u, i) for u, i, r, _ in triples(rated) if r >= 4}


def test_filter_values_and_drop_empty(rated):
    mid = filter_values(rated, 2, 3)
    assert ((mid.values >= 2) & (mid.values <= 3)).all()
    assert mid.nnz == int(((rated.values >= 2) & (rated.values <= 3)).sum())
    compact = drop_empty(mid)
    assert (compact.user_counts() > 0).all() and (compact.item_counts() > 0).all()
    assert triples(compact) == triples(mid)


@pytest.mark.parametrize(("uk", "ik"), [(1, 1), (3, 2), (5, 5), (8, 10), (0, 7)])
def test_k_core_fixed_point(rated, uk, ik):
    core = k_core(rated, user_k=uk, item_k=ik)
    assert (core.user_counts() >= max(uk, 1)).all()
    assert (core.item_counts() >= max(ik, 1)).all()
    assert triples(core) <= triples(rated)
    again = k_core(core, uk, ik)
    assert triples(again) == triples(core) and again.shape == core.shape
    # maximal: a brute-force peeling that removes one offender at a time agrees
    assert triples(core) == _peel(rated, uk, ik)


def _peel(data: Interactions, uk: int, ik: int) -> set[tuple]:
    entries = triples(data)
    while True:
        users: dict = {}
        items: dict = {}
        for u, i, *_ in entries:
            users[u] = users.get(u, 0) + 1
            items[i] = items.get(i, 0) + 1
        bad = next((e for e in entries if users[e[0]] < uk or items[e[1]] < ik), None)
        if bad is None:
            return entries
        entries = {e for e in entries if e[0] != bad[0]} if users[bad[0]] < uk else entries
        entries = {e for e in entries if e[1] != bad[1]} if items[bad[1]] < ik else entries


def test_k_core_can_be_empty(rated):
    core = k_core(rated, 100, 100)
    assert core.shape == (0, 0) and core.nnz == 0


# ---------------------------------------------------------------------- splits


@pytest.mark.parametrize("fraction", [0.0, 0.2, 0.5, 1.0])
def test_random_holdout(rated, fraction):
    train, test = random_holdout(rated, fraction, random_state=0)
    check_partition(rated, train, test)
    assert test.nnz == round(fraction * rated.nnz)
    again = random_holdout(rated, fraction, random_state=0)
    assert again[1].fingerprint() == test.fingerprint()
    if 0 < fraction < 1:
        other = random_holdout(rated, fraction, random_state=1)
        assert other[1].fingerprint() != test.fingerprint()


@pytest.mark.parametrize("k", [1, 2, 3])
def test_leave_k_out(rated, k):
    train, test = leave_k_out(rated, k, random_state=7)
    check_partition(rated, train, test)
    counts = rated.user_counts()
    np.testing.assert_array_equal(test.user_counts(), np.where(counts > k, k, 0))
    assert (train.user_counts() >= 1).all()
    again = leave_k_out(rated, k, random_state=7)
    assert again[1].fingerprint() == test.fingerprint()
    assert leave_k_out(rated, k, random_state=8)[1].fingerprint() != test.fingerprint()


def test_temporal(rated):
    train, test = temporal(rated, 0.25)
    check_partition(rated, train, test)
    assert test.nnz == round(0.25 * rated.nnz)  # timestamps are distinct
    assert train.timestamps.max() < test.timestamps.min()
    t = int(np.median(rated.timestamps))
    train, test = temporal(rated, at=t)
    assert (test.timestamps >= t).all() and (train.timestamps < t).all()
    assert temporal(rated, 0.0)[1].nnz == 0


def test_temporal_ties_go_to_test():
    data = Interactions.from_arrays([1, 1, 2, 2], [1, 2, 1, 2], [1, 1, 1, 1], [5, 9, 9, 3])
    _, test = temporal(data, 0.25)
    assert test.nnz == 2 and set(test.timestamps) == {9}


@pytest.mark.parametrize("k", [1, 2])
def test_temporal_leave_k_out(rated, k):
    train, test = temporal_leave_k_out(rated, k)
    check_partition(rated, train, test)
    counts = rated.user_counts()
    np.testing.assert_array_equal(test.user_counts(), np.where(counts > k, k, 0))
    for u in np.flatnonzero(test.user_counts()):
        tr = train.timestamps[train.indptr[u] : train.indptr[u + 1]]
        te = test.timestamps[test.indptr[u] : test.indptr[u + 1]]
        assert tr.max() < te.min()


def test_temporal_needs_timestamps():
    data = Interactions.from_arrays([1, 2], [1, 1])
    with pytest.raises(ValueError, match="timestamps"):
        temporal(data)
    with pytest.raises(ValueError, match="timestamps"):
        temporal_leave_k_out(data)


def test_split_validation(rated):
    with pytest.raises(ValueError):
        random_holdout(rated, 1.5)
    with pytest.raises(ValueError):
        leave_k_out(rated, -1)
