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
    step_dot_old,
    Y,
    y_norm,
    grad,
    rhs,
    err,
    rhs_err,
    budget,
    cheap,
    dirty,
    pushed,
):  # pragma: no cover - compiled
    """Account for rows ``rows[t]`` of this side moving from ``X_old[t]`` to ``X_new[t]`` in
    the other side's gradients (in place). ``X_old`` and ``X_new`` are float64.

    ``indptr, indices, w, v`` are this side's CSR and per-entry arrays (tombstones, with
    ``w = v = 0``, are skipped). With ``x``, ``x'`` the old and new row and ``d = x' - x``, an
    entry ``(r, j)`` changes row ``j``'s gradient by ``2 (w ((x'.y) x' - (x.y) x) - v d)``
    ``= 2 (a d + c x)`` with ``a = w (x'.y) - v`` and ``c = w (d.y)``, since
    ``(x'.y) x' - (x.y) x = (x'.y) d + (d.y) x``; the value at zero changes by ``2 v d``
    (norm ``2 |v| ||d||``). Three tiers, cheapest first, while ``err[j]`` stays within
    ``budget[j]``:

    1. ``O(1)``: the Cauchy-Schwarz bound ``2 ||d|| (w ||y_j|| (||x'|| + ||x||) + |v|)``
       (``step``, ``norm_old``, ``norm_new``, ``y_norm`` give the norms) is added to
       ``err[j]`` and ``2 |v| ||d||`` to ``rhs_err[j]``;
    2. ``O(k)`` reads: the two dots ``x'.y`` and ``d.y`` give the change's exact norm,
       ``2 sqrt(a^2 ||d||^2 + c^2 ||x||^2 + 2 a c (d.x))`` (``step_dot_old`` is ``d.x``),
       which is added instead (often far below the first bound: for a well-fitted positive
       ``w (x'.y)`` is close to ``v``);
    3. past the budget, the change is applied exactly to ``grad[j]`` and ``rhs[j]`` and
       ``dirty[j]`` is set (their norms changed).

    ``pushed[j]`` grows by an upper bound of the norm of the change (the tier-1 bound, or the
    exact norm where it was taken), whatever the tier: how far this call moved row ``j``.

    A neighbour's entries are taken in the order of ``rows``; they are grouped by neighbour
    first (a counting sort, ``O(entries + n_other)``), so its ``y`` is read and its gradient
    written once per call, not once per entry. ``cheap`` is the share of the budget tier 1
    may fill (0: tier 1 is skipped, its loose bounds would use up the room that tier 2 needs).
    """
    k = Y.shape[1]
    n_other = Y.shape[0]
    # group the moved rows' live entries by neighbour (counting sort, in order of t), so each
    # neighbour's y is read once and its gradient written once, whatever its number of entries
    start = np.zeros(n_other + 1, dtype=np.int64)
    for t in range(rows.shape[0]):
        if step[t] == 0.0:
            continue
        r = rows[t]
        for e in range(indptr[r], indptr[r + 1]):
            if w[e] != 0.0 or v[e] != 0.0:
                start[indices[e] + 1] += 1
    for j in range(n_other):
        start[j + 1] += start[j]
    fill = start[:-1].copy()
    tt = np.empty(start[n_other], dtype=np.int64)
    ee = np.empty(start[n_other], dtype=np.int64)
    for t in range(rows.shape[0]):
        if step[t] == 0.0:
            continue
        r = rows[t]
        for e in range(indptr[r], indptr[r + 1]):
            if w[e] != 0.0 or v[e] != 0.0:
                j = indices[e]
                tt[fill[j]] = t
                ee[fill[j]] = e
                fill[j] += 1
    y = np.empty(k)
    acc_g = np.empty(k)
    acc_b = np.empty(k)
    for j in range(n_other):
        if start[j] == start[j + 1]:
            continue
        e_j = err[j]
        eb_j = rhs_err[j]
        push_j = 0.0
        limit = budget[j]
        have_y = False
        exact = False
        for p in range(start[j], start[j + 1]):
            t = tt[p]
            e = ee[p]
            d = step[t]
            we = np.float64(w[e])
            ve = np.float64(v[e])
            inc = 2.0 * d * (we * y_norm[j] * (norm_old[t] + norm_new[t]) + abs(ve))
            if e_j + inc <= cheap * limit:  # tier 1
                push_j += inc
                e_j += inc
                eb_j += 2.0 * d * abs(ve)
                continue
            if not have_y:
                for f in range(k):
                    y[f] = np.float64(Y[j, f])
                have_y = True
            do = 0.0
            dn = 0.0
            for f in range(k):
                do += X_old[t, f] * y[f]
                dn += X_new[t, f] * y[f]
            a = we * dn - ve
            c = we * (dn - do)
            xo_n = norm_old[t]
            sq = a * a * d * d + c * c * xo_n * xo_n + 2.0 * a * c * step_dot_old[t]
            # the exact norm, with a margin far above the rounding of its cancellation
            tri = abs(a) * d + abs(c) * xo_n
            tight = 2.0 * np.sqrt(max(sq, 0.0) + 1e-12 * tri * tri)
            if tight < inc:
                inc = tight
            push_j += inc
            if e_j + inc <= limit:  # tier 2
                e_j += inc
                eb_j += 2.0 * d * abs(ve)
                continue
            if not exact:  # tier 3
                acc_g[:] = 0.0
                acc_b[:] = 0.0
                exact = True
            for f in range(k):
                xo = X_old[t, f]
                xn = X_new[t, f]
                acc_g[f] += 2.0 * (we * (dn * xn - do * xo) - ve * (xn - xo))
                acc_b[f] += 2.0 * ve * (xn - xo)
        err[j] = e_j
        rhs_err[j] = eb_j
        pushed[j] += push_j
        if exact:
            for f in range(k):
                grad[j, f] += acc_g[f]
                rhs[j, f] += acc_b[f]
            dirty[j] = True
