"""Cornac 3.0.1 MF and BPR: embeddings in, forget, back into a Cornac model, same scores."""

from __future__ import annotations

import numpy as np
import pytest

from recforget import DeletionRequest, forget

cornac = pytest.importorskip("cornac", reason="cornac is in the [interop] extra")
from cornac.data import Dataset  # noqa: E402

from recforget.interop.cornac import data_of, from_cornac, to_cornac  # noqa: E402


@pytest.fixture(scope="module")
def triples():
    rng = np.random.default_rng(0)
    return [
        (f"u{u}", f"i{i}", float(rng.integers(1, 6)))
        for u in range(30)
        for i in range(25)
        if rng.random() < 0.3
    ]


def _scores(cm, users, items):
    return np.array(
        [cm.score(cm.uid_map[u], cm.iid_map[i]) for u, i in zip(users, items, strict=True)]
    )


def test_mf_objective_is_cornacs_sgd_objective(triples):
    """At MF's own stationary point, recforget's objective with MF's parameters certifies it.

    SGD does not converge exactly, so: run recforget sweeps on MF's objective to a certified
    point, put it back into Cornac, and check that Cornac's full-batch gradient of its loss
    (written out from backend_cpu.fit_sgd's update) vanishes there.
    """
    mf = cornac.models.MF(
        k=4, max_iter=100, learning_rate=0.01, lambda_reg=0.05, seed=0, verbose=False
    ).fit(Dataset.from_uir(triples, seed=0))
    ours = from_cornac(mf)
    assert ours.regularization_scaling == "frequency" and ours.biases
    ours.sweeps(ours.seen_, 3000, grad_tol=1e-6)
    back = to_cornac(ours, mf)
    u, i, r = back.train_set.uir_tuple
    U, V, bu, bi = (
        np.asarray(a, np.float64)
        for a in (back.u_factors, back.i_factors, back.u_biases, back.i_biases)
    )
    err = r - (back.global_mean + bu[u] + bi[i] + np.einsum("ij,ij->i", U[u], V[i]))
    gU = np.zeros_like(U)
    np.add.at(gU, u, -err[:, None] * V[i] + 0.05 * U[u])  # the sum of fit_sgd's steps
    gbu = np.zeros_like(bu)
    np.add.at(gbu, u, -err + 0.05 * bu[u])
    assert np.abs(gU).max() < 1e-4 and np.abs(gbu).max() < 1e-4
    # and the SGD model itself is not there: forgetting has to move it
    assert from_cornac(mf).certify(tol=1e-3)["certified"] is False


def test_mf_round_trip(triples):
    mf = cornac.models.MF(
        k=4, max_iter=200, learning_rate=0.01, lambda_reg=0.02, seed=0, verbose=False
    ).fit(Dataset.from_uir(triples, seed=0))
    ours = from_cornac(mf)
    users, items = ["u1", "u2", "u5", "u29"], ["i3", "i4", "i0", "i24"]
    np.testing.assert_allclose(ours.score(users, items), _scores(mf, users, items), atol=1e-5)
    pair = next((u, i) for u, i, _ in triples if u == "u1")
    result = forget(
        ours, DeletionRequest(users=["u3"], pairs=[pair]), "unlearn-als", tol=1e-3, max_sweeps=1000
    )
    assert result.receipt["certified"]
    back = to_cornac(result.model, mf)
    assert "u3" not in back.uid_map and back.num_users == 29
    assert pair not in {
        (back.train_set.user_ids[a], back.train_set.item_ids[b])
        for a, b in zip(*back.train_set.uir_tuple[:2], strict=True)
    }
    np.testing.assert_allclose(
        _scores(back, users, items), result.model.score(users, items), atol=1e-5
    )
    assert "u3" in mf.uid_map  # the original is untouched
    # Cornac sees the remaining data as the model's data
    assert (
        data_of(back).fingerprint()
        == result.model.seen_.reindex(data_of(back).users, data_of(back).items).fingerprint()
    )


def test_bpr_round_trip_through_the_augmented_bilinear_model(triples):
    bpr = cornac.models.BPR(k=4, max_iter=50, seed=0, verbose=False)
    bpr.fit(Dataset.from_uir(triples, seed=0))
    ours = from_cornac(bpr, alpha=5.0, regularization=0.1)
    assert ours.factors == 5  # [x_u, 1] . [y_i, b_i]
    users, items = ["u1", "u2", "u7"], ["i3", "i9", "i0"]
    np.testing.assert_allclose(ours.score(users, items), _scores(bpr, users, items), atol=1e-5)
    result = forget(ours, DeletionRequest(users=["u3"]), "unlearn-als", tol=1e-3, max_sweeps=500)
    assert result.receipt["certified"]
    back = to_cornac(result.model, bpr)
    np.testing.assert_allclose(
        _scores(back, users, items), result.model.score(users, items), atol=1e-5
    )
    ranked = back.score(back.uid_map["u1"])
    mine = result.model.score(
        ["u1"] * back.num_items, [back.train_set.item_ids[j] for j in range(back.num_items)]
    )
    np.testing.assert_allclose(ranked, mine, atol=1e-5)


def test_unsupported_model_is_refused():
    with pytest.raises(ValueError, match="MF and BPR"):
        from_cornac(cornac.models.MostPop())
