"""Blocks updated by a deletion against blocks rebuilt from the remaining data; the selective
forget's certificate from scratch."""

from __future__ import annotations

import numpy as np
import pytest

import recforget
from recforget import ALS, DeletionRequest, Interactions
from recforget.models._als_objective import Factors

pytestmark = pytest.mark.spark

CONFIGS = {
    "implicit-linear": dict(feedback="implicit", alpha=2.0, regularization=0.5),
    "implicit-bm25-frequency": dict(
        feedback="implicit",
        weighting="bm25",
        bm25_k1=1.2,
        alpha=2.0,
        regularization=0.5,
        regularization_scaling="frequency",
    ),
    "explicit-frequency": dict(
        feedback="explicit", regularization=0.1, regularization_scaling="frequency"
    ),
}


def skewed(seed: int = 5) -> Interactions:
    """Non-contiguous ids, one heavy block of 3, an empty user and an empty item."""
    r = np.random.default_rng(seed)
    R = (r.random((40, 25)) < 0.2) * r.integers(1, 6, (40, 25))
    R[::3] = (r.random((14, 25)) < 0.7) * r.integers(1, 6, (14, 25))
    R[9] = 0
    R[:, 6] = 0
    return Interactions.from_csr(
        R.astype(np.float64), users=np.arange(40) * 7 + 100, items=np.arange(25) * 3 + 1
    )


def requests(data: Interactions) -> dict[str, DeletionRequest]:
    d = data.to_frame()
    rng = np.random.default_rng(0)
    pick = rng.choice(len(d), size=len(d) // 10, replace=False)
    pairs = list(zip(d.user[pick].tolist(), d.item[pick].tolist(), strict=True))
    return {
        "pairs": DeletionRequest(pairs=pairs),
        # a user, an item and pairs: rows of both sides leave, so rows change blocks
        "users-items-pairs": DeletionRequest(
            pairs=pairs[:5], users=[d.user[0], d.user[len(d) // 2]], items=[d.item[3]]
        ),
        # the last user and item only: no row after them moves (no shuffle)
        "last-rows": DeletionRequest(users=[data.users.ids[-1]], items=[data.items.ids[-1]]),
    }


def _decoded(blocks, dtype):
    from recforget.spark.blocks import BLOCK_COLUMNS, decode_block

    rows = blocks.orderBy("block").collect()
    return [
        (r["block"], r["n"], decode_block({c: r[c] for c in BLOCK_COLUMNS}, dtype)) for r in rows
    ]


@pytest.mark.parametrize("config", list(CONFIGS), ids=list(CONFIGS))
@pytest.mark.parametrize(
    ("which", "nb"), [("pairs", 1), ("pairs", 3), ("users-items-pairs", 3), ("last-rows", 3)]
)
def test_blocks_updated_by_a_deletion_equal_blocks_rebuilt_from_the_rest(spark, config, nb, which):
    from recforget.spark import SparkALS, SparkInteractions
    from recforget.spark.blocks import build_blocks

    data = skewed()
    req = requests(data)[which]
    sdata = SparkInteractions.from_interactions(spark, data, partitions=2)
    base = ALS(4, iterations=2, random_state=0, **CONFIGS[config]).fit(data)
    model = SparkALS.from_local(base, spark, n_blocks=nb)
    model.seen_ = sdata
    model.blocks(sdata)  # the old data's blocks, cached (as after a fit on Spark)
    removal = sdata.remove(pairs=req.pairs, users=req.users, items=req.items)
    from recforget.spark.unlearn import _transplant

    new = _transplant(model, removal)
    scales = new.carry_blocks(sdata, removal, scales=True)
    assert scales is not None
    carried = removal.data._cache[new._blocks_key(removal.data)]
    rest = SparkInteractions.from_interactions(spark, removal.data.to_interactions())
    dtype = np.dtype(model.spec().dtype)
    for side in ("users", "items"):
        assert carried[side].rdd.getNumPartitions() == nb
        want = _decoded(build_blocks(rest, side, nb, model.spec()), dtype)
        got = _decoded(carried[side], dtype)
        assert [g[:2] for g in got] == [w[:2] for w in want]
        for (_, _, g), (_, _, w) in zip(got, want, strict=True):
            for name in w:
                np.testing.assert_array_equal(g[name], w[name], err_msg=f"{side}: {name}")
    # the row scales returned with the update are the gradients at zero on the remaining data
    local = ALS(4, **CONFIGS[config]).objective(removal.data.to_interactions())
    F = Factors(new.user_factors_, new.item_factors_)
    for side in ("users", "items"):
        _, b = local.gradients(side, F)
        np.testing.assert_allclose(scales[side], np.sqrt(np.einsum("ij,ij->i", b, b)), rtol=1e-9)


@pytest.mark.parametrize("config", ["implicit-bm25-frequency", "explicit-frequency"])
@pytest.mark.parametrize("solver", ["cg", "cholesky"])
def test_selective_forget_on_updated_blocks_is_certified_from_scratch(spark, config, solver):
    """The selective method on carried blocks: its certificate holds from scratch on the
    collected remaining data, it matches the single-machine selective method, and it re-solves
    far fewer rows than full sweeps would."""
    from recforget.spark import SparkALS, SparkInteractions
    from recforget.spark.unlearn import forget as spark_forget

    data = skewed()
    tol = 3e-3
    base = ALS(4, iterations=1000, grad_tol=1e-5, random_state=0, dtype="float64")
    base.set_params(**CONFIGS[config]).fit(data)
    sdata = SparkInteractions.from_interactions(spark, data, partitions=2)
    model = SparkALS.from_local(base, spark, n_blocks=3)
    model.seen_ = sdata
    model.blocks(sdata)  # cached, as after a fit on Spark: the forget updates them
    req = requests(data)["users-items-pairs"]
    res = spark_forget(model, req, "unlearn-als-selective", tol=tol, solver=solver)
    r = res.receipt
    assert r["timing"]["blocks"] == "updated"
    assert r["certified"] and r["stop_reason"] == "grad_tol"
    remaining = res.data.to_interactions()
    local = recforget.forget(
        base, req, "unlearn-als-selective", tol=tol, accelerate=None, solver=solver
    )
    assert remaining.fingerprint() == local.data.fingerprint()
    fresh = ALS(4, dtype="float64", **CONFIGS[config]).objective(remaining)
    cert = fresh.stationarity(Factors(res.model.user_factors_, res.model.item_factors_))
    assert cert["max_relative"] <= tol
    assert cert["max_relative"] == pytest.approx(r["certificate"]["max_relative"], rel=1e-6)
    # the certificate the passes ended on is the certificate of the final state
    assert res.model.certificate_["max_relative"] == pytest.approx(cert["max_relative"], rel=1e-6)
    assert r["rows_solved"] == local.receipt["rows_solved"]
    assert r["sweeps"] == local.receipt["sweeps"]
    np.testing.assert_allclose(res.model.user_factors_, local.model.user_factors_, atol=1e-6)
    np.testing.assert_allclose(res.model.item_factors_, local.model.item_factors_, atol=1e-6)
    assert r["rows_solved"] < r["sweeps"] * (remaining.n_users + remaining.n_items)
    # its last pass was known from the one before (the other side's partial sums): the same
    # steps and factors as running that pass, which re-solves nothing
    assert r["timing"]["last_pass"].startswith("from the previous pass")
    run = spark_forget(
        model, req, "unlearn-als-selective", tol=tol, solver=solver, other_sums=False
    )
    ran = run.receipt
    assert "last_pass" not in ran["timing"]
    for key in ("passes", "sweeps", "rows_solved", "rows_solved_users", "rows_solved_items"):
        assert r[key] == ran[key], key
    np.testing.assert_array_equal(res.model.user_factors_, run.model.user_factors_)
    np.testing.assert_array_equal(res.model.item_factors_, run.model.item_factors_)
    assert res.model.certificate_["max_relative"] == pytest.approx(
        run.model.certificate_["max_relative"], rel=1e-9
    )


def test_unpersist_releases_the_frame_and_the_cached_blocks(spark):
    """After a forget the old data's blocks are no longer needed: ``unpersist`` drops them from
    the executors' storage and from the cache; a later sweep on the old data rebuilds them."""
    from recforget.spark import SparkALS, SparkInteractions
    from recforget.spark.unlearn import forget as spark_forget

    data = skewed()
    base = ALS(4, iterations=200, grad_tol=1e-4, random_state=0, dtype="float64")
    base.set_params(**CONFIGS["implicit-linear"]).fit(data)
    sdata = SparkInteractions.from_interactions(spark, data, partitions=2).persist()
    model = SparkALS.from_local(base, spark, n_blocks=3)
    model.seen_ = sdata
    old = model.blocks(sdata)
    assert all(b.is_cached for b in old.values()) and sdata.frame.is_cached
    res = spark_forget(model, requests(data)["pairs"], "unlearn-als-selective", tol=3e-3)
    assert res.receipt["timing"]["blocks"] == "updated"
    sdata.unpersist()
    assert not sdata.frame.is_cached
    assert not any(b.is_cached for b in old.values())
    assert not any(isinstance(k, tuple) and k[0] == "blocks" for k in sdata._cache)
    # the forgotten model's own blocks are untouched and still serve its sweeps
    new_blocks = res.model.blocks(res.data)
    assert all(b.is_cached for b in new_blocks.values())
    rebuilt = model.blocks(sdata)
    assert all(b.is_cached for b in rebuilt.values())


@pytest.mark.parametrize("which", ["pairs", "users-pairs"])
def test_removal_found_by_the_block_update_equals_the_scan(spark, which):
    """With the old blocks cached, the forget finds the removed entries in the block update
    (no scan of the interactions): the same removal as the scan, blocks equal to a rebuild,
    and a selective forget equal to the single-machine one and certified from scratch."""
    from recforget.spark import SparkALS, SparkInteractions
    from recforget.spark.blocks import build_blocks
    from recforget.spark.unlearn import _transplant
    from recforget.spark.unlearn import forget as spark_forget

    data = skewed()
    config = CONFIGS["implicit-linear"]
    pairs = requests(data)["pairs"].pairs
    absent = (int(data.users.ids[9]), int(data.items.ids[0]))  # the empty user: known, absent
    if which == "pairs":
        req = DeletionRequest(pairs=[*pairs, absent])
    else:  # users in the middle leave (their side re-deals); the item side reports the entries
        req = DeletionRequest(pairs=[*pairs[:6], absent], users=[data.users.ids[4], absent[0]])
    base = ALS(4, iterations=1000, grad_tol=1e-5, random_state=0, dtype="float64", **config)
    base.fit(data)
    sdata = SparkInteractions.from_interactions(spark, data, partitions=2)
    model = SparkALS.from_local(base, spark, n_blocks=3)
    model.seen_ = sdata
    model.blocks(sdata)

    plan = sdata.plan_removal(pairs=req.pairs, users=req.users, items=req.items)
    new = _transplant(model, plan)
    got = new.carry_removal(sdata, plan, scales=True)
    assert got is not None
    removal, scales, passed = got
    assert passed is None  # no first pass asked
    scan = sdata.remove(pairs=req.pairs, users=req.users, items=req.items)
    for field in ("n_removed", "absent_pairs"):
        assert getattr(removal, field) == getattr(scan, field)
    assert removal.absent_pairs == 1
    for field in ("affected_users", "affected_items", "dropped_users", "user_map", "item_map"):
        np.testing.assert_array_equal(getattr(removal, field), getattr(scan, field))

    def entries(r):
        return sorted(zip(r.removed_users.tolist(), r.removed_items.tolist(), strict=True))

    assert entries(removal) == entries(scan)
    carried = removal.data._cache[new._blocks_key(removal.data)]
    rest = SparkInteractions.from_interactions(spark, scan.data.to_interactions())
    dtype = np.dtype(model.spec().dtype)
    for side in ("users", "items"):
        want = _decoded(build_blocks(rest, side, 3, model.spec()), dtype)
        got_blocks = _decoded(carried[side], dtype)
        assert [g[:2] for g in got_blocks] == [w[:2] for w in want]
        for (_, _, g), (_, _, w) in zip(got_blocks, want, strict=True):
            for name in w:
                np.testing.assert_array_equal(g[name], w[name], err_msg=f"{side}: {name}")
    local_obj = ALS(4, dtype="float64", **config).objective(scan.data.to_interactions())
    F = Factors(new.user_factors_, new.item_factors_)
    for side in ("users", "items"):
        _, b = local_obj.gradients(side, F)
        np.testing.assert_allclose(scales[side], np.sqrt(np.einsum("ij,ij->i", b, b)), rtol=1e-9)

    tol = 3e-3
    res = spark_forget(model, req, "unlearn-als-selective", tol=tol)
    r = res.receipt
    assert r["timing"]["removal"] == "found by the block update"
    # the first users pass runs in the update's job when the users keep their indices
    folded = r["timing"].get("first_pass") == "in the block update's job"
    assert folded == (which == "pairs")
    assert r["removed"]["interactions"] == scan.n_removed and r["removed"]["absent_pairs"] == 1
    local = recforget.forget(
        base, req, "unlearn-als-selective", tol=tol, accelerate=None, solver="cholesky"
    )
    assert r["removed"] == local.receipt["removed"]
    assert (
        r["rows_solved"] == local.receipt["rows_solved"] and r["sweeps"] == local.receipt["sweeps"]
    )
    np.testing.assert_allclose(res.model.user_factors_, local.model.user_factors_, atol=1e-6)
    np.testing.assert_allclose(res.model.item_factors_, local.model.item_factors_, atol=1e-6)
    remaining = res.data.to_interactions()
    assert remaining.fingerprint() == local.data.fingerprint()
    fresh = ALS(4, dtype="float64", **config).objective(remaining)
    cert = fresh.stationarity(Factors(res.model.user_factors_, res.model.item_factors_))
    assert r["certified"] and cert["max_relative"] <= tol
    assert cert["max_relative"] == pytest.approx(r["certificate"]["max_relative"], rel=1e-6)
