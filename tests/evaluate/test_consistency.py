"""Consistency metrics against slow, obvious references (loops and sets) kept in this file."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.stats

from recforget import ALS, Interactions
from recforget.data import synthetic
from recforget.evaluate import (
    common_item_vectors,
    deleted_item_ranks,
    item_vectors,
    neighbour_overlap,
    rank_summary,
    score_agreement,
    topk_overlap,
)
from recforget.evaluate.consistency import _agreement, as_pairs
from recforget.models.base import Recommender


# ---------------------------------------------------------------------- fixtures
class TableModel(Recommender):
    """A recommender whose scores are a fixed table (users x items, by raw id)."""

    def __init__(self, table: np.ndarray | None = None) -> None:
        self.table = table

    def fit(self, interactions: Interactions) -> TableModel:
        self.users_ = interactions.users
        self.items_ = interactions.items
        self.seen_ = interactions
        return self

    def _score_rows(self, user_idx: np.ndarray) -> np.ndarray:
        return np.asarray(self.table, dtype=np.float64)[user_idx]

    def save(self, path):  # pragma: no cover - not needed here
        raise NotImplementedError


def _string_ids(data: Interactions) -> Interactions:
    """Same interactions with ids "u<n>" / "i<n>" (sorted as text, so orders change)."""
    frame = data.to_frame()
    return Interactions.from_arrays(
        [f"u{u}" for u in frame["user"]], [f"i{i}" for i in frame["item"]]
    )


@pytest.fixture(scope="module")
def data() -> Interactions:
    return _string_ids(synthetic(60, 40, rank=3, density=0.2, random_state=0))


@pytest.fixture(scope="module")
def models(data):
    """Model A on everything; model B without a user, an item and some pairs (other vocab)."""
    frame = data.to_frame()
    pairs = list(zip(frame["user"][::7], frame["item"][::7], strict=True))
    pairs = [p for p in pairs if p[0] != "u3" and p[1] != "i5"]
    remaining = data.remove(pairs=pairs, users=["u3"], items=["i5"]).data
    a = ALS(4, iterations=6, random_state=0).fit(data)
    b = ALS(5, iterations=6, random_state=1).fit(remaining)
    return a, b, pairs, remaining


def _ref_score(model: ALS, u: object, i: object) -> float:
    ui = list(model.users_.ids).index(u)
    ii = list(model.items_.ids).index(i)
    return float(np.dot(model.user_factors_[ui], model.item_factors_[ii]))


def _ref_kendall_b(x: np.ndarray, y: np.ndarray) -> float:
    conc = disc = tx = ty = 0
    for j, k in itertools.combinations(range(len(x)), 2):
        dx, dy = np.sign(x[j] - x[k]), np.sign(y[j] - y[k])
        if dx == 0 and dy == 0:
            continue
        if dx == 0:
            tx += 1
        elif dy == 0:
            ty += 1
        elif dx == dy:
            conc += 1
        else:
            disc += 1
    return (conc - disc) / np.sqrt((conc + disc + tx) * (conc + disc + ty))


# ---------------------------------------------------------------------- score agreement
def test_score_agreement_matches_scipy_and_loops(models):
    a, b, pairs, _ = models
    users = [p[0] for p in pairs]
    items = [p[1] for p in pairs]
    sa = np.array([_ref_score(a, u, i) for u, i in pairs])
    sb = np.array([_ref_score(b, u, i) for u, i in pairs])
    got = score_agreement(a, b, users, items)
    assert set(got) == {"pearson", "spearman", "kendall_tau", "mean_abs_gap"}
    assert got["pearson"] == pytest.approx(scipy.stats.pearsonr(sa, sb).statistic, abs=1e-5)
    assert got["spearman"] == pytest.approx(scipy.stats.spearmanr(sa, sb).statistic, abs=1e-5)
    assert got["kendall_tau"] == pytest.approx(_ref_kendall_b(sa, sb), abs=1e-5)
    gap = sum(abs(x - y) for x, y in zip(sa, sb, strict=True)) / len(sa)
    assert got["mean_abs_gap"] == pytest.approx(gap, rel=1e-4)


def test_agreement_with_ties(rng):
    x = rng.integers(0, 4, 40).astype(float)
    y = x + rng.integers(0, 3, 40)
    got = _agreement(x, y)
    assert got["pearson"] == pytest.approx(scipy.stats.pearsonr(x, y).statistic)
    assert got["spearman"] == pytest.approx(scipy.stats.spearmanr(x, y).statistic)
    assert got["kendall_tau"] == pytest.approx(_ref_kendall_b(x, y))


def test_agreement_degenerate():
    same = _agreement(np.arange(5.0), np.arange(5.0))
    assert same["pearson"] == pytest.approx(1.0) and same["kendall_tau"] == pytest.approx(1.0)
    assert same["mean_abs_gap"] == 0.0
    const = _agreement(np.ones(4), np.arange(4.0))
    assert np.isnan(const["pearson"]) and np.isnan(const["kendall_tau"])
    assert const["mean_abs_gap"] == pytest.approx((1 + 0 + 1 + 2) / 4)
    assert all(np.isnan(v) for v in _agreement(np.empty(0), np.empty(0)).values())


def test_score_agreement_unknown_id_is_an_error(models):
    a, b, _, _ = models
    with pytest.raises(Exception, match="u3"):
        score_agreement(a, b, ["u3"], ["i1"])


# ---------------------------------------------------------------------- top-k overlap
def _banned(exclude: Interactions | None, user: object) -> set:
    if exclude is None or user not in exclude.users:
        return set()
    frame = exclude.to_frame()
    return set(frame.loc[frame["user"] == user, "item"])


def _all_scores(model: Recommender, user: object) -> list[tuple[int, object, float]]:
    """(model index, raw item id, score) of every item, through the public raw-id API."""
    items = model.items_.ids.tolist()
    scores = model.score([user] * len(items), items)
    return [(j, item, float(scores[j])) for j, item in enumerate(items)]


def _ref_topk(model: Recommender, user: object, k: int, exclude: Interactions | None) -> set:
    banned = _banned(exclude, user)
    scored = [(-s, j, item) for j, item, s in _all_scores(model, user) if item not in banned]
    return {item for _, _, item in sorted(scored)[:k]}


@pytest.mark.parametrize("k", [1, 5, 39, 60])
@pytest.mark.parametrize("use_exclude", [False, True])
def test_topk_overlap_matches_sets(models, k, use_exclude):
    a, b, _, remaining = models
    exclude = remaining if use_exclude else None
    users = [u for u in b.users_.ids.tolist()][:25]
    jac = []
    for u in users:
        la, lb = _ref_topk(a, u, k, exclude), _ref_topk(b, u, k, exclude)
        if la | lb:
            jac.append(len(la & lb) / len(la | lb))
    got = topk_overlap(a, b, users, k=k, exclude=exclude, batch_size=7)
    assert got == pytest.approx(np.mean(jac))


def test_topk_overlap_self_is_one(models):
    a, _, _, remaining = models
    assert topk_overlap(a, a, a.users_.ids[:10], k=5, exclude=remaining) == 1.0
    assert np.isnan(topk_overlap(a, a, [], k=5))


def test_topk_overlap_ties_break_by_index():
    data = Interactions.from_arrays([0, 1], [0, 1])
    a = TableModel(np.array([[1.0, 1.0], [0.0, 2.0]])).fit(data)
    b = TableModel(np.array([[1.0, 0.0], [0.0, 2.0]])).fit(data)
    # user 0: A ties -> item 0 (lower index), B -> item 0; user 1: both item 1
    assert topk_overlap(a, b, [0, 1], k=1) == 1.0


# ---------------------------------------------------------------------- neighbour overlap
def _ref_neighbours(V: np.ndarray, k: int) -> list[set[int]]:
    out = []
    for i in range(len(V)):
        sims = []
        for j in range(len(V)):
            if j == i:
                continue
            ni, nj = np.linalg.norm(V[i]), np.linalg.norm(V[j])
            cos = float(V[i] @ V[j] / (ni * nj)) if ni > 0 and nj > 0 else 0.0
            sims.append((-cos, j))
        out.append({j for _, j in sorted(sims)[:k]})
    return out


def _ref_neighbour_overlap(A: np.ndarray, B: np.ndarray, k: int) -> float:
    na, nb = _ref_neighbours(A, k), _ref_neighbours(B, k)
    return float(np.mean([len(x & y) / len(x | y) for x, y in zip(na, nb, strict=True)]))


@pytest.mark.parametrize("k", [1, 3, 10, 29, 100])
def test_neighbour_overlap_matches_sets(rng, k):
    A = rng.standard_normal((30, 4))
    B = A[:, :3] + 0.5 * rng.standard_normal((30, 3))  # other dimension, related geometry
    A[7] = 0.0  # a zero vector: similarity 0 to everything
    got = neighbour_overlap(A, B, k=k, batch_size=8)
    assert got == pytest.approx(_ref_neighbour_overlap(A, B, min(k, 29)))


def test_neighbour_overlap_invariances(rng):
    A = rng.standard_normal((50, 6))
    Q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    scale = rng.uniform(0.5, 2.0, (50, 1))
    assert neighbour_overlap(A, (A @ Q) * scale, k=10) == pytest.approx(1.0)
    assert np.isnan(neighbour_overlap(A[:1], A[:1]))
    with pytest.raises(ValueError, match="align"):
        neighbour_overlap(A, A[:-1])


def test_item_vectors_and_alignment(models):
    a, b, _, _ = models
    assert item_vectors(a) is a.item_factors_
    ids, va, vb = common_item_vectors(a, b)
    assert "i5" not in set(ids) and len(ids) == len(b.items_.ids)
    for j, raw in enumerate(ids.tolist()):
        np.testing.assert_array_equal(va[j], a.item_factors_[list(a.items_.ids).index(raw)])
        np.testing.assert_array_equal(vb[j], b.item_factors_[list(b.items_.ids).index(raw)])
    assert 0.0 <= neighbour_overlap(va, vb, k=5) <= 1.0


def test_item_vectors_of_a_module():
    """A model with ``module_`` (NCF): the module's item vectors, detached to numpy."""

    class Tensor:  # the torch calls item_vectors makes, without importing torch
        def __init__(self, a):
            self.a = a

        def detach(self):
            return self

        def cpu(self):
            return self

        def numpy(self):
            return self.a

    class Module:
        def all_item_vectors(self):
            return Tensor(np.full((3, 2), 2.0))

    class Fake:
        module_ = Module()

    v = item_vectors(Fake())
    assert isinstance(v, np.ndarray) and v.shape == (3, 2) and (v == 2).all()
    with pytest.raises(TypeError):
        item_vectors(object())


# ---------------------------------------------------------------------- deleted-item ranks
def _ref_rank(model: Recommender, u: object, i: object, exclude: Interactions | None) -> float:
    banned = _banned(exclude, u)
    everything = _all_scores(model, u)
    own = next(s for _, item, s in everything if item == i)
    higher = tied = 0
    for _, j, s in everything:
        if j == i or j in banned:
            continue
        higher += s > own
        tied += s == own
    return 1 + higher + 0.5 * tied


def test_deleted_item_ranks_match_loops(models):
    _, b, pairs, remaining = models
    pairs = [p for p in pairs if p[0] in b.users_ and p[1] in b.items_]
    got = deleted_item_ranks(b, pairs, remaining, batch_size=5)
    ref = [_ref_rank(b, u, i, remaining) for u, i in pairs]
    np.testing.assert_allclose(got, ref)
    np.testing.assert_allclose(
        deleted_item_ranks(b, pairs, None), [_ref_rank(b, u, i, None) for u, i in pairs]
    )


def test_deleted_item_ranks_with_ties():
    seen = np.array([[1.0, 0, 0, 1, 0], [0, 0, 1, 0, 0]])
    data = Interactions.from_csr(seen)  # users 0, 1; items 0..4
    table = np.array([[1.0, 2.0, 2.0, 5.0, 0.0], [3.0, 3.0, 3.0, 3.0, 1.0]])
    model = TableModel(table).fit(data)
    pairs = [(0, 1), (0, 2), (0, 0), (1, 0), (1, 4), (0, 3)]
    got = deleted_item_ranks(model, pairs, data)
    ref = [_ref_rank(model, u, i, data) for u, i in pairs]
    np.testing.assert_allclose(got, ref)
    # user 0 excludes items 0 and 3: item 1 ties with item 2 -> 1.5; item 3 itself excluded
    assert got[0] == 1.5 and got[5] == 1.0
    # same answer from an Interactions of pairs and from an (n, 2) array
    as_data = Interactions.from_csr(np.array([[0.0, 1, 0, 0, 0], [0, 0, 0, 0, 1]]))
    np.testing.assert_allclose(deleted_item_ranks(model, as_data, data), [got[0], got[4]])
    np.testing.assert_allclose(deleted_item_ranks(model, np.array(pairs), data), got)


def test_rank_summary():
    s = rank_summary(np.array([1.0, 3.0, 12.0, 20.0]), ks=(1, 10))
    assert s == {"mean_rank": 9.0, "median_rank": 7.5, "top@1": 0.25, "top@10": 0.5, "n": 4}
    assert np.isnan(rank_summary(np.empty(0))["mean_rank"])


def test_as_pairs_forms():
    u, i = as_pairs([("a", 1), ("b", 2)])
    assert u.tolist() == ["a", "b"] and i.tolist() == [1, 2]
    u, i = as_pairs([])
    assert len(u) == len(i) == 0
    with pytest.raises(ValueError):
        as_pairs([(1, 2, 3)])
