"""Row-gradient bookkeeping for streams of deletions: work proportional to what changed.

The gradient of row ``r``'s ALS sub-problem (see :mod:`recforget.kernels.als`) is

.. math::

    g_r = 2 \\Big( (G + \\lambda_r I) x_r + \\sum_{j \\in N(r)} w_{rj} (x_r^\\top y_j) y_j
          - \\sum_{j \\in N(r)} v_{rj} y_j \\Big), \\qquad
    b_r = 2 \\sum_{j \\in N(r)} v_{rj} y_j .

Its data terms change only through the entries of ``r`` that are removed and through the
neighbours ``y_j`` that move; the shared Gram term ``G`` (implicit feedback) changes by a
low-rank matrix and is accounted for by the caller. :func:`remove_entries` applies a removed
entry's change exactly; :func:`propagate_rows` bounds the change a moved neighbour makes, at
``O(1)`` per entry, while the row has slack under its tolerance, and applies it exactly
(``O(k)``) once it has not. They run sequentially (several
entries may update the same row) and write in place.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["propagate_rows", "remove_entries"]


@njit(cache=True)
def remove_entries(rows, cols, w, v, X, Y, gX, bX, gY, bY):  # pragma: no cover - compiled
    """Take removed entries ``(rows[t], cols[t])`` (weights ``w[t]``, targets ``v[t]``) out of
    both sides' gradients: the data term of user ``r`` loses ``w (x_r.y_j) y_j - v y_j``, item
    ``j``'s loses ``w (x_r.y_j) x_r - v x_r`` (times 2), and the values at zero ``b`` lose
    ``2 v y_j`` and ``2 v x_r``."""
    k = X.shape[1]
    for t in range(rows.shape[0]):
        r, j = rows[t], cols[t]
        we, ve = np.float64(w[t]), np.float64(v[t])
        dot = 0.0
        for f in range(k):
            dot += np.float64(X[r, f]) * np.float64(Y[j, f])
        for f in range(k):
            x = np.float64(X[r, f])
            y = np.float64(Y[j, f])
            gX[r, f] -= 2.0 * (we * dot * y - ve * y)
            bX[r, f] -= 2.0 * ve * y
            gY[j, f] -= 2.0 * (we * dot * x - ve * x)
            bY[j, f] -= 2.0 * ve * x


@njit(cache=True, fastmath=True)
def propagate_rows(
    indptr,
    indices,
    w,
    v,
    rows,
    X_old,
    X_new,
    step,
    norm_old,
    norm_new,
    Y,
    y_norm,
    grad,
    rhs,
    err,
    rhs_err,
    budget,
    dirty,
):  # pragma: no cover - compiled
    """Account for rows ``rows[t]`` of this side moving from ``X_old[t]`` to ``X_new[t]`` in
    the other side's gradients (in place).

    ``indptr, indices, w, v`` are this side's CSR and per-entry arrays (tombstones, with
    ``w = v = 0``, are skipped). For an entry ``(r, j)`` of a moved row, row ``j``'s gradient
    changes by ``2 (w ((x'.y) x' - (x.y) x) - v (x' - x))``; since
    ``(x'.y) x' - (x.y) x = (x'.y)(x' - x) + ((x' - x).y) x``, its norm is at most
    ``2 ||x' - x|| (w ||y_j|| (||x'|| + ||x||) + |v|)`` (``step``, ``norm_old``, ``norm_new``,
    ``y_norm`` give the norms), and the value at zero changes by ``2 v (x' - x)``, at most
    ``2 |v| ||x' - x||``. While ``err[j]`` stays within ``budget[j]``, the bounds are added to
    ``err[j]`` and ``rhs_err[j]`` (``O(1)`` per entry); past it, the change is applied exactly
    to ``grad[j]`` and ``rhs[j]`` (``O(k)``) and ``dirty[j]`` is set (their norms changed).
    """
    k = Y.shape[1]
    for t in range(rows.shape[0]):
        r = rows[t]
        d = step[t]
        if d == 0.0:
            continue
        s_norm = norm_old[t] + norm_new[t]
        for e in range(indptr[r], indptr[r + 1]):
            we = np.float64(w[e])
            ve = np.float64(v[e])
            if we == 0.0 and ve == 0.0:
                continue
            j = indices[e]
            inc = 2.0 * d * (we * y_norm[j] * s_norm + abs(ve))
            if err[j] + inc <= budget[j]:
                err[j] += inc
                rhs_err[j] += 2.0 * d * abs(ve)
                continue
            do = 0.0
            dn = 0.0
            for f in range(k):
                yf = np.float64(Y[j, f])
                do += np.float64(X_old[t, f]) * yf
                dn += np.float64(X_new[t, f]) * yf
            for f in range(k):
                xo = np.float64(X_old[t, f])
                xn = np.float64(X_new[t, f])
                grad[j, f] += 2.0 * (we * (dn * xn - do * xo) - ve * (xn - xo))
                rhs[j, f] += 2.0 * ve * (xn - xo)
            dirty[j] = True
