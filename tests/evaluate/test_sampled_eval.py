"""The bench's sampled evaluation: one seeded user sample for every row, equal to the full
evaluation when it holds every user; and the vectorised row scores it relies on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recforget import ALS
from recforget.data import generators
from recforget.data.split import random_holdout
from recforget.evaluate import report
from recforget.evaluate.accuracy import evaluate_ranking
from recforget.evaluate.bench import run_bench
from recforget.evaluate.rows import (
    evaluation_info,
    sample_eval_users,
    sampled_evaluate,
)
from recforget.models.base import clone
from recforget.models.ncf import NCF
from recforget.models.sharded import ShardedEnsemble


@pytest.fixture(scope="module")
def split():
    data = generators.synthetic(120, 60, rank=3, density=0.15, random_state=0)
    return random_holdout(data, 0.2, random_state=0)


@pytest.fixture(scope="module")
def model(split):
    train, _ = split
    return ALS(factors=6, iterations=10, regularization=0.5, random_state=0).fit(train)


def _active(test):
    return set(test.users.ids[test.user_counts() > 0].tolist())


def test_sample_is_seeded_sorted_and_drawn_from_test_users(split):
    _, test = split
    a = sample_eval_users(test, 30, 5)
    np.testing.assert_array_equal(a, sample_eval_users(test, 30, 5))
    assert len(a) == 30 and len(set(a.tolist())) == 30
    assert set(a.tolist()) <= _active(test)
    idx = test.users.index(a)
    assert np.all(np.diff(idx) > 0)  # index order
    assert not np.array_equal(a, sample_eval_users(test, 30, 6))


def test_a_sample_of_every_user_is_no_sample(split):
    _, test = split
    n = len(_active(test))
    assert sample_eval_users(test, None, 0) is None
    assert sample_eval_users(test, n, 0) is None
    assert sample_eval_users(test, n + 50, 0) is None
    assert len(sample_eval_users(test, n - 1, 0)) == n - 1
    with pytest.raises(ValueError, match="at least one user"):
        sample_eval_users(test, 0, 0)


def test_sampled_evaluation_of_all_users_equals_the_full_evaluation(split, model):
    train, test = split
    full = evaluate_ranking(model, train, test, ks=(5, 10))
    every = np.array(sorted(_active(test), key=lambda u: test.users.index([u])[0]), dtype=object)
    restricted = sampled_evaluate(evaluate_ranking, every)(model, train, test, ks=(5, 10))
    assert restricted == pytest.approx(full, rel=1e-12)
    unchanged = sampled_evaluate(evaluate_ranking, sample_eval_users(test, 10_000, 0))
    assert unchanged is evaluate_ranking


def test_sampled_evaluation_equals_the_full_evaluation_of_the_sampled_users_test_set(split, model):
    """Reference: drop every other user's test items and evaluate everyone."""
    train, test = split
    users = sample_eval_users(test, 25, 3)
    got = sampled_evaluate(evaluate_ranking, users)(model, train, test, ks=(10,))
    others = [u for u in test.users.ids.tolist() if u not in set(users.tolist())]
    only = test.select(np.isin(test.row_of_entry, test.users.index(others), invert=True))
    want = evaluate_ranking(model, train, only, ks=(10,))
    assert got["n_users"] == want["n_users"] == 25
    assert got == pytest.approx(want, rel=1e-12)
    assert got["ndcg@10"] != pytest.approx(evaluate_ranking(model, train, test)["ndcg@10"])


def test_evaluation_info_names_the_sample_without_its_ids(split):
    _, test = split
    users = sample_eval_users(test, 20, 5)
    info = evaluation_info(test, users, 5, 20)
    assert info["users"] == 20 and info["of"] == len(_active(test)) and info["sampled"]
    assert info["fingerprint"] == evaluation_info(test, users.copy(), 5, 20)["fingerprint"]
    assert info["fingerprint"] != evaluation_info(test, users[1:], 5, 20)["fingerprint"]
    assert not any(str(u) in str(info.values()) for u in users[:3] if len(str(u)) > 3)
    full = evaluation_info(test, None, 5, None)
    assert not full["sampled"] and full["users"] == full["of"] and "fingerprint" not in full


def test_bench_judges_every_row_on_the_same_sample():
    data = generators.synthetic(100, 50, rank=3, density=0.15, random_state=0)
    kwargs = dict(
        scenario="users:0.05",
        methods=["unlearn-als", "sisa"],
        model_params={"factors": 4, "iterations": 10, "grad_tol": 1e-2},
        method_options={"sisa": {"shards": 3}},
        extras=False,
    )
    sampled = run_bench(data, eval_users=40, **kwargs)
    ev = sampled["evaluation"]
    assert ev["sampled"] and ev["users"] == 40 and ev["requested"] == 40 and ev["seed"] == 5
    rows = [sampled["original"], *sampled["runs"]]
    assert all(r["metrics"]["n_users"] == 40 for r in rows)
    sisa = next(r for r in sampled["runs"] if r["method"] == "sisa")
    assert sisa["metrics_before"]["n_users"] == 40
    (part,) = report.partition_rows(sampled)
    assert part["method"] == "sisa" and part["shards"] == 3
    assert part["ndcg@10_before"] == sisa["metrics_before"]["ndcg@10"]
    assert "Partition baselines" in report.render_markdown(sampled)
    # a sample as large as the test users is the full evaluation, row for row
    full = run_bench(data, **kwargs)
    whole = run_bench(data, eval_users=10_000, **kwargs)
    assert not whole["evaluation"]["sampled"] and whole["evaluation"]["of"] == ev["of"]
    rows_full, rows_whole = [full["original"], *full["runs"]], [whole["original"], *whole["runs"]]
    for a, b in zip(rows_full, rows_whole, strict=True):
        assert a["metrics"] == pytest.approx(b["metrics"], rel=1e-9)


# ---------------------------------------------------------------- vectorised row scores
@pytest.mark.parametrize("arch", ["gmf", "mlp", "neumf"])
def test_ncf_row_scores_equal_the_module_on_every_pair(split, arch):
    train, _ = split
    m = NCF(arch, factors=4, layers=(8, 4), epochs=1, random_state=0).fit(train)
    rows = m._score_rows(np.arange(train.n_users))
    u, i = np.meshgrid(np.arange(train.n_users), np.arange(train.n_items), indexing="ij")
    with torch.no_grad():
        want = m.module_(torch.as_tensor(u.ravel()), torch.as_tensor(i.ravel())).numpy()
    np.testing.assert_allclose(rows, want.reshape(rows.shape), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("kind", "aggregation"),
    [("user", "mean"), ("interaction", "mean"), ("balanced-user", "attention")],
)
def test_ensemble_row_scores_equal_its_pair_scores(split, kind, aggregation):
    train, _ = split
    ens = ShardedEnsemble(
        clone(ALS(factors=4, iterations=8, regularization=0.5)),
        n_shards=3,
        partition=kind,
        aggregation=aggregation,
        attention_samples=500,
        attention_epochs=2,
        random_state=0,
    ).fit(train)
    users = np.array([0, 5, 7, 7, 31, train.n_users - 1])
    rows = ens._score_rows(users)
    uu = np.repeat(users, train.n_items)
    ii = np.tile(np.arange(train.n_items), len(users))
    np.testing.assert_allclose(rows.ravel(), ens._score_pairs(uu, ii), rtol=1e-5, atol=1e-6)
