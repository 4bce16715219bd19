"""Membership-inference attacks: references for the pieces, behaviour on planted data."""

from __future__ import annotations

import numpy as np
import pytest

from recforget import ALS, Interactions
from recforget.data import synthetic
from recforget.data.split import random_holdout
from recforget.evaluate import (
    fit_logistic,
    interaction_mia,
    logistic_decision,
    rank_auc,
    sample_non_members,
    split_users_for_mia,
    user_mia,
)
from recforget.evaluate.attacks import recommend_or_popular
from recforget.evaluate.consistency import as_pairs
from recforget.models.base import Recommender


class TableModel(Recommender):
    """A recommender whose scores are a fixed table (users x items)."""

    def __init__(self, table: np.ndarray | None = None) -> None:
        self.table = table

    def fit(self, interactions: Interactions) -> TableModel:
        self.users_, self.items_, self.seen_ = interactions.users, interactions.items, interactions
        return self

    def _score_rows(self, user_idx: np.ndarray) -> np.ndarray:
        return np.asarray(self.table, dtype=np.float64)[user_idx]

    def save(self, path):  # pragma: no cover
        raise NotImplementedError


def _ref_auc(pos, neg) -> float:
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


# ---------------------------------------------------------------------- AUC and features
def test_rank_auc_matches_double_loop(rng):
    pos = rng.integers(0, 5, 30).astype(float)
    neg = rng.integers(0, 5, 20).astype(float) - 0.5 * rng.integers(0, 2, 20)
    assert rank_auc(pos, neg) == pytest.approx(_ref_auc(pos, neg))
    assert rank_auc([1.0], [0.0]) == 1.0 and rank_auc([0.0], [1.0]) == 0.0
    assert rank_auc([1.0, 1.0], [1.0]) == 0.5
    assert np.isnan(rank_auc([], [1.0]))


def _table_setup():
    seen = np.array([[1.0, 0, 0, 0, 1], [0, 1, 0, 0, 1], [0, 0, 1, 1, 1]])
    table = np.array([[5.0, 1.0, 2.0, 2.0, 0.0], [1.0, 4.0, 4.0, 0.0, 3.0], [0, 1, 2, 3, 4.0]])
    data = Interactions.from_csr(seen)
    return TableModel(table).fit(data), data, table


def test_interaction_mia_score_and_rank_match_loops():
    model, data, table = _table_setup()
    members = [(0, 0), (1, 1), (2, 3)]
    non = [(0, 2), (1, 2), (2, 1), (0, 3)]
    got = interaction_mia(model, members, non, "score")
    ref = _ref_auc([table[u, i] for u, i in members], [table[u, i] for u, i in non])
    assert got == {"auc": pytest.approx(ref), "n_members": 3, "n_non_members": 4}

    def ref_rank(u, i, exclude):
        banned = set(np.flatnonzero(exclude[u])) if exclude is not None else set()
        others = [j for j in range(5) if j != i and j not in banned]
        higher = sum(table[u, j] > table[u, i] for j in others)
        return 1 + higher + 0.5 * sum(table[u, j] == table[u, i] for j in others)

    for exclude, dense in ((None, None), (data, data.to_csr().toarray())):
        got = interaction_mia(model, members, non, "rank", exclude=exclude)["auc"]
        neg_rank = [[-ref_rank(u, i, dense) for u, i in s] for s in (members, non)]
        assert got == pytest.approx(_ref_auc(*neg_rank))
    with pytest.raises(ValueError, match="feature"):
        interaction_mia(model, members, non, "logit")


@pytest.fixture(scope="module")
def deletion_setup():
    data = synthetic(300, 80, rank=4, density=0.15, noise=0.5, random_state=0)
    train, test = random_holdout(data, 0.2, random_state=1)
    r = np.random.default_rng(2)
    pos = np.sort(r.choice(train.nnz, 150, replace=False))
    tu, ti = as_pairs(train)
    members = list(zip(tu[pos].tolist(), ti[pos].tolist(), strict=True))
    non = sample_non_members(train, test, len(members), r, users=tu[pos])
    remaining = train.drop_pairs(members)
    with_members = ALS(8, iterations=8, random_state=0).fit(train)
    without = ALS(8, iterations=8, random_state=0).fit(remaining)
    return train, test, members, non, remaining, with_members, without


@pytest.mark.parametrize("feature", ["score", "rank"])
def test_interaction_mia_detects_training_pairs(deletion_setup, feature):
    _, _, members, non, remaining, with_members, without = deletion_setup
    seen = interaction_mia(with_members, members, non, feature, exclude=remaining)["auc"]
    unseen = interaction_mia(without, members, non, feature, exclude=remaining)["auc"]
    assert seen > 0.65
    assert abs(unseen - 0.5) < 0.1
    assert seen - unseen > 0.1


def test_sample_non_members_from_test_positives(deletion_setup):
    train, test, members, non, *_ = deletion_setup
    member_users = {u for u, _ in members}
    test_pairs = set(zip(*(a.tolist() for a in as_pairs(test)), strict=True))
    train_pairs = set(zip(*(a.tolist() for a in as_pairs(train)), strict=True))
    assert len(non) == len(members) == len(set(non))
    assert all(p in test_pairs and p not in train_pairs for p in non)
    assert all(u in member_users for u, _ in non)
    again = sample_non_members(train, test, len(members), 5, users=list(member_users))
    assert again == sample_non_members(train, test, len(members), 5, users=list(member_users))


def test_sample_non_members_falls_back_to_unobserved(deletion_setup):
    train, test, *_ = deletion_setup
    test_pairs = set(zip(*(a.tolist() for a in as_pairs(test)), strict=True))
    train_pairs = set(zip(*(a.tolist() for a in as_pairs(train)), strict=True))
    few_users = [0, 1]
    n_avail = sum(u in few_users and p not in train_pairs for p in test_pairs for u in [p[0]])
    got = sample_non_members(train, test, n_avail + 20, 0, users=few_users)
    assert len(got) == len(set(got)) == n_avail + 20
    assert all(u in few_users and p not in train_pairs for p in got for u in [p[0]])
    from_test = [p for p in got if p in test_pairs]
    assert len(from_test) == n_avail  # every held-out positive is used first
    random_only = sample_non_members(train, None, 50, 0)
    assert len(set(random_only)) == 50 and not set(random_only) & train_pairs
    assert sample_non_members(train, test, 0, 0) == []


# ---------------------------------------------------------------------- user level
def test_split_users_for_mia():
    data = synthetic(100, 30, density=0.2, random_state=0)
    split = split_users_for_mia(data, 0)
    shadow = set(split.shadow.users.ids.tolist())
    members, non = set(split.members.tolist()), set(split.non_members.tolist())
    assert len(shadow) == 50 and len(members) == 25 and len(non) == 25
    assert not (shadow & members or shadow & non or members & non)
    assert shadow | members | non == set(data.users.ids.tolist())
    assert set(split.target.users.ids.tolist()) == members
    assert split.target.nnz + split.shadow.nnz == data.nnz - sum(
        data.user_counts()[data.users.index(list(non))]
    )
    assert split.histories is data


def test_recommend_or_popular_serves_popular_items_to_strangers():
    model, data, _ = _table_setup()
    items, valid = recommend_or_popular(model, np.array([0, 7]), k=3)
    # user 0 (known): best unseen items 2, 3 (tie: lower index first), 1
    assert items[0].tolist() == [2, 3, 1] and valid.all()
    # user 7 (unknown): the most popular items; item 4 has 3 entries, the rest 1 (by index)
    assert data.item_counts().tolist() == [1, 1, 1, 1, 3]
    assert items[1].tolist() == [4, 0, 1]


@pytest.fixture(scope="module")
def mia_split():
    data = synthetic(1200, 100, rank=4, density=0.12, noise=0.5, random_state=0)
    return split_users_for_mia(data, 3)


def test_user_mia_detects_members_and_not_deleted_users(mia_split):
    split = mia_split
    target = ALS(8, iterations=8, random_state=0).fit(split.target)
    res = user_mia(
        target,
        split.shadow,
        split.members,
        split.non_members,
        histories=split.histories,
        k=10,
        shadow_factors=8,
        random_state=0,
    )
    assert res["auc"] > 0.8 and res["shadow_auc"] > 0.8
    assert res["n_members"] == len(split.members) and res["n_shadow_members"] == 300
    # a model trained without half of the members: those users are strangers to it
    gone = split.members[::2]
    without = ALS(8, iterations=8, random_state=0).fit(split.target.drop_users(gone))
    res2 = user_mia(
        without,
        split.shadow,
        gone,
        split.non_members,
        histories=split.histories,
        k=10,
        shadow_factors=8,
        random_state=0,
    )
    assert abs(res2["auc"] - 0.5) < 0.1


# ---------------------------------------------------------------------- logistic regression
def test_fit_logistic_separates_a_separable_problem(rng):
    X = rng.standard_normal((200, 3))
    w_true = np.array([2.0, -1.0, 0.5])
    y = (X @ w_true + 0.3 > 0).astype(float)
    coef, intercept = fit_logistic(X, y, l2=1e-4)
    z = logistic_decision(X, coef, intercept)
    assert np.all((z > 0) == (y == 1))
    cos = coef @ w_true / (np.linalg.norm(coef) * np.linalg.norm(w_true))
    assert cos > 0.95


def test_fit_logistic_is_stationary(rng):
    """The gradient of the regularised objective vanishes at the solution (noisy labels)."""
    X = rng.standard_normal((150, 4))
    y = (rng.random(150) < 1 / (1 + np.exp(-(X[:, 0] - X[:, 1])))).astype(float)
    l2 = 0.1
    coef, b = fit_logistic(X, y, l2=l2)
    p = 1 / (1 + np.exp(-(X @ coef + b)))
    grad_w = np.array([sum((p[j] - y[j]) * X[j, c] for j in range(150)) for c in range(4)])
    np.testing.assert_allclose(grad_w / 150 + l2 * coef, 0, atol=1e-5)
    assert abs(np.mean(p - y)) < 1e-5
    with pytest.raises(ValueError):
        fit_logistic(X, y + 1)
