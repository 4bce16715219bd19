"""Accuracy metrics against slow, textbook references (loops and sets) kept in this file."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recforget.data.interactions import Interactions
from recforget.data.vocab import Vocabulary
from recforget.evaluate import (
    auc_per_user,
    evaluate_ranking,
    evaluate_ratings,
    mae,
    rank_metrics,
    rmse,
)
from recforget.models.base import Recommender

ALL = ("recall", "recall_capped", "precision", "ndcg", "hr", "map", "mrr", "auc")


# ---------------------------------------------------------------------- references
def _ref_list_metrics(top: list[int], test: set[int], k: int) -> dict[str, float]:
    """Textbook metrics of one ranked list (``-1`` = empty slot) at cut-off ``k``."""
    head = top[:k]
    hits = [1 if i in test else 0 for i in head]
    n_hit = sum(hits)
    dcg = sum(h / math.log2(j + 2) for j, h in enumerate(hits))
    idcg = sum(1 / math.log2(j + 2) for j in range(min(len(test), k)))
    ap, seen = 0.0, 0
    for j, h in enumerate(hits):
        if h:
            seen += 1
            ap += seen / (j + 1)
    return {
        f"recall@{k}": n_hit / len(test),
        f"recall_capped@{k}": n_hit / min(len(test), k),
        f"precision@{k}": n_hit / k,
        f"ndcg@{k}": dcg / idcg,
        f"hr@{k}": float(n_hit > 0),
        f"map@{k}": ap / min(len(test), k),
    }


def _ref_mrr(top: list[int], test: set[int]) -> float:
    for j, i in enumerate(top):
        if i in test:
            return 1 / (j + 1)
    return 0.0


def _ref_auc(scores: list[float], pos: set[int], excluded: set[int]) -> float:
    """Fraction of (positive, negative) pairs ordered correctly; ties count 1/2."""
    p = [i for i in pos if i not in excluded]
    n = [i for i in range(len(scores)) if i not in pos and i not in excluded]
    if not p or not n:
        return math.nan
    total = 0.0
    for a in p:
        for b in n:
            total += 1.0 if scores[a] > scores[b] else 0.5 if scores[a] == scores[b] else 0.0
    return total / (len(p) * len(n))


def _ref_evaluate(scores: np.ndarray, train: list[set[int]], test: list[set[int]], ks) -> dict:
    """Mean metrics: rank non-training items by (-score, index), users with test items only."""
    n_items = scores.shape[1]
    per: dict[str, list[float]] = {}
    aucs = []
    for u in range(len(test)):
        t = test[u] - train[u]
        if not t:
            continue
        cands = [i for i in range(n_items) if i not in train[u]]
        cands.sort(key=lambda i: (-scores[u, i], i))
        top = cands[: max(ks)]
        for k in ks:
            for key, v in _ref_list_metrics(top, t, k).items():
                per.setdefault(key, []).append(v)
        per.setdefault("mrr", []).append(_ref_mrr(top, t))
        a = _ref_auc(list(scores[u]), t, train[u])
        if not math.isnan(a):
            aucs.append(a)
    out = {key: float(np.mean(v)) for key, v in per.items()}
    out["auc"] = float(np.mean(aucs)) if aucs else math.nan
    out["n_users"] = len(per.get("mrr", []))
    return out


# ---------------------------------------------------------------------- test-only model
class FixedScores(Recommender):
    """A real Recommender whose scores are a given matrix (rows/cols in its own vocabularies)."""

    def __init__(self, scores=None, users=None, items=None):
        self.scores = scores
        self.users = users
        self.items = items

    def fit(self, interactions: Interactions) -> FixedScores:
        self.scores_ = np.asarray(self.scores, dtype=np.float64)
        self.users_ = self.users if self.users is not None else interactions.users
        self.items_ = self.items if self.items is not None else interactions.items
        self.seen_ = interactions
        return self

    def _score_rows(self, user_idx: np.ndarray) -> np.ndarray:
        return self.scores_[user_idx]

    def save(self, path: str | Path) -> Path:  # pragma: no cover - not needed here
        raise NotImplementedError


def _interactions(sets: list[set[int]], n_items: int, values=None) -> Interactions:
    dense = np.zeros((len(sets), n_items))
    for u, s in enumerate(sets):
        dense[u, sorted(s)] = 1.0 if values is None else values[u, sorted(s)]
    return Interactions.from_csr(dense)


def _csr(sets: list[set[int]]) -> tuple[np.ndarray, np.ndarray]:
    indptr = np.concatenate([[0], np.cumsum([len(s) for s in sets])]).astype(np.int64)
    indices = np.array([i for s in sets for i in sorted(s)], dtype=np.int64)
    return indptr, indices


# ---------------------------------------------------------------------- strategies
@st.composite
def ranked_lists(draw):
    n_items = draw(st.integers(1, 12))
    n_users = draw(st.integers(1, 6))
    K = draw(st.integers(0, n_items))
    tops, tests = [], []
    for _ in range(n_users):
        perm = draw(st.permutations(range(n_items)))
        length = draw(st.integers(0, K))
        tops.append(list(perm[:length]) + [-1] * (K - length))
        tests.append(draw(st.sets(st.integers(0, n_items - 1), max_size=n_items)))
    ks = draw(st.lists(st.integers(1, n_items + 3), min_size=1, max_size=3, unique=True))
    return np.array(tops, dtype=np.int64).reshape(n_users, K), tests, ks, n_items


@st.composite
def score_problems(draw, extremes: bool = False, distinct: bool = False):
    n_items = draw(st.integers(1, 10))
    n_users = draw(st.integers(1, 5))
    cell = st.integers(-3, 3).map(float)  # few values: many ties
    if extremes:
        cell = cell | st.sampled_from([-np.inf, np.inf, 1e300, -1e-300])
    scores = np.array(
        [[draw(cell) for _ in range(n_items)] for _ in range(n_users)], dtype=np.float64
    ).reshape(n_users, n_items)
    if distinct:  # break ties in a drawn order: top-k at a tie is a matter of convention
        order = draw(st.permutations(range(n_users * n_items)))
        scores = scores + 1e-3 * np.reshape(order, scores.shape) / len(order)
    item_sets = st.sets(st.integers(0, n_items - 1), max_size=n_items)
    train = [draw(item_sets) for _ in range(n_users)]
    test = [draw(item_sets) for _ in range(n_users)]
    return scores, train, test


# ---------------------------------------------------------------------- rank_metrics
@settings(max_examples=200, deadline=None)
@given(ranked_lists())
def test_rank_metrics_match_reference(case):
    top, tests, ks, n_items = case
    got = rank_metrics(top, *_csr(tests), ks, n_items=n_items)
    assert set(got) == {f"{m}@{k}" for m in ALL[:6] for k in ks} | {"mrr"}
    for u, t in enumerate(tests):
        if not t:
            assert all(np.isnan(v[u]) for v in got.values())
            continue
        listed = [int(i) for i in top[u]]
        want = {"mrr": _ref_mrr(listed, t)}
        for k in ks:
            want.update(_ref_list_metrics(listed, t, k))
        for key, v in want.items():
            assert got[key][u] == pytest.approx(v, abs=1e-12), (key, u)


def test_rank_metrics_hand_computed():
    # list [a, x, b] with test {a, b}: hits at ranks 1 and 3
    top = np.array([[0, 5, 2]])
    m = rank_metrics(top, np.array([0, 2]), np.array([0, 2]), ks=(1, 2, 3), n_items=6)
    assert m["ndcg@3"][0] == pytest.approx((1 + 1 / 2) / (1 + 1 / math.log2(3)))  # 0.91972
    assert m["ndcg@3"][0] == pytest.approx(0.9197207891)
    assert m["ndcg@1"][0] == 1.0
    assert m["map@3"][0] == pytest.approx((1 + 2 / 3) / 2)
    assert m["precision@3"][0] == pytest.approx(2 / 3)
    assert m["recall@1"][0] == 0.5 and m["recall_capped@1"][0] == 1.0
    assert m["mrr"][0] == 1.0 and m["hr@2"][0] == 1.0


def test_recall_normalisations_differ_when_test_exceeds_k():
    # three test items, one of them in the top 2
    m = rank_metrics(np.array([[4, 1]]), np.array([0, 3]), np.array([1, 2, 3]), n_items=5, ks=(2,))
    assert m["recall@2"][0] == pytest.approx(1 / 3)
    assert m["recall_capped@2"][0] == pytest.approx(1 / 2)
    assert m["mrr"][0] == 0.5


def test_rank_metrics_user_without_test_items_is_nan_and_misses_are_zero():
    top = np.array([[0, 1], [2, 3]])
    m = rank_metrics(top, np.array([0, 0, 1]), np.array([4]), ks=(2,), n_items=5)
    for v in m.values():
        assert np.isnan(v[0]) and v[1] == 0.0


def test_rank_metrics_k_beyond_list_and_padding():
    # K = 2 < k = 5; the second slot is padding; precision still divides by k
    m = rank_metrics(np.array([[1, -1]]), np.array([0, 2]), np.array([1, 3]), ks=(5,), n_items=4)
    assert m["precision@5"][0] == pytest.approx(1 / 5)
    assert m["recall@5"][0] == 0.5
    assert m["ndcg@5"][0] == pytest.approx(1 / (1 + 1 / math.log2(3)))


def test_rank_metrics_unsorted_and_repeated_test_items():
    top = np.array([[2, 0, 1], [1, 2, 0]])
    messy = rank_metrics(top, np.array([0, 3, 5]), np.array([2, 0, 2, 1, 0]), (2,), n_items=3)
    clean = rank_metrics(top, np.array([0, 2, 4]), np.array([0, 2, 0, 1]), (2,), n_items=3)
    for key in clean:
        np.testing.assert_array_equal(messy[key], clean[key])


def test_rank_metrics_rejects_bad_input():
    indptr, indices = np.array([0, 1]), np.array([0])
    with pytest.raises(ValueError, match="repeat"):
        rank_metrics(np.array([[1, 1]]), indptr, indices, n_items=3)
    with pytest.raises(ValueError, match="n_items"):
        rank_metrics(np.array([[3]]), indptr, indices, n_items=3)
    with pytest.raises(ValueError, match="k must"):
        rank_metrics(np.array([[1]]), indptr, indices, ks=(0,), n_items=3)
    with pytest.raises(ValueError, match="indptr"):
        rank_metrics(np.array([[1]]), np.array([0, 1, 1]), indices, n_items=3)


# ---------------------------------------------------------------------- auc
@settings(max_examples=200, deadline=None)
@given(score_problems(extremes=True))
def test_auc_matches_pair_counting_reference(case):
    scores, train, test = case
    n_items = scores.shape[1]
    pos = np.zeros(scores.shape, dtype=bool)
    exc = np.zeros(scores.shape, dtype=bool)
    for u in range(len(test)):
        pos[u, sorted(test[u])] = True
        exc[u, sorted(train[u])] = True
    got = auc_per_user(scores, pos, exc)
    for u in range(len(test)):
        want = _ref_auc(list(scores[u]), test[u], train[u])
        if math.isnan(want):
            assert np.isnan(got[u])
        else:
            assert got[u] == pytest.approx(want, abs=1e-12)
    assert got.shape == (len(test),) and n_items == pos.shape[1]


def test_auc_hand_computed_with_ties():
    scores = np.array([[3.0, 1.0, 2.0, 2.0]])
    pos = np.array([[True, False, False, True]])
    assert auc_per_user(scores, pos)[0] == pytest.approx(3.5 / 4)
    exclude = np.array([[False, True, False, False]])  # only the tied negative is left
    assert auc_per_user(scores, pos, exclude)[0] == pytest.approx(1.5 / 2)


def test_auc_extreme_scores_and_nan_cases():
    inf = np.inf
    scores = np.array([[inf, -inf, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 2.0]])
    pos = np.array([[True, False, False], [True, True, True], [False, False, False]])
    got = auc_per_user(scores, pos)
    assert got[0] == 1.0 and np.isnan(got[1]) and np.isnan(got[2])
    with pytest.raises(ValueError, match="NaN"):
        auc_per_user(np.array([[np.nan, 0.0]]), np.array([[True, False]]))


# ---------------------------------------------------------------------- rmse / mae
def test_rmse_mae_hand_computed_and_validation():
    p, t = np.array([1.0, 2.0, 3.0]), np.array([1.0, 4.0, 0.0])
    assert rmse(p, t) == pytest.approx(math.sqrt(13 / 3))
    assert mae(p, t) == pytest.approx(5 / 3)
    with pytest.raises(ValueError):
        rmse(p, t[:2])
    with pytest.raises(ValueError):
        mae([], [])


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(-1e3, 1e3, allow_nan=False), st.floats(-1e3, 1e3, allow_nan=False)),
        min_size=1,
        max_size=30,
    )
)
def test_rmse_mae_match_reference(pairs):
    p = [a for a, _ in pairs]
    t = [b for _, b in pairs]
    ref_mse = sum((a - b) ** 2 for a, b in pairs) / len(pairs)
    ref_mae = sum(abs(a - b) for a, b in pairs) / len(pairs)
    assert rmse(np.array(p), np.array(t)) == pytest.approx(math.sqrt(ref_mse), abs=1e-9)
    assert mae(np.array(p), np.array(t)) == pytest.approx(ref_mae, abs=1e-9)


# ---------------------------------------------------------------------- evaluate_ranking
@settings(max_examples=100, deadline=None)
@given(
    score_problems(distinct=True),
    st.lists(st.integers(1, 12), min_size=1, max_size=3, unique=True),
)
def test_evaluate_ranking_matches_reference(case, ks):
    scores, train, test = case
    n_items = scores.shape[1]
    tr, te = _interactions(train, n_items), _interactions(test, n_items)
    model = FixedScores(scores).fit(tr)
    got = evaluate_ranking(model, tr, te, ks, metrics=ALL, batch_size=2)
    want = _ref_evaluate(scores, train, test, ks)
    assert got["n_users"] == want["n_users"]
    if want["n_users"] == 0:
        assert all(np.isnan(v) for key, v in got.items() if key != "n_users")
        return
    assert set(got) == set(want)
    for key, v in want.items():
        if math.isnan(v):
            assert math.isnan(got[key]), key
        else:
            assert got[key] == pytest.approx(v, abs=1e-12), key


def _random_case(seed: int, n_users: int = 40, n_items: int = 25):
    r = np.random.default_rng(seed)
    scores = r.standard_normal((n_users, n_items))
    train = [set(np.flatnonzero(r.random(n_items) < 0.3).tolist()) for _ in range(n_users)]
    test = [
        set(np.flatnonzero(r.random(n_items) < 0.15).tolist()) - train[u] for u in range(n_users)
    ]
    return scores, train, test


def test_evaluate_ranking_default_keys_and_batch_invariance():
    scores, train, test = _random_case(1)
    tr, te = _interactions(train, 25), _interactions(test, 25)
    model = FixedScores(scores).fit(tr)
    got = evaluate_ranking(model, tr, te, ks=(5, 10))
    expected_keys = {
        f"{m}@{k}" for m in ("recall", "precision", "ndcg", "hr", "map") for k in (5, 10)
    } | {"mrr", "auc", "n_users"}
    assert set(got) == expected_keys
    for bs in (1, 7, 1000):
        other = evaluate_ranking(model, tr, te, ks=(5, 10), batch_size=bs)
        assert other == pytest.approx(got)
    want = _ref_evaluate(scores, train, test, (5, 10))
    for key in expected_keys:
        assert got[key] == pytest.approx(want[key])


def test_k_larger_than_n_items():
    scores, train, test = _random_case(2, n_users=10, n_items=6)
    tr, te = _interactions(train, 6), _interactions(test, 6)
    got = evaluate_ranking(FixedScores(scores).fit(tr), tr, te, ks=(50,), metrics=ALL)
    want = _ref_evaluate(scores, train, test, (50,))
    for key, v in want.items():
        assert got[key] == pytest.approx(v), key
    assert got["hr@50"] == 1.0 and got["recall@50"] == 1.0 and got["precision@50"] < 0.2


def test_all_items_seen_and_test_overlapping_train():
    n_items = 4
    train = [{0, 1, 2, 3}, {0, 1}, {0, 1, 2}, set()]
    test = [{2}, {2, 3}, {3}, {1}]  # user 0's only test item is a training item
    scores = np.array([[4.0, 3, 2, 1], [1, 2, 3, 4], [4, 3, 2, 1], [0, 1, 0, 0]])
    tr, te = _interactions(train, n_items), _interactions(test, n_items)
    got = evaluate_ranking(FixedScores(scores).fit(tr), tr, te, ks=(3,), metrics=ALL)
    want = _ref_evaluate(scores, train, test, (3,))
    assert got["n_users"] == 3  # user 0 has no test item left
    # user 1: every other item is a test item, user 2: only one candidate -> no negatives
    assert got["auc"] == pytest.approx(1.0)  # only user 3 counts
    for key, v in want.items():
        assert got[key] == pytest.approx(v), key


def test_users_subset_and_no_users():
    scores, train, test = _random_case(3)
    tr, te = _interactions(train, 25), _interactions(test, 25)
    model = FixedScores(scores).fit(tr)
    keep = [u for u in range(40) if test[u]][:5]
    got = evaluate_ranking(model, tr, te, users=keep, metrics=ALL)
    sub = [t if u in keep else set() for u, t in enumerate(test)]
    want = _ref_evaluate(scores, train, sub, (10,))
    assert got["n_users"] == 5
    for key, v in want.items():
        assert got[key] == pytest.approx(v), key
    empty = evaluate_ranking(model, tr, _interactions([set()] * 40, 25))
    assert empty["n_users"] == 0 and np.isnan(empty["ndcg@10"]) and np.isnan(empty["auc"])


def test_model_with_other_vocabulary_is_matched_by_raw_id():
    scores, train, test = _random_case(4, n_users=12, n_items=9)
    tr, te = _interactions(train, 9), _interactions(test, 9)
    r = np.random.default_rng(0)
    pu, pi = r.permutation(12), r.permutation(9)
    # model row a is data user pu[a]; model column b is data item pi[b]; plus an extra item
    model_scores = np.concatenate([scores[pu][:, pi], np.full((12, 1), 99.0)], axis=1)
    model = FixedScores(model_scores, Vocabulary(pu), Vocabulary(np.concatenate([pi, [100]]))).fit(
        tr
    )
    got = evaluate_ranking(model, tr, te, ks=(3,), metrics=ALL)
    direct = evaluate_ranking(FixedScores(scores).fit(tr), tr, te, ks=(3,), metrics=ALL)
    assert got == pytest.approx(direct, nan_ok=True)

    missing = FixedScores(scores[:, :8], items=Vocabulary(np.arange(8))).fit(tr)
    with pytest.raises(ValueError, match="does not know item"):
        evaluate_ranking(missing, tr, te)
    few_users = FixedScores(scores[:3], users=Vocabulary(np.arange(3))).fit(tr)
    with pytest.raises(ValueError, match="does not know evaluated user"):
        evaluate_ranking(few_users, tr, te)


def test_evaluate_ranking_rejects_mismatched_data_and_bad_arguments():
    scores, train, test = _random_case(5, n_users=6, n_items=5)
    tr = _interactions(train, 5)
    model = FixedScores(scores).fit(tr)
    with pytest.raises(ValueError, match="item vocabulary"):
        evaluate_ranking(model, tr, _interactions(test, 5).drop_items([4]))
    shifted = Interactions.from_csr(_interactions(test, 5).to_csr(), users=np.arange(1, 7))
    with pytest.raises(ValueError, match="user vocabulary"):
        evaluate_ranking(model, tr, shifted)
    te = _interactions(test, 5)
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate_ranking(model, tr, te, metrics=("ndgc",))
    with pytest.raises(ValueError, match="batch_size"):
        evaluate_ranking(model, tr, te, batch_size=0)


def test_evaluate_ranking_with_a_fitted_als(small_data):
    from recforget import ALS

    r = np.random.default_rng(0)
    held = r.random(small_data.nnz) < 0.2
    train = Interactions(*_split(small_data, ~held), small_data.users, small_data.items)
    test = Interactions(*_split(small_data, held), small_data.users, small_data.items)
    model = ALS(4, iterations=3, random_state=0).fit(train)
    got = evaluate_ranking(model, train, test, ks=(5,), metrics=ALL)
    sets = [
        set(train.indices[train.indptr[u] : train.indptr[u + 1]].tolist())
        for u in range(train.n_users)
    ]
    tsets = [
        set(test.indices[test.indptr[u] : test.indptr[u + 1]].tolist()) for u in range(test.n_users)
    ]
    scores = model._score_rows(np.arange(train.n_users)).astype(np.float64)
    want = _ref_evaluate(scores, sets, tsets, (5,))
    for key, v in want.items():
        assert got[key] == pytest.approx(v), key


def _split(data: Interactions, keep: np.ndarray):
    counts = np.bincount(data.row_of_entry[keep], minlength=data.n_users)
    indptr = np.concatenate([[0], np.cumsum(counts)])
    return indptr, data.indices[keep], data.values[keep]


# ---------------------------------------------------------------------- evaluate_ratings
def test_evaluate_ratings_matches_reference_and_maps_vocabularies():
    r = np.random.default_rng(6)
    scores = r.uniform(1, 5, (8, 7))
    ratings = r.integers(1, 6, (8, 7)).astype(np.float64)
    test_sets = [set(np.flatnonzero(r.random(7) < 0.4).tolist()) for _ in range(8)]
    te = _interactions(test_sets, 7, values=ratings)
    pairs = [(u, i) for u in range(8) for i in sorted(test_sets[u])]
    err = np.array([scores[u, i] - ratings[u, i] for u, i in pairs])
    want = {"rmse": math.sqrt(np.mean(err**2)), "mae": np.mean(np.abs(err))}
    got = evaluate_ratings(FixedScores(scores).fit(te), te)
    assert got == pytest.approx(want)

    pu, pi = r.permutation(8), r.permutation(7)
    permuted = FixedScores(scores[pu][:, pi], Vocabulary(pu), Vocabulary(pi)).fit(te)
    assert evaluate_ratings(permuted, te) == pytest.approx(want)
    partial = FixedScores(scores[:, :3], items=Vocabulary(np.arange(3))).fit(te)
    with pytest.raises(ValueError, match="does not know item"):
        evaluate_ratings(partial, te)


# ---------------------------------------------------------------------- speed
@pytest.mark.slow
def test_ml1m_sized_factor_model_is_fast():
    r = np.random.default_rng(0)
    n_users, n_items, f = 6040, 3706, 64
    X, Y = r.standard_normal((n_users, f)), r.standard_normal((n_items, f))

    class Factors(FixedScores):
        def _score_rows(self, user_idx):
            return X[user_idx] @ Y.T

    dense = r.random((n_users, n_items)) < 0.045  # ~1M interactions like ML-1M
    held = dense & (r.random((n_users, n_items)) < 0.2)
    tr = Interactions.from_csr(dense & ~held)
    te = Interactions.from_csr(held)
    model = Factors().fit(tr)
    start = time.perf_counter()
    out = evaluate_ranking(model, tr, te, ks=(10, 20))
    seconds = time.perf_counter() - start
    assert out["n_users"] > 6000 and 0.45 < out["auc"] < 0.55
    assert seconds < 8.0, seconds  # ~0.6 s without AUC, ~1.7 s with, on a loaded 2-core box
