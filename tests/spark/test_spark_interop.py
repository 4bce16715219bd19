"""ALSModel directories read and written with pyarrow alone (no JVM)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("pyarrow")

from recforget import ALS, Interactions
from recforget.data.errors import DataError
from recforget.spark.interop import (
    als_from_spark,
    als_to_spark,
    read_als_model,
    spark_sweep,
    write_als_model,
)


def data(seed=0, n_users=20, n_items=12):
    r = np.random.default_rng(seed)
    R = (r.random((n_users, n_items)) < 0.3) * r.integers(1, 6, (n_users, n_items))
    R[np.arange(n_users), r.integers(0, n_items, n_users)] = 3
    return Interactions.from_csr(
        R.astype(float), users=np.arange(n_users) * 5 + 2, items=np.arange(n_items) * 3 + 100
    )


@pytest.mark.parametrize("feedback", ["implicit", "explicit"])
def test_round_trip_keeps_factors_and_scores(tmp_path, feedback):
    d = data()
    model = ALS(
        4,
        feedback=feedback,
        regularization=0.2,
        alpha=2.0,
        iterations=3,
        random_state=0,
        regularization_scaling="frequency",
    ).fit(d)
    als_to_spark(model, tmp_path / "m")
    back = als_from_spark(tmp_path / "m", d)
    np.testing.assert_array_equal(back.user_factors_, model.user_factors_)
    np.testing.assert_array_equal(back.item_factors_, model.item_factors_)
    assert back.feedback == feedback and back.regularization == 0.2 and back.alpha == 2.0
    assert back.regularization_scaling == "frequency"
    users, items = d.users.ids[[0, 3, 7]], d.items.ids[[1, 1, 5]]
    np.testing.assert_array_equal(back.score(users, items), model.score(users, items))
    meta = json.loads((tmp_path / "m" / "metadata" / "part-00000").read_text())
    assert meta["class"] == "org.apache.spark.ml.recommendation.ALSModel" and meta["rank"] == 4
    with pytest.raises(FileExistsError):
        als_to_spark(model, tmp_path / "m")
    als_to_spark(model, tmp_path / "m", overwrite=True)


def test_rows_are_aligned_by_id_not_by_position(tmp_path):
    d = data()
    r = np.random.default_rng(1)
    U = r.standard_normal((d.n_users, 3)).astype(np.float32)
    V = r.standard_normal((d.n_items, 3)).astype(np.float32)
    pu, pi = r.permutation(d.n_users), r.permutation(d.n_items)
    ids_u = d.users.ids.astype(np.int64)
    ids_i = d.items.ids.astype(np.int64)
    write_als_model(tmp_path / "m", ids_u[pu], U[pu], ids_i[pi], V[pi])
    sf = read_als_model(tmp_path / "m")
    X, Y = sf.aligned(d)
    np.testing.assert_array_equal(X, U)
    np.testing.assert_array_equal(Y, V)


def test_bad_directories_are_named(tmp_path):
    d = data()
    with pytest.raises(DataError, match="metadata"):
        read_als_model(tmp_path)
    ids = d.users.ids.astype(np.int64)
    write_als_model(
        tmp_path / "m",
        ids[:-1],
        np.zeros((len(ids) - 1, 2)),
        d.items.ids.astype(np.int64),
        np.zeros((d.n_items, 2)),
    )
    with pytest.raises(DataError, match=r"1 user id\(s\) of the data have no factors"):
        read_als_model(tmp_path / "m").aligned(d)
    with pytest.raises(DataError, match="integers"):
        write_als_model(
            tmp_path / "s", np.array(["a"]), np.zeros((1, 2)), ids, np.zeros((len(ids), 2))
        )


def test_spark_sweep_is_items_then_users():
    from recforget.models._als_objective import Factors

    d = data()
    r = np.random.default_rng(4)
    X0 = r.standard_normal((d.n_users, 3))
    Y0 = r.standard_normal((d.n_items, 3))
    model = ALS.from_factors(
        X0.copy(),
        Y0.copy(),
        d,
        feedback="explicit",
        regularization=0.3,
        regularization_scaling="frequency",
        dtype="float64",
    )
    spark_sweep(model)
    obj = model.objective(d)
    F = Factors(X0.copy(), Y0.copy())
    obj.solve("items", F)
    obj.solve("users", F)
    np.testing.assert_array_equal(model.item_factors_, F.Y)
    np.testing.assert_array_equal(model.user_factors_, F.X)
    other = Factors(X0.copy(), Y0.copy())
    obj.solve("users", other)
    obj.solve("items", other)
    assert not np.allclose(other.Y, F.Y)


def test_rows_missing_from_the_model_can_read_as_zero_rows(tmp_path):
    d = data()
    ids_u = d.users.ids.astype(np.int64)
    ids_i = d.items.ids.astype(np.int64)
    U = np.arange(len(ids_u) * 2, dtype=np.float32).reshape(-1, 2) + 1
    write_als_model(tmp_path / "m", ids_u[1:], U[1:], ids_i, np.ones((len(ids_i), 2)))
    from recforget.spark.interop import _align

    sf = read_als_model(tmp_path / "m")
    X = _align(sf.user_ids, sf.user_factors, d.users, "user", zeros=True)
    np.testing.assert_array_equal(X[0], 0.0)
    np.testing.assert_array_equal(X[1:], U[1:])
