"""Rating blocks without a JVM: a block's local CSR and the row kernel give the full solve."""

from __future__ import annotations

import numpy as np
import pytest

from recforget import ALS, Interactions
from recforget.kernels import als as K
from recforget.spark.blocks import (
    ObjectiveSpec,
    PassOptions,
    blocked_gram,
    decode_block,
    encode_block,
    solve_block,
)

CONFIGS = [
    dict(feedback="implicit", alpha=3.0),
    dict(feedback="implicit", weighting="bm25", bm25_k1=1.2, regularization_scaling="frequency"),
    dict(feedback="implicit", weighting="log"),
    dict(feedback="explicit", regularization_scaling="frequency"),
]


def skewed_data(seed: int = 3) -> Interactions:
    """Non-contiguous ids, heavy rows in one block of 7, an empty user and an empty item."""
    r = np.random.default_rng(seed)
    R = (r.random((45, 23)) < 0.15) * r.integers(1, 6, (45, 23))
    R[::7] = (r.random((7, 23)) < 0.8) * r.integers(1, 6, (7, 23))  # block 0 of 7 is heavy
    R[11] = 0  # a user with no interactions
    R[:, 4] = 0  # an item with no interactions
    return Interactions.from_csr(
        R.astype(np.float64), users=np.arange(45) * 13 + 1000, items=np.arange(23) * 7 + 3
    )


def global_stats(data: Interactions) -> dict[str, np.ndarray]:
    """The global statistics the blocks' weights use, from the data on one machine (as
    ``SparkInteractions`` computes them on Spark)."""
    return {
        "n_users": data.user_counts(),
        "n_items": data.item_counts(),
        "len_users": np.bincount(data.row_of_entry, weights=data.values, minlength=data.n_users),
    }


def blocks_of(data: Interactions, side: str, nb: int, spec: ObjectiveSpec, bm25=None):
    u = data.row_of_entry.astype(np.int64)
    i = data.indices.astype(np.int64)
    key = u if side == "users" else i
    n = data.n_users if side == "users" else data.n_items
    dtype = np.dtype(spec.dtype)
    out = []
    for b in range(nb):
        m = key % nb == b
        rec = encode_block(spec, side, b, nb, n, u[m], i[m], data.values[m], bm25)
        out.append(decode_block(rec, dtype))
    return out


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(map(str, c.values())))
@pytest.mark.parametrize("nb", [1, 2, 7])
@pytest.mark.parametrize("side", ["users", "items"])
def test_block_solve_equals_full_kernel_bit_for_bit(config, nb, side):
    from recforget.spark.blocks import bm25_stats

    data = skewed_data()
    model = ALS(5, iterations=2, random_state=1, **config).fit(data)
    spec = ObjectiveSpec.from_params(model.get_params())
    stats = {
        "n_users": data.user_counts(),
        "n_items": data.item_counts(),
        "len_users": np.array(
            [data.values[a:b].sum() for a, b in zip(data.indptr[:-1], data.indptr[1:], strict=True)]
        ),
    }
    bm25 = bm25_stats(spec, stats) if spec.weighting == "bm25" else None
    obj = model.objective(data)
    s = obj.users if side == "users" else obj.items
    X = model.user_factors_ if side == "users" else model.item_factors_
    Y = model.item_factors_ if side == "users" else model.user_factors_
    G = blocked_gram(Y, nb) if spec.feedback == "implicit" else np.zeros((5, 5))
    for solver in ("cholesky", "cg"):
        want = X.copy()
        rows = K.all_rows(len(X))
        if solver == "cholesky":
            K.solve_rows_cholesky(s.indptr, s.indices, s.w, s.v, want, Y, G, s.reg, rows)
        else:
            K.solve_rows_cg(s.indptr, s.indices, s.w, s.v, want, Y, G, s.reg, rows, 3)
        got = X.copy()
        partial = np.zeros((5, 5))
        for blk in blocks_of(data, side, nb, spec, bm25):
            res = solve_block(blk, X, Y, G, PassOptions(solver=solver, post=True))
            got[blk["rows"]] = res["X"]
            partial += res["gram"]
            g, b = K.row_residuals(s.indptr, s.indices, s.w, s.v, want, Y, G, s.reg, blk["rows"])
            np.testing.assert_array_equal(res["g_post"], g)
            np.testing.assert_array_equal(res["b_post"], b)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(partial, blocked_gram(want, nb))
        np.testing.assert_allclose(partial, K.gram(want), rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(map(str, c.values())))
def test_block_weights_match_the_objective(config):
    from recforget.spark.blocks import bm25_stats

    data = skewed_data(5)
    model = ALS(3, iterations=1, random_state=0, dtype="float64", **config).fit(data)
    spec = ObjectiveSpec.from_params(model.get_params())
    stats = global_stats(data)
    bm25 = bm25_stats(spec, stats) if spec.weighting == "bm25" else None
    obj = model.objective(data)
    for side in ("users", "items"):
        s = getattr(obj, side)
        for blk in blocks_of(data, side, 3, spec, bm25):
            for r_loc, r in enumerate(blk["rows"]):
                a, b = blk["indptr"][r_loc], blk["indptr"][r_loc + 1]
                lo, hi = s.indptr[r], s.indptr[r + 1]
                np.testing.assert_array_equal(blk["indices"][a:b], s.indices[lo:hi])
                np.testing.assert_allclose(blk["w"][a:b], s.w[lo:hi], rtol=1e-12)
                np.testing.assert_allclose(blk["v"][a:b], s.v[lo:hi], rtol=1e-12)
            np.testing.assert_array_equal(blk["reg"], s.reg[blk["rows"]])


def test_selective_block_solves_only_rows_over_tolerance():
    data = skewed_data()
    model = ALS(4, iterations=30, random_state=0, dtype="float64").fit(data)
    spec = ObjectiveSpec.from_params(model.get_params())
    X, Y = model.user_factors_.copy(), model.item_factors_
    X[[2, 9]] += 0.5  # two rows far from their solution
    G = K.gram(Y)
    (blk,) = blocks_of(data, "users", 1, spec)
    res = solve_block(blk, X, Y, G, PassOptions(solve="selective", tol=1e-2, floor=1e-9))
    over = np.flatnonzero(res["g_pre"] > 1e-2 * np.maximum(res["b_pre"], 1e-9))
    np.testing.assert_array_equal(res["solved"], over)
    assert {2, 9} <= set(res["solved"].tolist())
    assert len(res["solved"]) < len(X)
    assert res["X"].shape == (len(over), 4)


@pytest.mark.parametrize("side", ["users", "items"])
def test_block_encoding_of_sorted_and_shuffled_entries_is_the_same(side):
    """Entries already in block order skip the sort; the bytes are those of sorted input."""
    data = skewed_data()
    spec = ObjectiveSpec.from_params(ALS(3, **CONFIGS[1]).get_params())
    u = data.row_of_entry.astype(np.int64)
    i = data.indices.astype(np.int64)
    key = u if side == "users" else i
    m = key % 3 == 1
    n = data.n_users if side == "users" else data.n_items
    stats = global_stats(data)
    from recforget.spark.blocks import bm25_stats

    bm25 = bm25_stats(spec, stats)
    shuffle = np.random.default_rng(0).permutation(int(m.sum()))
    ref = encode_block(
        spec, side, 1, 3, n, u[m][shuffle], i[m][shuffle], data.values[m][shuffle], bm25
    )
    blk = decode_block(ref, np.dtype(spec.dtype))
    # the decoded entries come in block order: encoding them again takes the no-sort path
    from recforget.spark.update import block_entries

    again = encode_block(spec, side, 1, 3, n, *block_entries(blk, side), bm25)
    assert again == ref
    assert len(blk["indices"]) > 10


def test_removed_entries_are_found_in_any_entry_order():
    from recforget.spark.update import _hits

    rng = np.random.default_rng(0)
    for trial in range(200):
        nu, ni = int(rng.integers(1, 40)), int(rng.integers(1, 40))
        u, i = np.nonzero(rng.random((nu, ni)) < rng.random())
        order = trial % 3  # user-major (user blocks), item-major (item blocks), shuffled
        o = np.lexsort((u, i)) if order == 1 else rng.permutation(len(u)) if order == 2 else None
        if o is not None:
            u, i = u[o], i[o]
        u, i = u.astype(np.int64), i.astype(np.int64)
        removed = np.unique(rng.integers(0, nu * ni, size=int(rng.integers(0, 30))))
        expect = np.isin(u * ni + i, removed)
        np.testing.assert_array_equal(_hits(u, i, removed.astype(np.int64), ni, nu), expect)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(map(str, c.values())))
@pytest.mark.parametrize("side", ["users", "items"])
def test_other_side_sums_give_the_other_sides_gradients(config, side):
    """Summed over a side's blocks, the partial sums give the other side's row gradients (as
    the row kernel computes them on the other side's blocks) and their entry counts."""
    from recforget.spark.blocks import bm25_stats, other_side_sums, row_ridge

    data = skewed_data(4)
    model = ALS(3, iterations=2, random_state=0, **config).fit(data)
    spec = ObjectiveSpec.from_params(model.get_params())
    stats = global_stats(data)
    bm25 = bm25_stats(spec, stats) if spec.weighting == "bm25" else None
    other = "items" if side == "users" else "users"
    F = {"users": model.user_factors_, "items": model.item_factors_}
    jitter = np.random.default_rng(1).standard_normal(F[other].shape).astype(F[other].dtype)
    X, Y = F[side], F[other] + 0.05 * jitter  # (away from its solution: gradients not ~0)
    shared = K.gram(X) if spec.feedback == "implicit" else np.zeros((3, 3))
    grad_sum, rhs_sum = np.zeros((len(Y), 3)), np.zeros((len(Y), 3))
    counts = np.zeros(len(Y), np.int64)
    for blk in blocks_of(data, side, 3, spec, bm25):
        g, r, c = other_side_sums(blk, np.ascontiguousarray(X[blk["rows"]]), Y, len(Y))
        grad_sum += g
        rhs_sum += r
        counts += c
    Y64 = Y.astype(np.float64)
    lam = row_ridge(spec, counts)
    grad = 2.0 * (Y64 @ shared + lam[:, None] * Y64 + grad_sum)
    (full,) = blocks_of(data, other, 1, spec, bm25)
    args = (full["indptr"], full["indices"], full["w"], full["v"])
    ref_g, ref_r = K.row_gradients(*args, Y, X, shared, full["reg"], K.all_rows(len(Y)))
    np.testing.assert_array_equal(counts, np.diff(full["indptr"]))
    # (summed in another order: equal to rounding, relative to the row's scale ||rhs||)
    scale = np.abs(ref_r).max()
    np.testing.assert_allclose(grad, ref_g, rtol=1e-9, atol=1e-12 * scale)
    np.testing.assert_allclose(2.0 * rhs_sum, ref_r, rtol=1e-9, atol=1e-12 * scale)
    assert np.abs(ref_g).max() > 1e-3 * scale


def test_importing_the_spark_modules_loads_no_pyspark():
    import subprocess
    import sys

    code = (
        "import sys, recforget.spark, recforget.spark.interop, recforget.spark.blocks, "
        "recforget.spark.engine, recforget.spark.unlearn, recforget.cli.spark\n"
        "assert 'pyspark' not in sys.modules and 'py4j' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
