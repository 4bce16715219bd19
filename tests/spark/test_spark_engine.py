"""The Spark engine against the single-machine path and against Spark MLlib itself."""

from __future__ import annotations

import json

import numpy as np
import pytest

import recforget
from recforget import ALS, DeletionRequest, Interactions
from recforget.kernels import als as K
from recforget.spark.interop import als_from_spark, als_to_spark

pytestmark = pytest.mark.spark

IMPLICIT = dict(
    feedback="implicit", alpha=2.0, regularization=0.5, regularization_scaling="frequency"
)
IMPLICIT_BM25 = dict(
    feedback="implicit", weighting="bm25", bm25_k1=1.2, alpha=2.0, regularization=0.5
)
EXPLICIT = dict(feedback="explicit", regularization=0.1, regularization_scaling="frequency")


def skewed(seed: int = 3) -> Interactions:
    r = np.random.default_rng(seed)
    R = (r.random((45, 23)) < 0.15) * r.integers(1, 6, (45, 23))
    R[::7] = (r.random((7, 23)) < 0.8) * r.integers(1, 6, (7, 23))  # block 0 of 7 is heavy
    R[11] = 0  # a user left with no interactions
    R[:, 4] = 0  # an item left with no interactions
    return Interactions.from_csr(
        R.astype(np.float64), users=np.arange(45) * 13 + 1000, items=np.arange(23) * 7 + 3
    )


@pytest.mark.parametrize("nb", [1, 2, 7])
@pytest.mark.parametrize("config", [IMPLICIT, EXPLICIT], ids=["implicit", "explicit"])
def test_half_sweep_equals_single_machine_kernel_bit_for_bit(spark, nb, config):
    from recforget.spark import SparkInteractions
    from recforget.spark.blocks import (
        ObjectiveSpec,
        PassOptions,
        blocked_gram,
        build_blocks,
        run_pass,
    )

    data = skewed()
    model = ALS(5, iterations=2, random_state=1, **config).fit(data)
    sdata = SparkInteractions.from_interactions(spark, data, partitions=3)
    spec = ObjectiveSpec.from_params(model.get_params())
    blocks = build_blocks(sdata, "users", nb, spec)
    assert blocks.rdd.getNumPartitions() == nb
    X, Y = model.user_factors_, model.item_factors_
    G = blocked_gram(Y, nb) if config["feedback"] == "implicit" else np.zeros((5, 5))
    res = run_pass(blocks, nb, X, Y, G, PassOptions(pre=True, post=True))
    s = model.objective(data).users
    rows = K.all_rows(len(X))
    want = X.copy()
    K.solve_rows_cholesky(s.indptr, s.indices, s.w, s.v, want, Y, G, s.reg, rows)
    np.testing.assert_array_equal(res.X, want)
    g0, b0 = K.row_residuals(s.indptr, s.indices, s.w, s.v, X, Y, G, s.reg, rows)
    g1, b1 = K.row_residuals(s.indptr, s.indices, s.w, s.v, want, Y, G, s.reg, rows)
    np.testing.assert_array_equal(res.g_pre, g0)
    np.testing.assert_array_equal(res.b_pre, b0)
    np.testing.assert_array_equal(res.g_post, g1)
    np.testing.assert_array_equal(res.b_post, b1)
    np.testing.assert_array_equal(res.gram, blocked_gram(want, nb))
    np.testing.assert_allclose(res.gram, K.gram(want), rtol=1e-5, atol=1e-9)
    assert np.all(res.X[data.users.index([1000 + 11 * 13])[0]] == 0)  # the empty row: x = 0
    # a selective pass re-solves exactly the rows over the tolerance and returns only those
    sel = run_pass(blocks, nb, X, Y, G, PassOptions(solve="selective", tol=0.05, floor=1e-9))
    over = np.flatnonzero(g0 > 0.05 * np.maximum(b0, 1e-9))
    np.testing.assert_array_equal(sel.solved, over)
    np.testing.assert_array_equal(sel.X[over], want[over])
    untouched = np.setdiff1d(rows, over)
    np.testing.assert_array_equal(sel.X[untouched], X[untouched])


def test_fit_equals_single_machine(spark, planted):
    from recforget.spark import SparkALS, SparkInteractions

    sdata = SparkInteractions.from_interactions(spark, planted)
    params = dict(iterations=4, random_state=3, dtype="float64", **EXPLICIT)
    local = ALS(3, **params).fit(planted)
    dist = SparkALS(3, n_blocks=2, **params).fit(sdata)
    assert dist.n_iter_ == local.n_iter_ == 4
    np.testing.assert_allclose(dist.user_factors_, local.user_factors_, atol=1e-10)
    np.testing.assert_allclose(dist.item_factors_, local.item_factors_, atol=1e-10)


def _request(data: Interactions) -> DeletionRequest:
    d = data.to_frame()
    return DeletionRequest(
        pairs=[(d.user[3], d.item[3]), (d.user[40], d.item[40])],
        users=[d.user[100]],
        items=[d.item[7]],
    )


@pytest.mark.parametrize(
    ("config", "method"),
    [
        (IMPLICIT_BM25, "unlearn-als"),
        (EXPLICIT, "unlearn-als"),
        (IMPLICIT_BM25, "unlearn-als-selective"),
        (EXPLICIT, "unlearn-als-selective"),
    ],
    ids=["implicit-bm25-full", "explicit-full", "implicit-bm25-selective", "explicit-selective"],
)
def test_unlearning_equals_single_machine_and_both_are_certified(spark, planted, config, method):
    from recforget.spark import SparkALS
    from recforget.spark.unlearn import forget as spark_forget

    tol = 3e-3
    model = ALS(3, iterations=1000, grad_tol=1e-5, random_state=0, dtype="float64", **config)
    model.fit(planted)
    request = _request(planted)
    # the Spark engine runs plain ALS sweeps with fixed CG steps per row and no selective
    # finish: compare with the single-machine plain driver, with the same row solver (the
    # Spark selective method solves rows exactly by default; full sweeps take the model's CG
    # steps, inner_tol=None) and the finish off
    opts = {"solver": "cholesky"} if method == "unlearn-als-selective" else {}
    rows = {} if method == "unlearn-als-selective" else {"inner_tol": None, "finish": 0}
    local = recforget.forget(model, request, method, tol=tol, accelerate=None, **opts, **rows)
    dist_model = SparkALS.from_local(model, spark, n_blocks=3)
    dist = spark_forget(dist_model, request, method, tol=tol, **opts)
    r = dist.receipt
    assert r["engine"] == "spark" and r["method"] == method
    assert r["removed"] == local.receipt["removed"]
    assert (
        r["sweeps"] == local.receipt["sweeps"] and r["rows_solved"] == local.receipt["rows_solved"]
    )
    assert r["certified"] and local.receipt["certified"]
    np.testing.assert_allclose(r["objective"], local.receipt["objective"], rtol=1e-9)
    json.dumps(r)  # JSON-ready
    # the remaining data are the single machine's, and the certificate holds from scratch
    remaining = dist.data.to_interactions()
    assert remaining.fingerprint() == local.data.fingerprint()
    assert dist.model.users_ == local.model.users_ and dist.model.items_ == local.model.items_
    np.testing.assert_allclose(dist.model.user_factors_, local.model.user_factors_, atol=1e-6)
    np.testing.assert_allclose(dist.model.item_factors_, local.model.item_factors_, atol=1e-6)
    fresh = ALS(3, dtype="float64", **config).objective(remaining)
    from recforget.models._als_objective import Factors

    cert = fresh.stationarity(Factors(dist.model.user_factors_, dist.model.item_factors_))
    assert cert["max_relative"] <= tol
    assert cert["max_relative"] == pytest.approx(r["certificate"]["max_relative"], rel=1e-6)
    # forgetting again is a no-op; the deleted user is gone
    again = spark_forget(dist.model, DeletionRequest(pairs=request.pairs), method, missing="ignore")
    assert again.receipt["noop"] and again.receipt["removed"]["interactions"] == 0
    assert request.users[0] not in dist.model.users_


def test_restarted_driver_resumes_from_the_last_sweep(spark, planted, tmp_path):
    from recforget.spark import SparkALS, SparkInteractions

    sdata = SparkInteractions.from_interactions(spark, planted)
    params = dict(iterations=4, random_state=5, dtype="float64", n_blocks=2, **EXPLICIT)
    whole = SparkALS(3, **params).fit(sdata)

    class Crash(RuntimeError):
        pass

    def die_after_two(info):
        if info["sweep"] == 2:
            raise Crash

    with pytest.raises(Crash):
        SparkALS(3, checkpoint_dir=tmp_path, progress=die_after_two, **params).fit(sdata)
    assert list(tmp_path.glob("run-*/sweep-00002/users.parquet"))
    resumed = SparkALS(3, checkpoint_dir=tmp_path, **params).fit(sdata)
    assert len(resumed.sweep_seconds_) == 2 and resumed.n_iter_ == 4  # sweeps 3 and 4 only
    np.testing.assert_array_equal(resumed.user_factors_, whole.user_factors_)
    np.testing.assert_array_equal(resumed.item_factors_, whole.item_factors_)


def _mllib(spark, data: Interactions, max_iter: int, implicit: bool, path):
    from pyspark.ml.recommendation import ALS as MLlibALS

    df = spark.createDataFrame(data.to_frame().astype({"user": int, "item": int}))
    als = MLlibALS(
        rank=3,
        maxIter=max_iter,
        regParam=0.1,
        implicitPrefs=implicit,
        alpha=2.0,
        seed=42,
        userCol="user",
        itemCol="item",
        ratingCol="rating",
        numUserBlocks=2,
        numItemBlocks=2,
    )
    model = als.fit(df)
    model.write().overwrite().save(str(path))
    return model, df


@pytest.mark.parametrize("implicit", [True, False], ids=["implicit", "explicit"])
def test_one_sweep_continues_an_mllib_model_exactly(spark, planted, tmp_path, implicit):
    """MLlib at maxIter = m + 1 equals one recforget sweep from its m-iteration factors."""
    from pyspark.ml.recommendation import ALSModel

    from recforget.spark import SparkALS, SparkInteractions
    from recforget.spark.interop import read_als_model, spark_sweep

    data = Interactions.from_frame(planted.to_frame())  # no empty user: MLlib has no such row
    m = 2
    _mllib(spark, data, m, implicit, tmp_path / "m")
    after, df = _mllib(spark, data, m + 1, implicit, tmp_path / "m1")
    want_u, want_i = read_als_model(tmp_path / "m1").aligned(data)

    local = als_from_spark(tmp_path / "m", data, reg_param=0.1, implicit_prefs=implicit, alpha=2.0)
    spark_sweep(local)
    np.testing.assert_allclose(local.user_factors_, want_u, atol=1e-4)
    np.testing.assert_allclose(local.item_factors_, want_i, atol=1e-4)

    sdata = SparkInteractions.from_interactions(spark, data)
    dist = SparkALS.from_spark(
        tmp_path / "m", sdata, reg_param=0.1, implicit_prefs=implicit, alpha=2.0, n_blocks=2
    )
    dist.sweeps(sdata, 1)
    np.testing.assert_allclose(dist.user_factors_, want_u, atol=1e-4)
    np.testing.assert_allclose(dist.item_factors_, want_i, atol=1e-4)

    # round trip: MLlib -> recforget -> ALSModel.load predicts the same
    back = als_from_spark(tmp_path / "m1", data, reg_param=0.1, implicit_prefs=implicit, alpha=2.0)
    als_to_spark(back, tmp_path / "rt")
    loaded = ALSModel.load(str(tmp_path / "rt"))
    p0 = after.transform(df).orderBy("user", "item").toPandas()
    p1 = loaded.transform(df).orderBy("user", "item").toPandas()
    np.testing.assert_array_equal(p1["prediction"].to_numpy(), p0["prediction"].to_numpy())
    mine = back.score(p0["user"].to_numpy(), p0["item"].to_numpy())
    np.testing.assert_allclose(mine, p0["prediction"].to_numpy(), rtol=1e-5, atol=1e-5)


def test_cli_forget_on_parquet_writes_an_alsmodel_mllib_loads(spark, planted, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from click.testing import CliRunner
    from pyspark.ml.recommendation import ALSModel

    from recforget.cli import main

    frame = planted.to_frame()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "ratings.parquet")
    runner = CliRunner()
    src = str(tmp_path / "ratings.parquet")
    common = ["--n-blocks", "2", "--reg-param", "0.1"]
    fit = ["spark", "fit", src, "--out", str(tmp_path / "fitted"), "--rank", "3"]
    res = runner.invoke(main, [*fit, "--max-iter", "2", *common])
    assert res.exit_code == 0, res.output
    assert "sweep 2:" in res.output and ALSModel.load(str(tmp_path / "fitted")).rank == 3
    # a converged model to forget from (trained on one machine, saved in MLlib's format)
    data = Interactions.from_frame(frame)
    converged = als_from_spark(tmp_path / "fitted", data, reg_param=0.1)
    converged.set_params(iterations=500, grad_tol=1e-5).fit(data)
    als_to_spark(converged, tmp_path / "model")
    user = int(frame.user[0])
    (tmp_path / "req.json").write_text(json.dumps({"users": [user]}))
    req = str(tmp_path / "req.json")
    forget = ["spark", "forget", src, str(tmp_path / "model"), req, "--out", str(tmp_path / "new")]
    res = runner.invoke(main, [*forget, "--tol", "3e-3", *common])
    assert res.exit_code == 0, res.output
    assert "sweep 1:" in res.output and "certified" in res.output
    receipt = json.loads((tmp_path / "new" / "receipt.json").read_text())
    assert receipt["certified"] and receipt["removed"]["users"] == 1
    loaded = ALSModel.load(str(tmp_path / "new"))
    ids = {r["id"] for r in loaded.userFactors.collect()}
    assert user not in ids and len(ids) == frame.user.nunique() - 1
    # the selective method reports per pass, and certifies too
    out = ["--out", str(tmp_path / "sel"), "--method", "unlearn-als-selective"]
    res = runner.invoke(main, [*forget[:-2], *out, "--tol", "3e-3", *common])
    assert res.exit_code == 0, res.output
    assert "sweep 1 (users):" in res.output and "sweep 1 (items):" in res.output
    receipt = json.loads((tmp_path / "sel" / "receipt.json").read_text())
    assert receipt["certified"] and receipt["method"] == "unlearn-als-selective"


@pytest.mark.spark
def test_map_blocks_is_map_in_arrow(spark):
    """The shortcut around ``mapInArrow``'s per-call column lookups returns what it returns."""
    import pyarrow as pa

    from recforget.spark.blocks import map_blocks

    frame = spark.createDataFrame([(k, float(k) / 3) for k in range(20)], "k long, v double")

    def double(batches):
        for b in batches:
            yield pa.RecordBatch.from_arrays(
                [b.column(0), pa.compute.multiply(b.column(1), 2.0)], names=["k", "v"]
            )

    schema = "k long, v double"
    got = sorted(tuple(r) for r in map_blocks(frame, double, schema).collect())
    want = sorted(tuple(r) for r in frame.mapInArrow(double, schema).collect())
    assert got == want and len(got) == 20
    again = sorted(tuple(r) for r in map_blocks(frame, double, schema).collect())
    assert again == want  # the kept column references serve a second call
