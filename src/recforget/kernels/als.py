"""ALS row solvers and residuals: pure functions over CSR arrays, compiled with numba.

Every bi-linear ALS sub-problem in this package (implicit or explicit feedback, users or
items, fit, warm start or unlearning) is the same ridge problem per row ``r``:

.. math::

    \\min_x \\; x^\\top \\Big(G + \\sum_{j \\in N(r)} w_{rj}\\, y_j y_j^\\top + \\lambda_r I\\Big) x
            - 2 \\Big(\\sum_{j \\in N(r)} v_{rj}\\, y_j\\Big)^\\top x

so :math:`A_r x_r = b_r` with :math:`A_r = G + Y_r^\\top W_r Y_r + \\lambda_r I`. The caller picks:

* implicit feedback (Hu, Koren & Volinsky): ``G = Y^T Y``, ``w = c - 1``, ``v = c * p`` with
  ``p = 1`` on observed cells, so unobserved cells enter only through ``G`` (weight 1, target 0);
* explicit feedback: ``G = 0``, ``w = 1``, ``v = target``.

``indptr, indices`` are the CSR structure of the side being solved (users x items to solve
users, items x users to solve items), ``w`` and ``v`` are per-entry arrays in that order,
``rows`` selects which rows to solve (the unlearning methods re-solve only some).
All functions write into ``X`` in place and return nothing, or return per-row arrays.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = [
    "all_rows",
    "entry_dots",
    "gram",
    "propagate_rows",
    "row_gradients",
    "row_residuals",
    "solve_rows_cg",
    "solve_rows_cholesky",
]


def all_rows(n: int) -> np.ndarray:
    """``rows`` argument selecting every row."""
    return np.arange(n, dtype=np.int64)


def gram(Y: np.ndarray) -> np.ndarray:
    """``Y^T Y`` in float64, shape (k, k)."""
    Y64 = Y.astype(np.float64, copy=False)
    return Y64.T @ Y64


@njit(cache=True, inline="always")
def _chol_solve(A, b, x):  # pragma: no cover - compiled
    """Solve ``A x = b`` for SPD ``A`` (float64, overwritten by its Cholesky factor)."""
    k = A.shape[0]
    for j in range(k):
        s = A[j, j]
        for m in range(j):
            s -= A[j, m] * A[j, m]
        if s <= 0.0:
            s = 1e-300
        d = np.sqrt(s)
        A[j, j] = d
        for i in range(j + 1, k):
            t = A[i, j]
            for m in range(j):
                t -= A[i, m] * A[j, m]
            A[i, j] = t / d
    for i in range(k):  # forward: L z = b
        t = b[i]
        for m in range(i):
            t -= A[i, m] * x[m]
        x[i] = t / A[i, i]
    for i in range(k - 1, -1, -1):  # backward: L^T x = z
        t = x[i]
        for m in range(i + 1, k):
            t -= A[m, i] * x[m]
        x[i] = t / A[i, i]


@njit(parallel=True, cache=True)
def solve_rows_cholesky(indptr, indices, w, v, X, Y, G, reg, rows):  # pragma: no cover
    """Exact solve of every selected row: ``X[r] = A_r^{-1} b_r`` (Cholesky, float64).

    Parameters
    ----------
    indptr : int64 array of shape (n_rows + 1,)
    indices : int32 array of shape (nnz,)
    w, v : arrays of shape (nnz,), dtype of ``Y``
        Per-entry weight in ``A`` and coefficient in ``b``.
    X : array of shape (n_rows, k), written in place for the selected rows
    Y : array of shape (n_cols, k)
    G : float64 array of shape (k, k)
        Shared Gram term (``Y^T Y`` for implicit feedback, zeros for explicit).
    reg : float64 array of shape (n_rows,)
        Ridge weight ``lambda_r`` of each row.
    rows : int64 array
        Rows to solve.
    """
    k = Y.shape[1]
    for t in prange(rows.shape[0]):
        r = rows[t]
        start, end = indptr[r], indptr[r + 1]
        n = end - start
        A = G.copy()
        b = np.zeros(k)
        if n > 0:
            # Build A = G + Y_r^T W_r Y_r + reg I and b = Y_r^T v_r (one gemm per row)
            Yg = np.empty((n, k), dtype=Y.dtype)
            Wg = np.empty((n, k), dtype=Y.dtype)
            for jj in range(n):
                j = indices[start + jj]
                wj = w[start + jj]
                vj = v[start + jj]
                for f in range(k):
                    y = Y[j, f]
                    Yg[jj, f] = y
                    Wg[jj, f] = wj * y
                    b[f] += vj * y
            YtWY = np.dot(Yg.T, Wg)
            for f in range(k):
                for g in range(k):
                    A[f, g] += YtWY[f, g]
        for f in range(k):
            A[f, f] += reg[r]
        x = np.empty(k)
        _chol_solve(A, b, x)
        for f in range(k):
            X[r, f] = x[f]


@njit(parallel=True, cache=True, fastmath=True)
def _cg_rows(
    indptr, indices, w, v, X, Y, G, reg, rows, steps, rel, floor, eta, res0, b0
):  # pragma: no cover
    """CG on the selected rows; a row stops once ``||b - A x|| <= rel max(||b||, floor)``,
    or, with ``eta > 0``, once it is at most ``max(that, eta ||b - A x_0||)`` (``x_0`` the
    row's start).

    ``rel = 0`` runs ``steps`` iterations on every row (the stop then only fires on an exact
    solution). Returns the number of CG iterations run, summed over rows. Rows with
    ``b0[t] >= 0`` (``||b||``) start from the residual ``res0[t]`` instead of computing it (an
    empty ``b0``: every row computes it).
    """
    k = Y.shape[1]
    done = np.zeros(rows.shape[0], dtype=np.int64)
    for t in prange(rows.shape[0]):
        r = rows[t]
        start, end = indptr[r], indptr[r + 1]
        lam = reg[r]
        x = np.empty(k)
        for f in range(k):
            x[f] = X[r, f]
        res = np.empty(k)
        if b0.shape[0] and b0[t] >= 0.0:  # the caller's residual and ||b||
            for f in range(k):
                res[f] = res0[t, f]
            bnorm = b0[t]
        else:  # res = b - A x (and b, for the row's stopping target)
            b = np.zeros(k)
            for f in range(k):
                acc = 0.0
                for g in range(k):
                    acc += G[f, g] * x[g]
                res[f] = -acc - lam * x[f]
            for jj in range(start, end):
                j = indices[jj]
                dot = 0.0
                for f in range(k):
                    dot += np.float64(Y[j, f]) * x[f]
                vj = np.float64(v[jj])
                coef = vj - np.float64(w[jj]) * dot
                for f in range(k):
                    yf = np.float64(Y[j, f])
                    res[f] += coef * yf
                    b[f] += vj * yf
            bb = 0.0
            for f in range(k):
                bb += b[f] * b[f]
            bnorm = np.sqrt(bb)
        scale = max(bnorm, floor)
        p = res.copy()
        rs_old = 0.0
        for f in range(k):
            rs_old += res[f] * res[f]
        stop = max((rel * scale) ** 2, eta * eta * rs_old)
        Ap = np.empty(k)
        for _ in range(steps):
            if rs_old <= stop:
                break
            done[t] += 1
            for f in range(k):
                acc = 0.0
                for g in range(k):
                    acc += G[f, g] * p[g]
                Ap[f] = acc + lam * p[f]
            for jj in range(start, end):
                j = indices[jj]
                dot = 0.0
                for f in range(k):
                    dot += np.float64(Y[j, f]) * p[f]
                coef = np.float64(w[jj]) * dot
                for f in range(k):
                    Ap[f] += coef * np.float64(Y[j, f])
            pAp = 0.0
            for f in range(k):
                pAp += p[f] * Ap[f]
            if pAp <= 0.0:
                break
            alpha = rs_old / pAp
            rs_new = 0.0
            for f in range(k):
                x[f] += alpha * p[f]
                res[f] -= alpha * Ap[f]
                rs_new += res[f] * res[f]
            beta = rs_new / rs_old
            for f in range(k):
                p[f] = res[f] + beta * p[f]
            rs_old = rs_new
        for f in range(k):
            X[r, f] = x[f]
    return done.sum()


def solve_rows_cg(
    indptr,
    indices,
    w,
    v,
    X,
    Y,
    G,
    reg,
    rows,
    steps,
    rel=0.0,
    floor=0.0,
    eta=0.0,
    res0=None,
    b0=None,
):
    """``steps`` conjugate-gradient iterations per selected row, warm-started at ``X[r]``.

    Same system as :func:`solve_rows_cholesky`; ``A p`` is applied without forming ``A``
    (``G p + reg p + sum_j w_j (y_j . p) y_j``), as the implicit library's CG solver does.
    The iteration runs in float64 whatever the factors' dtype, so that warm-started sweeps can
    drive the residual below float32's cancellation level.

    With ``rel > 0`` a row stops early, before any step if it is already there, once its
    residual ``||b_r - A_r x_r||`` is at most ``rel * max(||b_r||, floor)``: the row is then
    solved to relative accuracy ``rel`` (the certificate's measure, see
    :mod:`recforget.models._certificate`), and ``steps`` is only a cap. With ``eta > 0`` (a
    forcing term, ``0 < eta < 1``) a row also stops once its residual is ``eta`` times the one
    it started the call with: each call reduces a row's residual by that factor, never past
    ``rel`` (an inexact-Newton row solve). Returns the number of CG iterations run, summed over
    the rows.

    ``res0`` (float64, one row per ``rows``) and ``b0`` give rows' starting residuals
    ``b_r - A_r x_r`` and ``||b_r||`` when the caller has them (a row with ``b0[t] < 0``
    computes its own): that row then skips the pass over its data that computes them. CG
    then solves ``A_r d = res0[t]``, so an error in ``res0[t]`` is an error of the solve,
    not of anything computed from the result.
    """
    if res0 is None:
        res0, b0 = np.empty((0, Y.shape[1])), np.empty(0)
    return int(
        _cg_rows(
            indptr,
            indices,
            w,
            v,
            X,
            Y,
            G,
            reg,
            rows,
            steps,
            float(rel),
            float(floor),
            float(eta),
            res0,
            b0,
        )
    )


@njit(parallel=True, cache=True, fastmath=True)
def _row_gradients(indptr, indices, w, v, X, Y, GX, reg, rows):  # pragma: no cover
    k = Y.shape[1]
    grad = np.empty((rows.shape[0], k))
    rhs = np.zeros((rows.shape[0], k))
    for t in prange(rows.shape[0]):
        r = rows[t]
        lam = reg[r]
        for f in range(k):
            grad[t, f] = GX[t, f] + lam * np.float64(X[r, f])
        for jj in range(indptr[r], indptr[r + 1]):
            j = indices[jj]
            dot = 0.0
            for f in range(k):
                dot += np.float64(Y[j, f]) * np.float64(X[r, f])
            coef = np.float64(w[jj]) * dot - np.float64(v[jj])
            vj = np.float64(v[jj])
            for f in range(k):
                yf = np.float64(Y[j, f])
                grad[t, f] += coef * yf
                rhs[t, f] += vj * yf
        for f in range(k):
            grad[t, f] *= 2.0
            rhs[t, f] *= 2.0
    return grad, rhs


def row_gradients(indptr, indices, w, v, X, Y, G, reg, rows):
    """Gradient of each selected row's sub-problem, and its value at zero, in float64.

    Returns ``(grad, rhs)``, arrays of shape (len(rows), k): ``grad[t] = 2 (A_r x_r - b_r)``
    (the row's block of the objective's gradient) and ``rhs[t] = 2 b_r`` (minus the gradient at
    ``x_r = 0``, a natural scale). Costs ``O(nnz k + n_rows k^2)``, far less than a solve; the
    ``G x`` products are one BLAS call.
    """
    GX = X[rows].astype(np.float64) @ G
    return _row_gradients(indptr, indices, w, v, X, Y, GX, reg, rows)


def row_residuals(indptr, indices, w, v, X, Y, G, reg, rows):
    """Norms of :func:`row_gradients`: ``(||grad_r||, ||rhs_r||)``, each of shape (len(rows),)."""
    grad, rhs = row_gradients(indptr, indices, w, v, X, Y, G, reg, rows)
    return np.sqrt(np.einsum("ij,ij->i", grad, grad)), np.sqrt(np.einsum("ij,ij->i", rhs, rhs))


@njit(parallel=True, cache=True, fastmath=True)
def propagate_rows(
    o_indptr, o_indices, o_w, o_v, moved, X_old, X_new, Y, grad, rhs
):  # pragma: no cover
    """Update the other side's gradients after some rows of this side moved (in place).

    ``o_indptr, o_indices, o_w, o_v`` are the *other* side's CSR and per-entry arrays;
    ``moved[r]`` is ``t`` when this side's row ``r`` moved from ``X_old[t]`` to ``X_new[t]``,
    else -1. For every entry ``(j, r)`` of the other side with a moved ``r``, row ``j``'s data
    terms change: ``grad[j] += 2 (w (x'.y_j) x' - w (x.y_j) x - v (x' - x))`` and
    ``rhs[j] += 2 v (x' - x)``. Parallel over the other side's rows (no write conflicts); the
    arithmetic is proportional to the moved rows' entries. The shared Gram term (implicit
    feedback) is updated by the caller with one BLAS call.
    """
    k = Y.shape[1]
    for j in prange(o_indptr.shape[0] - 1):
        for e in range(o_indptr[j], o_indptr[j + 1]):
            t = moved[o_indices[e]]
            if t < 0:
                continue
            do = 0.0
            dn = 0.0
            for f in range(k):
                yf = np.float64(Y[j, f])
                do += np.float64(X_old[t, f]) * yf
                dn += np.float64(X_new[t, f]) * yf
            we = np.float64(o_w[e])
            ve = np.float64(o_v[e])
            for f in range(k):
                xo = np.float64(X_old[t, f])
                xn = np.float64(X_new[t, f])
                grad[j, f] += 2.0 * (we * (dn * xn - do * xo) - ve * (xn - xo))
                rhs[j, f] += 2.0 * ve * (xn - xo)


@njit(parallel=True, cache=True)
def entry_dots(indptr, indices, X, Y):  # pragma: no cover - compiled
    """``s[e] = X[r] . Y[j]`` for every stored entry ``e = (r, j)``, float64, shape (nnz,)."""
    out = np.empty(indices.shape[0])
    k = X.shape[1]
    for r in prange(indptr.shape[0] - 1):
        for e in range(indptr[r], indptr[r + 1]):
            j = indices[e]
            acc = 0.0
            for f in range(k):
                acc += np.float64(X[r, f]) * Y[j, f]
            out[e] = acc
    return out
