"""The ALS objective along a line: its quartic coefficients in one pass over the entries.

For a bi-linear model every stored entry's score along ``(X + t P, Y + t Q)`` is a quadratic
in ``t``:

.. math::

    s_e(t) = a_e + b_e t + c_e t^2, \\quad a_e = x_r \\cdot y_j, \\;
    b_e = x_r \\cdot q_j + p_r \\cdot y_j, \\; c_e = p_r \\cdot q_j

so each entry's term ``w_e s_e^2 - 2 v_e s_e`` is a quartic, and so is the objective. This is
the "cheap line search" of ALS-NCG (Winlaw, Hynes, Caterini, De Sterck, arXiv 1508.03110):
the exact minimiser along a direction costs one pass over the data, about a gradient's cost.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["entry_line_coefficients", "entry_loss", "gram_line_coefficients", "quartic_argmin"]


@njit(parallel=True, cache=True, fastmath=True)
def _entry_sums(indptr, indices, w, v, X, Y, P, Q, a0, b0):  # pragma: no cover - compiled
    n = indptr.shape[0] - 1
    k = X.shape[1]
    part = np.zeros((n, 5))
    for r in prange(n):
        c1 = 0.0
        c2 = 0.0
        c3 = 0.0
        c4 = 0.0
        for e in range(indptr[r], indptr[r + 1]):
            j = indices[e]
            a = a0[e]
            b = b0[e]
            c = 0.0
            for f in range(k):
                xf = np.float64(X[r, f])
                pf = np.float64(P[r, f])
                yf = np.float64(Y[j, f])
                qf = np.float64(Q[j, f])
                a += xf * yf
                b += xf * qf + pf * yf
                c += pf * qf
            we = np.float64(w[e])
            ve = np.float64(v[e])
            # w (a + b t + c t^2)^2 - 2 v (a + b t + c t^2), the t^1..t^4 coefficients
            c1 += 2.0 * we * a * b - 2.0 * ve * b
            c2 += we * (b * b + 2.0 * a * c) - 2.0 * ve * c
            c3 += 2.0 * we * b * c
            c4 += we * c * c
        part[r, 1] = c1
        part[r, 2] = c2
        part[r, 3] = c3
        part[r, 4] = c4
    return part.sum(axis=0)


def entry_line_coefficients(indptr, indices, w, v, X, Y, P, Q, a0=None, b0=None) -> np.ndarray:
    """``[0, c1, c2, c3, c4]``: ``sum_e w_e s_e(t)^2 - 2 v_e s_e(t)`` minus its value at 0.

    ``indptr, indices`` are the users x items CSR, ``w, v`` per-entry arrays in that order,
    ``P, Q`` the directions of ``X, Y``. ``a0, b0`` (shape (nnz,), float64) add a per-entry
    offset to ``a_e`` and ``b_e`` (biases and their directions); zeros when ``None``.
    """
    nnz = indices.shape[0]
    a0 = np.zeros(nnz) if a0 is None else np.ascontiguousarray(a0, dtype=np.float64)
    b0 = np.zeros(nnz) if b0 is None else np.ascontiguousarray(b0, dtype=np.float64)
    return _entry_sums(indptr, indices, w, v, X, Y, P, Q, a0, b0)


def gram_line_coefficients(X, Y, P, Q) -> np.ndarray:
    """Coefficients of ``sum over all cells of ((x_u + t p_u) . (y_i + t q_i))^2``, minus t=0.

    That sum is ``tr(Gx(t) Gy(t))`` with ``Gx(t) = X'X + t (X'P + P'X) + t^2 P'P`` (and so
    for ``Y``): ``k x k`` products only.
    """
    X, Y, P, Q = (np.asarray(a, dtype=np.float64) for a in (X, Y, P, Q))
    XP = X.T @ P
    A = (X.T @ X, XP + XP.T, P.T @ P)
    YQ = Y.T @ Q
    B = (Y.T @ Y, YQ + YQ.T, Q.T @ Q)
    out = np.zeros(5)
    for i in range(3):
        for j in range(3):
            if i + j:
                out[i + j] += float(np.sum(A[i] * B[j]))  # tr(A_i B_j), both symmetric
    return out


def quartic_argmin(c: np.ndarray) -> float:
    """The global minimiser over real ``t`` of ``c1 t + c2 t^2 + c3 t^3 + c4 t^4`` (0 if none).

    Candidates are the real roots of the derivative; the one with the lowest value wins, and
    ``t = 0`` stays when nothing is lower (so a step never raises the objective in exact
    arithmetic).
    """
    c1, c2, c3, c4 = (float(x) for x in c[1:5])
    deriv = np.array([4.0 * c4, 3.0 * c3, 2.0 * c2, c1])
    nz = np.flatnonzero(np.abs(deriv) > 0)
    if len(nz) == 0 or nz[0] == 3:
        return 0.0
    roots = np.roots(deriv[nz[0] :])
    best_t, best_f = 0.0, 0.0
    for root in roots:
        if abs(root.imag) > 1e-9 * max(1.0, abs(root.real)):
            continue
        t = float(root.real)
        f = ((c4 * t + c3) * t + c2) * t * t + c1 * t
        if f < best_f:
            best_t, best_f = t, f
    return best_t


@njit(parallel=True, cache=True, fastmath=True)
def _entry_loss(indptr, indices, w, v, X, Y, a0, has_a0):  # pragma: no cover - compiled
    n = indptr.shape[0] - 1
    k = X.shape[1]
    part = np.zeros(n)
    for r in prange(n):
        acc = 0.0
        for e in range(indptr[r], indptr[r + 1]):
            j = indices[e]
            s = a0[e] if has_a0 else 0.0
            for f in range(k):
                s += np.float64(X[r, f]) * np.float64(Y[j, f])
            acc += np.float64(w[e]) * s * s - 2.0 * np.float64(v[e]) * s
        part[r] = acc
    return part.sum()


def entry_loss(indptr, indices, w, v, X, Y, a0=None) -> float:
    """``sum_e w_e s_e^2 - 2 v_e s_e`` with ``s_e = x_r . y_j (+ a0_e)``, one pass, float64."""
    if a0 is None:
        return float(_entry_loss(indptr, indices, w, v, X, Y, np.zeros(1), False))
    a0 = np.ascontiguousarray(a0, dtype=np.float64)
    return float(_entry_loss(indptr, indices, w, v, X, Y, a0, True))
