"""The numba row kernels against the dense textbook formulas of kernels.als_reference."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from recforget.kernels import als as K
from recforget.kernels import als_reference as ref
from recforget.kernels.weighting import bm25_weight, confidence


def _problem(seed: int, m: int, n: int, k: int, density: float, dtype=np.float64):
    rng = np.random.default_rng(seed)
    R = (rng.random((m, n)) < density) * rng.integers(1, 5, (m, n)).astype(np.float64)
    csr = sp.csr_array(R)
    X = rng.standard_normal((m, k)).astype(dtype)
    Y = rng.standard_normal((n, k)).astype(dtype)
    return R, csr, X, Y


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    k=st.integers(1, 7),
    density=st.floats(0.0, 0.9),
    alpha=st.floats(0.0, 20.0),
    reg=st.floats(1e-3, 5.0),
)
def test_implicit_cholesky_equals_closed_form(dtype, seed, k, density, alpha, reg):
    R, csr, X, Y = _problem(seed, 9, 7, k, density, dtype)
    c = 1.0 + alpha * csr.data
    w, v = (c - 1).astype(dtype), c.astype(dtype)
    regs = np.full(9, reg)
    K.solve_rows_cholesky(
        csr.indptr.astype(np.int64), csr.indices, w, v, X, Y, K.gram(Y), regs, K.all_rows(9)
    )
    C = 1.0 + alpha * R
    P = (R > 0).astype(float)
    for u in range(9):
        expect = ref.implicit_solve_row(C[u], P[u], Y.astype(np.float64), reg)
        tol = 1e-8 if dtype == np.float64 else 2e-3
        np.testing.assert_allclose(X[u], expect, rtol=tol, atol=tol)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(1, 6), reg=st.floats(1e-2, 5.0))
def test_explicit_cholesky_equals_closed_form(seed, k, reg):
    R, csr, X, Y = _problem(seed, 8, 10, k, 0.5)
    ones = np.ones(csr.nnz)
    K.solve_rows_cholesky(
        csr.indptr.astype(np.int64),
        csr.indices,
        ones,
        csr.data.copy(),
        X,
        Y,
        np.zeros((k, k)),
        np.full(8, reg),
        K.all_rows(8),
    )
    for u in range(8):
        expect = ref.explicit_solve_row(R[u], R[u] > 0, Y, reg)
        np.testing.assert_allclose(X[u], expect, rtol=1e-8, atol=1e-10)


def test_rows_subset_touches_only_those_rows():
    _R, csr, X, Y = _problem(3, 12, 9, 4, 0.4)
    before = X.copy()
    rows = np.array([2, 7], dtype=np.int64)
    c = 1 + 3.0 * csr.data
    K.solve_rows_cholesky(
        csr.indptr.astype(np.int64), csr.indices, c - 1, c, X, Y, K.gram(Y), np.full(12, 0.5), rows
    )
    untouched = np.setdiff1d(np.arange(12), rows)
    np.testing.assert_array_equal(X[untouched], before[untouched])
    assert not np.allclose(X[rows], before[rows])


@pytest.mark.parametrize("seed", range(5))
def test_cg_converges_to_cholesky(seed):
    _R, csr, X, Y = _problem(seed, 15, 11, 5, 0.4)
    c = 1 + 4.0 * csr.data
    args = (csr.indptr.astype(np.int64), csr.indices, c - 1, c)
    Xc = X.copy()
    K.solve_rows_cholesky(*args, Xc, Y, K.gram(Y), np.full(15, 0.3), K.all_rows(15))
    Xg = X.copy()
    K.solve_rows_cg(*args, Xg, Y, K.gram(Y), np.full(15, 0.3), K.all_rows(15), 30)
    np.testing.assert_allclose(Xg, Xc, rtol=1e-6, atol=1e-8)
    # a few steps already reduce the residual
    X3 = X.copy()
    K.solve_rows_cg(*args, X3, Y, K.gram(Y), np.full(15, 0.3), K.all_rows(15), 2)
    g0, _ = K.row_residuals(*args, X, Y, K.gram(Y), np.full(15, 0.3), K.all_rows(15))
    g3, _ = K.row_residuals(*args, X3, Y, K.gram(Y), np.full(15, 0.3), K.all_rows(15))
    assert np.all(g3 <= g0 + 1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_cg_from_given_starting_residuals(seed):
    """Rows given their exact residual take the same steps as rows that compute it; a row
    given a wrong one solves for it (the error is the solve's); ``b0 < 0`` computes it."""
    _R, csr, X, Y = _problem(seed, 12, 9, 4, 0.5)
    c = 1 + 3.0 * csr.data
    args = (csr.indptr.astype(np.int64), csr.indices, c - 1, c)
    G, reg, rows = K.gram(Y), np.full(12, 0.5), K.all_rows(12)
    grad, rhs = K.row_gradients(*args, X, Y, G, reg, rows)
    res0, b0 = -0.5 * grad, 0.5 * np.linalg.norm(rhs, axis=1)
    plain, given = X.copy(), X.copy()
    K.solve_rows_cg(*args, plain, Y, G, reg, rows, 3)
    K.solve_rows_cg(*args, given, Y, G, reg, rows, 3, res0=res0, b0=b0)
    np.testing.assert_allclose(given, plain, rtol=1e-9, atol=1e-12)
    # a shifted start: each row then solves A d = res0 + delta from its start
    delta = 0.1 * np.random.default_rng(seed).standard_normal(res0.shape)
    b0[::2] = -1.0  # these rows compute their own residual and ignore res0
    shifted = X.copy()
    K.solve_rows_cg(*args, shifted, Y, G, reg, rows, 40, res0=res0 + delta, b0=b0)
    exact = X.copy()
    K.solve_rows_cholesky(*args, exact, Y, G, reg, rows)
    np.testing.assert_allclose(shifted[::2], exact[::2], rtol=1e-6, atol=1e-8)
    for r in range(1, 12, 2):
        start, end = csr.indptr[r], csr.indptr[r + 1]
        Yr = Y[csr.indices[start:end]]
        A = G + (Yr * (c[start:end] - 1)[:, None]).T @ Yr + reg[r] * np.eye(4)
        want = X[r] + np.linalg.solve(A, res0[r] + delta[r])
        np.testing.assert_allclose(shifted[r], want, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("seed", range(5))
def test_cg_to_a_target_solves_each_row_to_it(seed):
    _R, csr, X, Y = _problem(seed, 15, 11, 5, 0.4)
    c = 1 + 4.0 * csr.data
    args = (csr.indptr.astype(np.int64), csr.indices, c - 1, c)
    G, reg, rows = K.gram(Y), np.full(15, 0.3), K.all_rows(15)
    # the closed form, for the relative residual each row has (scale ||b_r||, 2 b_r = rhs)
    Xc = X.copy()
    K.solve_rows_cholesky(*args, Xc, Y, G, reg, rows)
    half = Xc.copy()
    half[::2] = X[::2]  # even rows far from their solution, odd rows solved
    g0, b0 = K.row_residuals(*args, half, Y, G, reg, rows)
    for rel in (1e-2, 1e-6):
        Xt = half.copy()
        done = K.solve_rows_cg(*args, Xt, Y, G, reg, rows, 50, rel)
        g, b = K.row_residuals(*args, Xt, Y, G, reg, rows)
        assert np.all(g <= rel * b * (1 + 1e-6))  # every row reached its target
        # rows already within it took no step and are unchanged, bit for bit
        there = g0 <= rel * b0
        np.testing.assert_array_equal(Xt[there], half[there])
        assert there[1::2].all() and not there[::2].any()
        fixed = half.copy()
        K.solve_rows_cg(*args, fixed, Y, G, reg, rows, 50)
        assert 0 < done < 50 * 15  # fewer iterations than the fixed-step solve
    # rel = 0 is the fixed-step solve; the count says so
    Xa, Xb = X.copy(), X.copy()
    assert K.solve_rows_cg(*args, Xa, Y, G, reg, rows, 2) == 2 * 15
    K.solve_rows_cg(*args, Xb, Y, G, reg, rows, 2, 0.0)
    np.testing.assert_array_equal(Xa, Xb)


@pytest.mark.parametrize("seed", range(4))
def test_cg_forcing_term_reduces_each_row_by_its_factor(seed):
    _R, csr, X, Y = _problem(seed, 15, 11, 5, 0.4)
    c = 1 + 4.0 * csr.data
    args = (csr.indptr.astype(np.int64), csr.indices, c - 1, c)
    G, reg, rows = K.gram(Y), np.full(15, 0.3), K.all_rows(15)
    Xc = X.copy()
    K.solve_rows_cholesky(*args, Xc, Y, G, reg, rows)
    start = Xc + 1e-3 * (X - Xc)
    start[::3] = X[::3]  # rows far from their solution, and rows near it
    g0, b0 = K.row_residuals(*args, start, Y, G, reg, rows)
    rel, eta = 1e-5, 0.1
    Xf = start.copy()
    done = K.solve_rows_cg(*args, Xf, Y, G, reg, rows, 50, rel, 0.0, eta)
    g, b = K.row_residuals(*args, Xf, Y, G, reg, rows)
    # every row stopped at the looser of its two targets (residuals are 2 (A x - b))
    assert np.all(g <= np.maximum(rel * b, eta * g0) * (1 + 1e-6))
    # ... so some rows far from their solution stop short of the tight target
    far = g0 > 10 * rel * b0
    assert far.any() and np.any(g[far] > rel * b[far])
    Xt = start.copy()
    tight = K.solve_rows_cg(*args, Xt, Y, G, reg, rows, 50, rel)
    assert 0 < done < tight
    # eta = 0 is the plain target, bit for bit
    Xz = start.copy()
    K.solve_rows_cg(*args, Xz, Y, G, reg, rows, 50, rel, 0.0, 0.0)
    np.testing.assert_array_equal(Xz, Xt)


@pytest.mark.parametrize("rel", [1e-3, 1e-8])
def test_cg_target_floor_covers_rows_without_data(rel):
    _R, csr, X, Y = _problem(7, 10, 8, 4, 0.5)
    R = csr.toarray()
    R[3] = 0.0  # row 3 has no data: b = 0, its solution is 0
    csr = sp.csr_array(R)
    c = 1 + 2.0 * csr.data
    args = (csr.indptr.astype(np.int64), csr.indices, c - 1, c)
    G, reg, rows = K.gram(Y), np.full(10, 0.5), K.all_rows(10)
    Xt = X.copy()
    K.solve_rows_cg(*args, Xt, Y, G, reg, rows, 40, rel, 1.0)
    g, _ = K.row_residuals(*args, Xt, Y, G, reg, rows)
    assert g[3] <= 2 * rel * 1.0 * (1 + 1e-6)  # the floor is in units of ||b_r|| = b / 2
    assert np.abs(Xt[3]).max() < np.abs(X[3]).max()


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(1, 6))
def test_row_residual_is_the_gradient_of_the_dense_objective(seed, k):
    R, csr, X, Y = _problem(seed, 7, 6, k, 0.5)
    alpha, reg = 2.5, 0.7
    C = 1 + alpha * R
    P = (R > 0).astype(float)
    c = 1 + alpha * csr.data
    g, b = K.row_residuals(
        csr.indptr.astype(np.int64),
        csr.indices,
        c - 1,
        c,
        X,
        Y,
        K.gram(Y),
        np.full(7, reg),
        K.all_rows(7),
    )
    # analytic gradient of the dense objective w.r.t. X
    S = X @ Y.T
    grad = -2 * (C * (P - S)) @ Y + 2 * reg * X
    np.testing.assert_allclose(g, np.linalg.norm(grad, axis=1), rtol=1e-9, atol=1e-10)
    grad0 = -2 * (C * P) @ Y
    np.testing.assert_allclose(b, np.linalg.norm(grad0, axis=1), rtol=1e-9, atol=1e-10)


def test_entry_dots():
    _R, csr, X, Y = _problem(1, 10, 8, 3, 0.5)
    s = K.entry_dots(csr.indptr.astype(np.int64), csr.indices, X, Y)
    rows = np.repeat(np.arange(10), np.diff(csr.indptr))
    np.testing.assert_allclose(s, (X @ Y.T)[rows, csr.indices])


def test_bm25_matches_formula_and_recomputes_from_data():
    R = np.array([[1.0, 2, 0], [0, 3, 1], [4, 0, 0], [0, 1, 0]])
    csr = sp.csr_array(R)
    w = bm25_weight(csr.indptr, csr.indices, csr.data, 3, k1=1.2, b=0.75)
    n_users = 4
    df = (R > 0).sum(0)
    idf = np.maximum(np.log(n_users) - np.log1p(df), 0)
    length = R.sum(1)
    norm = 0.25 + 0.75 * length / length.mean()
    expect = []
    for u in range(4):
        for i in np.flatnonzero(R[u]):
            expect.append(R[u, i] * 2.2 / (1.2 * norm[u] + R[u, i]) * idf[i])
    np.testing.assert_allclose(w, expect)
    c = confidence(
        csr.indptr, csr.indices, csr.data, 3, weighting="bm25", alpha=2.0, bm25_k1=1.2, bm25_b=0.75
    )
    np.testing.assert_allclose(c, 1 + 2.0 * np.array(expect))
    with pytest.raises(ValueError, match="weighting"):
        confidence(csr.indptr, csr.indices, csr.data, 3, weighting="tfidf")


@pytest.mark.parametrize("implicit", [True, False])
def test_propagated_gradients_equal_recomputed(implicit):
    """Incremental gradient updates after some rows move equal a full recomputation."""
    from recforget import Interactions
    from recforget.models._als_objective import ALSObjective, Factors

    R, _csr, X, Y = _problem(11, 25, 18, 4, 0.3)
    data = Interactions.from_csr(R)
    obj = ALSObjective(
        data,
        feedback="implicit" if implicit else "explicit",
        regularization=0.4,
        alpha=2.0,
        dtype=np.float64,
    )
    F = Factors(X.copy(), Y.copy())
    gu, bu = obj.gradients("users", F)
    gi, bi = obj.gradients("items", F)
    rows = np.array([1, 4, 9, 20], dtype=np.int64)
    old = F.X[rows].copy()
    obj.solve("users", F, rows)
    gu[rows], bu[rows] = obj.gradients("users", F, rows)
    obj.propagate("users", F, rows, old, gi, bi)
    gi2, bi2 = obj.gradients("items", F)
    np.testing.assert_allclose(gi, gi2, atol=1e-9)
    np.testing.assert_allclose(bi, bi2, atol=1e-9)
    rows_i = np.array([0, 3, 17], dtype=np.int64)
    old_i = F.Y[rows_i].copy()
    obj.solve("items", F, rows_i)
    obj.propagate("items", F, rows_i, old_i, gu, bu)
    gu2, bu2 = obj.gradients("users", F)
    np.testing.assert_allclose(gu, gu2, atol=1e-9)
    np.testing.assert_allclose(bu, bu2, atol=1e-9)
