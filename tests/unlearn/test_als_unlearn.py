"""Unlearn-ALS and its baselines: exactness, certificates, contracts."""

from __future__ import annotations

import hashlib
import json
from typing import ClassVar

import numpy as np
import pytest

from recforget import ALS, DeletionRequest, Interactions, UnknownIdError, forget
from recforget.data.forgotten import ForgottenIds, IdKeyError
from recforget.kernels import als_reference as ref
from recforget.testing import UnlearnerContract

TOL = 1e-5


def _fit(data, **kw):
    params = dict(
        regularization=1.0,
        alpha=3.0,
        grad_tol=TOL,
        iterations=2000,
        dtype="float64",
        random_state=0,
    )
    params.update(kw)
    return ALS(4, **params).fit(data)


class TestRetrainContract(UnlearnerContract):
    method = "retrain"
    exact = True

    def make_model(self, data):
        return _fit(data)


class TestWarmstartContract(UnlearnerContract):
    method = "warmstart"
    options: ClassVar[dict] = {"sweeps": 3}

    def make_model(self, data):
        return _fit(data)


class TestUnlearnALSContract(UnlearnerContract):
    method = "unlearn-als"
    exact = True

    def make_model(self, data):
        return _fit(data)


class TestSelectiveContract(UnlearnerContract):
    method = "unlearn-als-selective"
    exact = True

    def make_model(self, data):
        return _fit(data)


class TestSelectiveExplicitBiasContract(UnlearnerContract):
    method = "unlearn-als-selective"
    exact = True

    def make_model(self, data):
        return _fit(data, feedback="explicit", biases=True)


def _pairs(data: Interactions, rng, n):
    pick = rng.choice(data.nnz, n, replace=False)
    return [(data.users.ids[data.row_of_entry[e]], data.items.ids[data.indices[e]]) for e in pick]


@pytest.mark.parametrize(
    "config",
    [
        dict(),
        dict(weighting="bm25", bm25_k1=1.2, regularization_scaling="frequency"),
        dict(feedback="explicit", biases=True, regularization_scaling="frequency"),
    ],
    ids=["hkv", "bm25-frequency", "explicit-bias"],
)
@pytest.mark.parametrize("method", ["unlearn-als", "unlearn-als-selective"])
def test_deleted_values_leave_no_trace(small_ratings, rng, config, method):
    """Changing the deleted cells' old values changes neither the result nor its objective."""
    data = Interactions.from_csr(small_ratings)
    model = _fit(data, **config)
    pairs = _pairs(data, rng, 8)
    request = DeletionRequest(pairs=pairs)
    # the same training data except for the deleted cells' values
    R2 = small_ratings.copy()
    for u, i in pairs:
        R2[u, i] = 1.0 if R2[u, i] != 1.0 else 5.0
    data2 = Interactions.from_csr(R2)
    assert data2.fingerprint() != data.fingerprint()
    twin = ALS.from_factors(
        model.user_factors_,
        model.item_factors_,
        data2,
        user_bias=model.user_bias_,
        item_bias=model.item_bias_,
        **{k: v for k, v in model.get_params().items() if k != "factors"},
    )
    a = forget(model, request, method, tol=TOL)
    b = forget(twin, request, method, tol=TOL)
    assert a.receipt["data_fingerprint_after"] == b.receipt["data_fingerprint_after"]
    np.testing.assert_array_equal(a.model.user_factors_, b.model.user_factors_)
    np.testing.assert_array_equal(a.model.item_factors_, b.model.item_factors_)
    assert a.receipt["objective"] == b.receipt["objective"]
    assert a.receipt["certified"] and a.receipt["certificate"]["max_relative"] <= TOL


def test_unlearned_objective_is_the_retraining_objective(small_ratings, rng):
    """The receipt's objective is the dense HKV objective of the remaining data."""
    data = Interactions.from_csr(small_ratings)
    model = _fit(data)
    pairs = _pairs(data, rng, 5)
    result = forget(model, DeletionRequest(pairs=pairs), "unlearn-als", tol=TOL)
    R = small_ratings.copy()
    for u, i in pairs:
        R[u, i] = 0.0  # an ordinary unobserved cell: p = 0, c = 1
    C, P = 1 + 3.0 * R, (R > 0).astype(float)
    X, Y = result.model.user_factors_, result.model.item_factors_
    assert result.receipt["objective"] == pytest.approx(
        ref.implicit_objective(C, P, X, Y, 1.0, 1.0), rel=1e-10
    )
    # one side fixed: every user row equals the closed form on the remaining data
    for u in range(5):
        expect = ref.implicit_solve_row(C[u], P[u], Y, 1.0)
        np.testing.assert_allclose(X[u], expect, atol=1e-4 * np.abs(expect).max())


def test_selective_and_full_reach_the_same_certificate_and_point(small_ratings, rng):
    data = Interactions.from_csr(small_ratings)
    model = _fit(data)
    request = DeletionRequest(pairs=_pairs(data, rng, 4))
    full = forget(model, request, "unlearn-als", tol=TOL)
    sel = forget(model, request, "unlearn-als-selective", tol=TOL)
    retrain = forget(model, request, "retrain", tol=TOL)
    for r in (full, sel, retrain):
        assert r.receipt["certified"]
    assert sel.receipt["objective"] == pytest.approx(full.receipt["objective"], rel=1e-6)
    plain = forget(model, request, "unlearn-als", tol=TOL, accelerate=None)
    assert sel.receipt["rows_solved"] < plain.receipt["rows_solved"]  # vs plain full sweeps
    np.testing.assert_allclose(
        sel.model.user_factors_ @ sel.model.item_factors_.T,
        full.model.user_factors_ @ full.model.item_factors_.T,
        atol=1e-3,
    )


def test_selective_resolves_touched_rows_even_under_a_loose_tolerance(small_ratings, rng):
    # a loose tolerance lets a single deleted cell's users/items through the gradient test;
    # the first round re-solves them anyway, so their factors move
    data = Interactions.from_csr(small_ratings)
    model = _fit(data)
    request = DeletionRequest(pairs=_pairs(data, rng, 2))
    loose = 0.5
    lazy = forget(model, request, "unlearn-als-selective", tol=loose, touched_first=False)
    eager = forget(model, request, "unlearn-als-selective", tol=loose)
    removal = data.remove(pairs=request.pairs)
    n_touched = len(removal.affected_users) + len(removal.affected_items)
    assert lazy.receipt["rows_solved"] == 0
    assert eager.receipt["rows_solved"] >= n_touched
    users = removal.affected_users
    assert not np.allclose(eager.model.user_factors_[users], model.user_factors_[users])
    assert eager.receipt["certified"]


def test_default_tolerances_certify_at_the_models_rule_or_the_methods_default(small_data):
    from recforget.unlearn.als import DEFAULT_SELECTIVE_TOL, DEFAULT_TOL

    request = DeletionRequest(pairs=[(small_data.users.ids[0], small_data.items.ids[3])])
    bare = _fit(small_data, grad_tol=None, iterations=40)  # no stopping rule of its own
    defaults = {"unlearn-als": DEFAULT_TOL, "unlearn-als-selective": DEFAULT_SELECTIVE_TOL}
    for method, tol in defaults.items():
        receipt = forget(bare, request, method).receipt
        assert receipt["certificate"]["tol"] == tol
        assert receipt["certified"] and receipt["certificate"]["max_relative"] <= tol
    own = _fit(small_data, grad_tol=3e-3)  # the retrain oracle's rule is the model's
    for method in (*defaults, "retrain"):
        assert forget(own, request, method).receipt["certificate"]["tol"] == 3e-3


def test_whole_item_deletion_removes_the_row(small_data):
    model = _fit(small_data)
    item = small_data.items.ids[2]
    result = forget(model, DeletionRequest(items=[item]), "unlearn-als-selective", tol=TOL)
    assert result.model.item_factors_.shape == (small_data.n_items - 1, 4)
    assert item not in result.model.items_
    assert result.receipt["removed"]["items"] == 1
    assert result.receipt["removed"]["interactions"] == int(small_data.item_counts()[2])
    with pytest.raises(KeyError, match="unknown item"):
        result.model.score([small_data.users.ids[0]], [item])


def test_unlearn_refuses_other_data_and_methods(small_data):
    model = _fit(small_data)
    other = small_data.select(np.arange(small_data.nnz) > 0)
    with pytest.raises(ValueError, match="differs"):
        forget(model, DeletionRequest(users=[0]), data=other)
    with pytest.raises(ValueError, match="unknown method"):
        forget(model, DeletionRequest(users=[0]), method="magic")


KEY = bytes(range(32))


def test_forgetting_persists_through_save_and_load_under_the_id_key(tmp_path, small_data):
    model = _fit(small_data)
    result = forget(model, DeletionRequest(users=[1]), "unlearn-als-selective", tol=TOL, id_key=KEY)
    result.model.save(tmp_path / "m")
    loaded = ALS.load(tmp_path / "m")
    assert loaded.deletions_[0]["method"] == "unlearn-als-selective"
    again = forget(loaded, DeletionRequest(users=[1]), "unlearn-als", id_key=KEY.hex())
    assert again.receipt["noop"] and again.receipt["removed"]["already_forgotten"] == 1
    # neither the raw id nor its plain sha256 is stored: only a hash under the caller's key
    entry = json.loads((tmp_path / "m" / "manifest.json").read_text())["forgotten"]
    assert entry["scheme"] == "hmac-sha256" and entry["counts"] == {"users": 1, "items": 0}
    text = json.dumps(entry)
    assert hashlib.sha256(b"1").hexdigest() not in text and '"1"' not in text
    assert KEY.hex() not in (tmp_path / "m" / "manifest.json").read_text()
    # another key, or none, is refused rather than losing the record
    with pytest.raises(IdKeyError, match="key id"):
        forget(loaded, DeletionRequest(users=[1]), "unlearn-als", id_key=bytes(32))
    with pytest.raises(IdKeyError, match="RECFORGET_ID_KEY"):
        forget(loaded, DeletionRequest(users=[2]), "unlearn-als")


def test_without_an_id_key_the_saved_model_keeps_counts_only(tmp_path, small_data, monkeypatch):
    monkeypatch.delenv("RECFORGET_ID_KEY", raising=False)
    model = _fit(small_data)
    first = forget(model, DeletionRequest(users=[1]), "unlearn-als-selective", tol=TOL)
    # in memory the record still recognises what it forgot
    again = forget(first.model, DeletionRequest(users=[1]), "unlearn-als-selective", tol=TOL)
    assert again.receipt["noop"] and again.receipt["removed"]["already_forgotten"] == 1
    first.model.save(tmp_path / "m")
    entry = json.loads((tmp_path / "m" / "manifest.json").read_text())["forgotten"]
    assert entry == {"scheme": "counts", "counts": {"users": 1, "items": 0}}
    loaded = ALS.load(tmp_path / "m")
    with pytest.raises(UnknownIdError):  # the file does not know who was forgotten
        forget(loaded, DeletionRequest(users=[1]), "unlearn-als")
    # the environment's key is used when none is passed
    monkeypatch.setenv("RECFORGET_ID_KEY", KEY.hex())
    second = forget(loaded, DeletionRequest(users=[2]), "unlearn-als-selective", tol=TOL)
    assert ForgottenIds.of(second.model).to_manifest()["counts"] == {"users": 2, "items": 0}
    assert forget(
        second.model, DeletionRequest(users=[2]), "unlearn-als-selective", id_key=KEY
    ).receipt["noop"]


def test_pairs_naming_a_forgotten_user_are_gone_already(small_data):
    model = _fit(small_data)
    first = forget(model, DeletionRequest(users=[1]), "unlearn-als-selective", tol=TOL)
    rest = first.model.seen_
    item = rest.items.ids[rest.indices[rest.indptr[0]]]  # an item user 0 rated
    gone_item = small_data.items.ids[small_data.indices[small_data.indptr[1]]]
    request = DeletionRequest(pairs=[(1, gone_item), (rest.users.ids[0], item)])
    second = forget(first.model, request, "unlearn-als-selective", tol=TOL)
    assert second.receipt["removed"]["interactions"] == 1
    assert second.model.seen_.nnz == rest.nnz - 1


def test_a_forgotten_integer_id_asked_again_as_text_is_a_noop(small_data):
    model = _fit(small_data)
    first = forget(model, DeletionRequest(users=[1]), "unlearn-als-selective", tol=TOL)
    again = forget(first.model, DeletionRequest(users=["1"]), "unlearn-als-selective", tol=TOL)
    assert again.receipt["noop"] and again.receipt["removed"]["already_forgotten"] == 1


def test_works_on_factors_from_another_library(small_ratings):
    implicit = pytest.importorskip("implicit")
    import scipy.sparse as sp
    from threadpoolctl import threadpool_limits

    data = Interactions.from_csr(small_ratings)
    C = sp.csr_matrix(small_ratings)
    C.data = 1 + 3.0 * C.data
    with threadpool_limits(1, "blas"):
        ext = implicit.cpu.als.AlternatingLeastSquares(
            factors=4, regularization=1.0, alpha=1.0, iterations=5, random_state=0
        )
        ext.fit(C, show_progress=False)
    model = ALS.from_factors(
        ext.user_factors, ext.item_factors, data, regularization=1.0, alpha=3.0, dtype="float64"
    )
    result = forget(model, DeletionRequest(users=[0, 1]), "unlearn-als", tol=TOL)
    assert result.receipt["certified"]
    assert result.model.user_factors_.shape == (data.n_users - 2, 4)


@pytest.mark.realdata
@pytest.mark.slow
def test_movielens_100k_unlearn_als_matches_retraining():
    from recforget.evaluate.bench import run_bench

    result = run_bench(
        "ml-100k",
        scenario="interactions:0.01",
        methods=["retrain", "unlearn-als", "unlearn-als-selective"],
        model_params=dict(factors=32, regularization=60.0, iterations=200, grad_tol=1e-2),
        extras=False,
    )
    runs = {r["method"]: r for r in result["runs"]}
    retrain, full = runs["retrain"], runs["unlearn-als"]
    assert all(r["certified"] for r in runs.values())
    assert full["gap_closed"] >= 0.8
    ndcg = retrain["metrics"]["ndcg@10"]
    assert abs(full["metrics"]["ndcg@10"] - ndcg) <= 0.02 * ndcg
    assert full["sweeps"] < retrain["sweeps"]  # work, not wall time


def test_unlearn_als_matches_retraining_accuracy_on_planted_structure():
    from recforget.data import synthetic
    from recforget.data.split import random_holdout
    from recforget.evaluate.accuracy import evaluate_ranking
    from recforget.evaluate.scenarios import make_request

    data = synthetic(300, 120, rank=4, density=0.1, noise=0.3, random_state=0)
    train, test = random_holdout(data, 0.2, random_state=0)
    model = ALS(
        8, regularization=2.0, alpha=5.0, grad_tol=1e-4, iterations=3000, dtype="float64",
        random_state=0,
    ).fit(train)  # fmt: skip
    request = make_request(train, "interactions:0.05", random_state=1)
    retrain = forget(model, request, "retrain")
    full = forget(model, request, "unlearn-als")
    test_after = test  # pairs only: the vocabularies are unchanged
    acc_r = evaluate_ranking(retrain.model, retrain.data, test_after, ks=(10,))
    acc_u = evaluate_ranking(full.model, full.data, test_after, ks=(10,))
    assert acc_r["ndcg@10"] > 0.3  # the structure is learnt
    for key in ("ndcg@10", "recall@10", "auc"):
        assert acc_u[key] == pytest.approx(acc_r[key], rel=0.02)
    users = [p[0] for p in request.pairs]
    items = [p[1] for p in request.pairs]
    before = model.score(users, items).mean()
    after_r = retrain.model.score(users, items).mean()
    after_u = full.model.score(users, items).mean()
    assert after_r < before  # the trace a retrain removes ...
    assert abs(after_u - after_r) <= 0.1 * (before - after_r)  # ... unlearn-als removes too
