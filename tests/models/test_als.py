"""ALS estimator: objective, contract, persistence, recommendation."""

from __future__ import annotations

import numpy as np
import pytest

from recforget import ALS, Interactions, UnknownIdError
from recforget.kernels import als_reference as ref
from recforget.models.base import NotFittedError, clone

CONFIGS = [
    dict(feedback="implicit"),
    dict(feedback="implicit", weighting="bm25", bm25_k1=1.2),
    dict(feedback="implicit", weighting="log", regularization_scaling="frequency"),
    dict(feedback="explicit"),
    dict(feedback="explicit", biases=True, regularization_scaling="frequency"),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(map(str, c.values())))
def test_cholesky_objective_decreases_monotonically(small_data, config):
    model = ALS(
        4,
        iterations=12,
        track_loss=True,
        dtype="float64",
        regularization=0.1,
        alpha=3.0,
        random_state=0,
        **config,
    ).fit(small_data)
    h = np.array(model.loss_history_)
    assert len(h) == 12
    assert np.all(np.diff(h) <= 1e-9 * np.abs(h[:-1])), h


def test_loss_equals_dense_reference(small_ratings, small_data):
    model = ALS(
        3,
        iterations=4,
        alpha=2.0,
        regularization=0.2,
        dtype="float64",
        regularization_scaling="frequency",
        random_state=1,
    ).fit(small_data)
    R = small_ratings
    C, P = 1 + 2.0 * R, (R > 0).astype(float)
    reg_u = 0.2 * np.maximum((R > 0).sum(1), 1)
    reg_i = 0.2 * np.maximum((R > 0).sum(0), 1)
    expect = ref.implicit_objective(C, P, model.user_factors_, model.item_factors_, reg_u, reg_i)
    assert model.loss() == pytest.approx(expect, rel=1e-10)


def test_converged_fit_is_stationary_and_tol_stops(small_data):
    model = ALS(
        3, iterations=500, tol=1e-10, regularization=5.0, alpha=2.0, dtype="float64", random_state=0
    ).fit(small_data)
    assert model.stop_reason_ == "tol"
    assert model.n_iter_ < 500
    assert model.stationarity()["max_relative"] < 1e-4
    short = ALS(3, iterations=2, tol=1e-12, dtype="float64", random_state=0).fit(small_data)
    assert short.stop_reason_ == "iterations" and short.n_iter_ == 2


def test_cg_reaches_cholesky_objective(small_data):
    chol = ALS(4, iterations=30, dtype="float64", random_state=0).fit(small_data)
    cg = ALS(4, iterations=30, solver="cg", cg_steps=3, dtype="float64", random_state=0)
    cg.fit(small_data)
    assert cg.loss() == pytest.approx(chol.loss(), rel=2e-2)


def test_same_seed_same_model_and_seed_recorded(small_data):
    a = ALS(4, iterations=3, random_state=5).fit(small_data)
    b = ALS(4, iterations=3, random_state=5).fit(small_data)
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)
    assert a.seed_ == 5
    c = ALS(4, iterations=3).fit(small_data)
    d = ALS(4, iterations=3, random_state=c.seed_).fit(small_data)
    np.testing.assert_array_equal(c.item_factors_, d.item_factors_)


def test_estimator_contract(small_data):
    model = ALS(5, regularization=0.3, solver="cg")
    assert model.get_params()["regularization"] == 0.3
    assert not model.is_fitted
    with pytest.raises(NotFittedError):
        model.recommend([0])
    assert model.fit(small_data) is model
    fresh = clone(model)
    assert fresh.get_params() == model.get_params()
    assert not fresh.is_fitted
    with pytest.raises(ValueError, match="invalid parameter"):
        model.set_params(nope=1)


@pytest.mark.parametrize(
    "bad",
    [
        dict(factors=0),
        dict(feedback="ratings"),
        dict(solver="lu"),
        dict(regularization=-1),
        dict(alpha=float("nan")),
        dict(tol=0),
        dict(weighting="tfidf"),
        dict(dtype="float16"),
        dict(iterations=2.5),
    ],
)
def test_bad_parameters_are_named(small_data, bad):
    name = next(iter(bad))
    with pytest.raises(ValueError, match=name):
        ALS(**{"factors": 2, **bad}).fit(small_data)


def test_implicit_rejects_negative_values():
    data = Interactions.from_arrays([1, 2], [1, 2], [1.0, -1.0])
    with pytest.raises(ValueError, match="values >= 0"):
        ALS(2).fit(data)


@pytest.mark.parametrize("config", [*CONFIGS[::2], CONFIGS[4]])
def test_save_load_bit_exact(tmp_path, small_data, config):
    model = ALS(4, iterations=3, random_state=0, **config).fit(small_data)
    model.save(tmp_path / "m")
    loaded = ALS.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.user_factors_, model.user_factors_)
    np.testing.assert_array_equal(loaded.item_factors_, model.item_factors_)
    assert loaded.get_params() == model.get_params()
    assert loaded.seen_.fingerprint() == small_data.fingerprint()
    assert loaded.seed_ == model.seed_
    users = list(small_data.users.ids[:5])
    np.testing.assert_array_equal(loaded.recommend(users, k=3)[0], model.recommend(users, k=3)[0])
    manifest = (tmp_path / "m" / "manifest.json").read_text()
    assert small_data.fingerprint() in manifest


def test_load_refuses_a_non_model_dir(tmp_path):
    with pytest.raises(ValueError, match=r"config\.json is missing"):
        ALS.load(tmp_path)


def test_block_structure_recommends_the_withheld_item():
    # two blocks of users/items; every user saw all of their block's items but one
    users, items = [], []
    for u in range(20):
        block = u % 2
        held = (u // 2) % 5
        for j in range(5):
            if j != held:
                users.append(f"u{u}")
                items.append(f"i{block * 5 + j}")
    data = Interactions.from_arrays(users, items)
    model = ALS(2, iterations=20, regularization=0.01, alpha=5.0, random_state=0).fit(data)
    top, _scores = model.recommend([f"u{u}" for u in range(20)], k=1)
    expected = [f"i{(u % 2) * 5 + (u // 2) % 5}" for u in range(20)]
    assert list(top[:, 0]) == expected
    top3, _ = model.recommend(["u0"], k=10, exclude_seen=False)
    assert set(top3[0, :5]) == {f"i{j}" for j in range(5)}


def test_score_and_unknown_ids(small_data):
    model = ALS(3, iterations=3, random_state=0).fit(small_data)
    s = model.score([0, 1], [2, 3])
    expect = [
        model.user_factors_[0] @ model.item_factors_[2],
        model.user_factors_[1] @ model.item_factors_[3],
    ]
    np.testing.assert_allclose(s, expect, rtol=1e-6)
    with pytest.raises(UnknownIdError, match="user id"):
        model.score([999], [1])
    with pytest.raises(UnknownIdError, match="item"):
        model.recommend([0]) and model.score([0], ["zzz"])


def test_from_factors_wraps_external_factors(small_data, rng):
    X = rng.standard_normal((small_data.n_users, 3))
    Y = rng.standard_normal((small_data.n_items, 3))
    model = ALS.from_factors(X, Y, small_data, regularization=0.1, dtype="float64")
    np.testing.assert_array_equal(model.user_factors_, X)
    assert model.stop_reason_ == "external"
    before = model.loss()
    model.sweeps(small_data, 3)
    assert model.loss() < before
    with pytest.raises(ValueError, match=r"do not match|items"):
        ALS.from_factors(X, Y[:-1], small_data)


# ---------------------------------------------------------------------------- damaged directories
@pytest.mark.parametrize("damage", ["truncate-arrays", "edit-config", "edit-manifest", "drop-file"])
def test_a_damaged_model_directory_is_refused_naming_the_file(tmp_path, damage):
    import json

    from recforget import DataError

    rng = np.random.default_rng(0)
    data = Interactions.from_csr((rng.random((12, 9)) < 0.4).astype(float))
    model = ALS(3, iterations=3, random_state=0).fit(data)
    path = model.save(tmp_path / "m")
    assert ALS.load(path).model_hash() == model.model_hash()
    if damage == "truncate-arrays":
        raw = (path / "arrays.npz").read_bytes()
        (path / "arrays.npz").write_bytes(raw[: len(raw) // 2])
        culprit = "arrays.npz"
    elif damage == "edit-config":
        config = json.loads((path / "config.json").read_text())
        config["params"]["regularization"] = 123.0
        (path / "config.json").write_text(json.dumps(config))
        culprit = "config.json"
    elif damage == "edit-manifest":
        manifest = json.loads((path / "manifest.json").read_text())
        manifest["seed"] = 99
        (path / "manifest.json").write_text(json.dumps(manifest))
        culprit = "manifest.json"
    else:
        (path / "arrays.npz").unlink()
        culprit = "arrays.npz"
    with pytest.raises(DataError, match=culprit.replace(".", r"\.")):
        ALS.load(path)
