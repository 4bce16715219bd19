"""The stream's gradient bookkeeping kernels against direct numpy computations."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recforget.kernels.als import row_gradients
from recforget.kernels.als_stream import (
    gradients_and_dots,
    moved_dots,
    propagate_rows,
    remove_entries,
)


def _problem(seed: int):
    rng = np.random.default_rng(seed)
    n, m, k = 12, 15, 5
    A = sp.random(n, m, density=0.5, random_state=seed, format="csr")
    A.data[:] = rng.integers(1, 5, A.nnz)
    w = (3.0 * A.data).astype(np.float64)
    v = 1.0 + w
    w[::7] = 0.0  # tombstones are skipped
    v[::7] = 0.0
    X = rng.normal(size=(n, k)).astype(np.float32)
    Y = rng.normal(size=(m, k)).astype(np.float32)
    rows = np.array([1, 4, 7, 8], dtype=np.int64)
    X_old = X[rows].astype(np.float64)
    X_new = X_old + 0.05 * rng.normal(size=X_old.shape)
    X_new[2] = X_old[2]  # a row that did not move
    return A, w, v, Y, rows, X_old, X_new, rng


def _changes(A, w, v, Y, rows, X_old, X_new):
    """Every entry's change of its neighbour's gradient and value at zero, in order."""
    out = []
    for t, r in enumerate(rows):
        for e in range(A.indptr[r], A.indptr[r + 1]):
            if w[e] == 0 and v[e] == 0:
                continue
            j, y = A.indices[e], Y[A.indices[e]].astype(np.float64)
            x, x2 = X_old[t], X_new[t]
            dg = 2 * (w[e] * ((x2 @ y) * x2 - (x @ y) * x) - v[e] * (x2 - x))
            out.append((j, dg, 2 * v[e] * (x2 - x), t))
    return out


def _run(
    A, w, v, Y, rows, X_old, X_new, budget, cheap, grad, rhs, err, err_b, pushed=None, scales=None
):
    """One propagation; ``budget`` per neighbour, or ``scales = (b, eb, gn, room, floor)``."""
    if scales is None:  # a budget as its scale, eb, gradient norm, room and floor
        scales = (np.maximum(budget, 0.0), np.zeros(len(Y)), np.maximum(-budget, 0.0), 1.0, 0.0)
    step = np.linalg.norm(X_new - X_old, axis=1)
    dirty = np.zeros(len(Y), dtype=bool)
    pushed = np.zeros(len(Y)) if pushed is None else pushed
    indptr, indices = A.indptr.astype(np.int64), A.indices.astype(np.int32)
    propagate_rows(
        indptr,
        indices,
        w,
        v,
        rows,
        *moved_dots(indptr, indices, rows, X_old, X_new, Y),
        X_old,
        X_new,
        step,
        np.linalg.norm(X_old, axis=1),
        np.linalg.norm(X_new, axis=1),
        np.einsum("ij,ij->i", X_new - X_old, X_old),
        np.linalg.norm(Y.astype(np.float64), axis=1),
        grad,
        rhs,
        err,
        err_b,
        *scales,
        cheap,
        dirty,
        pushed,
    )
    return dirty


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_tier_applies_every_change(seed):
    A, w, v, Y, rows, X_old, X_new, rng = _problem(seed)
    m, k = Y.shape
    grad, rhs = rng.normal(size=(m, k)), rng.normal(size=(m, k))
    g0, b0 = grad.copy(), rhs.copy()
    err, err_b = np.zeros(m), np.zeros(m)
    dirty = _run(A, w, v, Y, rows, X_old, X_new, np.full(m, -1.0), 0.0, grad, rhs, err, err_b)
    want_g, want_b = g0.copy(), b0.copy()
    for j, dg, db, _ in _changes(A, w, v, Y, rows, X_old, X_new):
        want_g[j] += dg
        want_b[j] += db
    np.testing.assert_allclose(grad, want_g, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(rhs, want_b, rtol=1e-10, atol=1e-10)
    assert not err.any() and not err_b.any()
    touched = {j for j, _, db, t in _changes(A, w, v, Y, rows, X_old, X_new) if t != 2}
    assert set(np.flatnonzero(dirty)) == touched


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bound_tiers_add_the_change_norms(seed):
    A, w, v, Y, rows, X_old, X_new, rng = _problem(seed)
    m, k = Y.shape
    changes = _changes(A, w, v, Y, rows, X_old, X_new)
    # (finite budgets: the kernel is compiled with fastmath, which assumes no inf)
    for cheap in (1.0, 0.0):  # tier 1 (Cauchy-Schwarz) everywhere, then tier 2 (exact norm)
        grad = rng.normal(size=(m, k))
        g0 = grad.copy()
        err, err_b = np.zeros(m), np.zeros(m)
        _run(A, w, v, Y, rows, X_old, X_new, np.full(m, 1e9), cheap, grad, grad * 0, err, err_b)
        assert np.array_equal(grad, g0)  # nothing applied
        norms, norms_b = np.zeros(m), np.zeros(m)
        for j, dg, db, _ in changes:
            norms[j] += np.linalg.norm(dg)
            norms_b[j] += np.linalg.norm(db)
        assert np.all(err >= norms * (1 - 1e-9))  # a bound
        np.testing.assert_allclose(err_b, norms_b, rtol=1e-9, atol=1e-12)
        if cheap == 0.0:  # tier 2 is the exact norm (up to its rounding margin)
            np.testing.assert_allclose(err, norms, rtol=1e-5, atol=1e-12)
        else:
            assert err.sum() > 1.5 * norms.sum()  # the loose bound


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_mixed_tiers_keep_every_gradient_within_its_bound(seed):
    A, w, v, Y, rows, X_old, X_new, rng = _problem(seed)
    m, k = Y.shape
    grad, rhs = rng.normal(size=(m, k)), rng.normal(size=(m, k))
    want_g, want_b = grad.copy(), rhs.copy()
    for j, dg, db, _ in _changes(A, w, v, Y, rows, X_old, X_new):
        want_g[j] += dg
        want_b[j] += db
    err = rng.uniform(0, 0.05, m)
    err_b = err.copy()
    e0, eb0 = err.copy(), err_b.copy()
    budget = rng.uniform(0, 20.0, m)  # entries change gradients by about 1-10
    g0 = grad.copy()
    pushed = np.zeros(m)
    dirty = _run(A, w, v, Y, rows, X_old, X_new, budget, 0.3, grad, rhs, err, err_b, pushed)
    # how far each row was moved, whatever the tier: at least the norm of its total change
    assert np.all(pushed >= np.linalg.norm(want_g - g0, axis=1) * (1 - 1e-9) - 1e-12)
    per_entry = np.zeros(m)
    for j, dg, _, _ in _changes(A, w, v, Y, rows, X_old, X_new):
        per_entry[j] += np.linalg.norm(dg)
    assert np.array_equal(pushed > 0, per_entry > 0)
    gap = np.linalg.norm(want_g - grad, axis=1)
    gap_b = np.linalg.norm(want_b - rhs, axis=1)
    assert np.all(gap <= err - e0 + 1e-12) and np.all(gap_b <= err_b - eb0 + 1e-12)
    assert np.all((err <= np.maximum(budget, e0) + 1e-15) | dirty)
    assert dirty.any() and (err > e0).any()  # both kinds happened


def test_budget_is_the_share_of_the_room_under_the_scale():
    A, w, v, Y, rows, X_old, X_new, rng = _problem(4)
    m, k = Y.shape
    b, eb, gn = rng.uniform(0, 30, m), rng.uniform(0, 5, m), rng.uniform(0, 3, m)
    room, floor = 0.4, 6.0
    budget = room * np.maximum(b - eb, floor) - gn  # the documented budget
    out = []
    for scales in ((b, eb, gn, room, floor), None):
        grad, rhs = np.ones((m, k)), np.ones((m, k))
        err, err_b = np.zeros(m), np.zeros(m)
        dirty = _run(
            A, w, v, Y, rows, X_old, X_new, budget, 0.0, grad, rhs, err, err_b, scales=scales
        )
        out.append((grad, rhs, err, err_b, dirty))
    for got, want in zip(*out, strict=True):
        assert np.array_equal(got, want)
    assert out[0][4].any() and (out[0][2] > 0).any()  # both exact and bounded changes


def test_remove_entries_takes_the_terms_out_of_both_sides():
    rng = np.random.default_rng(5)
    X, Y = rng.normal(size=(4, 3)), rng.normal(size=(6, 3))
    rows, cols = np.array([0, 0, 2]), np.array([1, 5, 1])
    w, v = np.array([2.0, 1.0, 3.0]), np.array([3.0, 2.0, 4.0])
    gX, bX, gY, bY = (rng.normal(size=a.shape) for a in (X, X, Y, Y))
    want = [a.copy() for a in (gX, bX, gY, bY)]
    for r, j, we, ve in zip(rows, cols, w, v, strict=True):
        want[0][r] -= 2 * (we * (X[r] @ Y[j]) * Y[j] - ve * Y[j])
        want[1][r] -= 2 * ve * Y[j]
        want[2][j] -= 2 * (we * (X[r] @ Y[j]) * X[r] - ve * X[r])
        want[3][j] -= 2 * ve * X[r]
    remove_entries(rows, cols, w, v, X, Y, gX, bX, gY, bY)
    for got, exp in zip((gX, bX, gY, bY), want, strict=True):
        np.testing.assert_allclose(got, exp, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradients_and_dots_equal_the_gradients_and_direct_dots(seed):
    A, w, v, Y, rows, X_old, X_new, rng = _problem(seed)
    n, k = A.shape[0], Y.shape[1]
    indptr, indices = A.indptr.astype(np.int64), A.indices.astype(np.int32)
    X = rng.normal(size=(n, k)).astype(np.float32)
    X[rows] = X_new.astype(np.float32)  # the rows' current (moved) values
    G = Y.astype(np.float64).T @ Y.astype(np.float64)
    reg = rng.uniform(0.5, 2.0, n)
    grad, rhs, (offsets, d_old, d_new) = gradients_and_dots(
        indptr, indices, w, v, X, X_old, Y, G, reg, rows
    )
    want_g, want_b = row_gradients(indptr, indices, w, v, X, Y, G, reg, rows)
    np.testing.assert_allclose(grad, want_g, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rhs, want_b, rtol=1e-12, atol=1e-12)
    for t, r in enumerate(rows):  # every entry, tombstones included, at its documented place
        for e in range(A.indptr[r], A.indptr[r + 1]):
            y = Y[A.indices[e]].astype(np.float64)
            q = offsets[t] + e - A.indptr[r]
            assert d_new[q] == pytest.approx(X[r].astype(np.float64) @ y, rel=1e-12, abs=1e-12)
            assert d_old[q] == pytest.approx(X_old[t] @ y, rel=1e-12, abs=1e-12)
    assert offsets[-1] == sum(A.indptr[r + 1] - A.indptr[r] for r in rows)
    some = np.arange(len(rows)) % 2 == 0  # values at zero for these rows only
    grad2, rhs2, _ = gradients_and_dots(indptr, indices, w, v, X, X_old, Y, G, reg, rows, some)
    np.testing.assert_allclose(grad2, want_g, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rhs2[some], want_b[some], rtol=1e-12, atol=1e-12)
    assert not rhs2[~some].any()
    offsets2, d_old2, d_new2 = moved_dots(indptr, indices, rows, X_old, X[rows].astype(float), Y)
    assert np.array_equal(offsets2, offsets)
    np.testing.assert_allclose(d_old2, d_old, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(d_new2, d_new, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_residual_bounds_and_scale_sums_equal_the_vectorised_formulas(seed):
    from recforget.kernels.als_stream import live_scale_sumsq, residual_bounds

    rng = np.random.default_rng(seed)
    n = 500
    gn, e, xn = rng.uniform(0, 2, n), rng.uniform(0, 0.5, n), rng.uniform(0, 3, n)
    bn, eb = rng.uniform(0, 100, n), rng.uniform(0, 20, n)
    alive = rng.random(n) < 0.8
    d2, room, floor = 0.05, 0.02, 5.0
    bound, scale, over = residual_bounds(gn, e, xn, bn, eb, alive, d2, room, floor)
    want_scale = np.maximum(bn - eb, floor)
    want_bound = np.where(alive, gn + e + d2 * xn, 0.0)
    assert np.array_equal(scale, want_scale) and np.array_equal(bound, want_bound)
    want_over = np.flatnonzero(alive & (gn + e + d2 * xn > room * want_scale))
    assert np.array_equal(over, want_over) and 0 < len(over) < alive.sum()
    total, count = live_scale_sumsq(bn, eb, alive)
    live = np.maximum(bn - eb, 0.0)[alive]
    assert count == alive.sum() and total == pytest.approx(live @ live, rel=1e-12)
