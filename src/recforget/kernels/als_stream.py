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
entries may update the same row) and write in place. The dot products the propagation needs
(each moved row's old and new value with each neighbour) come from
:func:`gradients_and_dots`, which computes them in the pass that takes the re-solved rows'
gradients, or from :func:`moved_dots`.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = [
    "gradients_and_dots",
    "live_scale_sumsq",
    "moved_dots",
    "propagate_rows",
    "remove_entries",
    "residual_bounds",
]


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


def _offsets(indptr, rows):
    """Start of each row's entries in a flat per-entry array over ``rows`` (length n + 1)."""
    lens = indptr[rows + 1] - indptr[rows]
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    return offsets


@njit(parallel=True, cache=True, fastmath=True)
def _gradients_and_dots(
    indptr, indices, w, v, X, X_old, Y, GX, reg, rows, with_rhs, offsets, d_old, d_new
):  # pragma: no cover - compiled
    k = Y.shape[1]
    grad = np.empty((rows.shape[0], k))
    rhs = np.zeros((rows.shape[0], k))
    for t in prange(rows.shape[0]):
        r = rows[t]
        lam = reg[r]
        x = np.empty(k)
        for f in range(k):
            x[f] = np.float64(X[r, f])
            grad[t, f] = GX[t, f] + lam * x[f]
        base = offsets[t] - indptr[r]
        for jj in range(indptr[r], indptr[r + 1]):
            j = indices[jj]
            dn = 0.0
            do = 0.0
            for f in range(k):
                yf = np.float64(Y[j, f])
                dn += yf * x[f]
                do += yf * X_old[t, f]
            d_new[base + jj] = dn
            d_old[base + jj] = do
            vj = np.float64(v[jj])
            coef = np.float64(w[jj]) * dn - vj
            if with_rhs[t]:
                for f in range(k):
                    yf = np.float64(Y[j, f])
                    grad[t, f] += coef * yf
                    rhs[t, f] += vj * yf
            else:
                for f in range(k):
                    grad[t, f] += coef * np.float64(Y[j, f])
        for f in range(k):
            grad[t, f] *= 2.0
            rhs[t, f] *= 2.0
    return grad, rhs


def gradients_and_dots(indptr, indices, w, v, X, X_old, Y, G, reg, rows, with_rhs=None):
    """The rows' gradients and values at zero, as :func:`recforget.kernels.als.row_gradients`,
    and, in the same pass over their entries, each entry's dots with the row's new and old
    value: ``(grad, rhs, (offsets, dot_old, dot_new))``.

    ``X_old`` (float64, one row per ``rows``) is where each row was before it moved; entry
    ``e`` of row ``rows[t]`` has its dots at ``offsets[t] + e - indptr[rows[t]]``:
    ``dot_new = x_r . y_j`` (``x_r`` the current ``X[r]``) and ``dot_old = x_old . y_j``,
    what :func:`propagate_rows` needs. ``with_rhs`` (bool, one per row; default all): the
    rows whose value at zero is wanted, the others' ``rhs`` rows are left zero (a row's value
    at zero does not depend on the row itself, so a caller that has it exact skips its
    ``O(deg k)`` part).
    """
    offsets = _offsets(indptr, rows)
    d_old = np.empty(offsets[-1])
    d_new = np.empty(offsets[-1])
    if with_rhs is None:
        with_rhs = np.ones(len(rows), dtype=np.bool_)
    GX = X[rows].astype(np.float64) @ G
    grad, rhs = _gradients_and_dots(
        indptr, indices, w, v, X, X_old, Y, GX, reg, rows, with_rhs, offsets, d_old, d_new
    )
    return grad, rhs, (offsets, d_old, d_new)


@njit(cache=True, fastmath=True)
def _moved_dots(indptr, indices, rows, X_old, X_new, Y, offsets, d_old, d_new):
    # pragma: no cover - compiled
    k = Y.shape[1]
    for t in range(rows.shape[0]):
        r = rows[t]
        base = offsets[t] - indptr[r]
        for jj in range(indptr[r], indptr[r + 1]):
            j = indices[jj]
            dn = 0.0
            do = 0.0
            for f in range(k):
                yf = np.float64(Y[j, f])
                dn += yf * X_new[t, f]
                do += yf * X_old[t, f]
            d_new[base + jj] = dn
            d_old[base + jj] = do


def moved_dots(indptr, indices, rows, X_old, X_new, Y):
    """Each entry's dots with its row's old and new value (float64 ``X_old``, ``X_new``, one
    row per ``rows``), laid out as :func:`gradients_and_dots` returns them."""
    offsets = _offsets(indptr, rows)
    d_old = np.empty(offsets[-1])
    d_new = np.empty(offsets[-1])
    _moved_dots(indptr, indices, rows, X_old, X_new, Y, offsets, d_old, d_new)
    return offsets, d_old, d_new


@njit(cache=True, fastmath=True)
def propagate_rows(
    indptr,
    indices,
    w,
    v,
    rows,
    offsets,
    dot_old,
    dot_new,
    X_old,
    X_new,
    step,
    norm_old,
    norm_new,
    step_dot_old,
    y_norm,
    grad,
    rhs,
    err,
    rhs_err,
    scale_b,
    scale_eb,
    grad_norm,
    room,
    floor,
    cheap,
    dirty,
    pushed,
):  # pragma: no cover - compiled
    """Account for rows ``rows[t]`` of this side moving from ``X_old[t]`` to ``X_new[t]`` in
    the other side's gradients (in place). ``X_old`` and ``X_new`` are float64;
    ``offsets, dot_old, dot_new`` are each entry's dots ``x.y_j`` and ``x'.y_j`` (as
    :func:`gradients_and_dots` or :func:`moved_dots` return them), so that no neighbour's
    ``y_j`` is read here.

    ``indptr, indices, w, v`` are this side's CSR and per-entry arrays (tombstones, with
    ``w = v = 0``, are skipped). With ``x``, ``x'`` the old and new row and ``d = x' - x``, an
    entry ``(r, j)`` changes row ``j``'s gradient by ``2 (w ((x'.y) x' - (x.y) x) - v d)``
    ``= 2 (a d + c x)`` with ``a = w (x'.y) - v`` and ``c = w (d.y)``, since
    ``(x'.y) x' - (x.y) x = (x'.y) d + (d.y) x``; the value at zero changes by ``2 v d``
    (norm ``2 |v| ||d||``). Three tiers, cheapest first, while ``err[j]`` stays within the
    row's budget ``room * max(scale_b[j] - scale_eb[j], floor) - grad_norm[j]`` (its share
    ``room`` of the tolerance's room left by its kept gradient, computed here for the
    neighbours reached only; ``scale_eb`` may be the ``rhs_err`` array this call grows, which
    only shrinks the budget):

    1. ``O(1)``: the Cauchy-Schwarz bound ``2 ||d|| (w ||y_j|| (||x'|| + ||x||) + |v|)``
       (``step``, ``norm_old``, ``norm_new``, ``y_norm`` give the norms) is added to
       ``err[j]`` and ``2 |v| ||d||`` to ``rhs_err[j]``;
    2. ``O(1)`` with the given dots ``x'.y`` and ``x.y``: the change's exact norm,
       ``2 sqrt(a^2 ||d||^2 + c^2 ||x||^2 + 2 a c (d.x))`` (``step_dot_old`` is ``d.x``),
       which is added instead (often far below the first bound: for a well-fitted positive
       ``w (x'.y)`` is close to ``v``);
    3. past the budget, the change is applied exactly to ``grad[j]`` and ``rhs[j]`` and
       ``dirty[j]`` is set (their norms changed).

    ``pushed[j]`` grows by an upper bound of the norm of the change (the tier-1 bound, or the
    exact norm where it was taken), whatever the tier: how far this call moved row ``j``.

    The entries are taken in the order of ``rows`` (so each neighbour's in that order too),
    in one sequential pass over the moved rows' entries and their dots: tiers 1 and 2 cost
    ``O(1)`` reads of the neighbour's scalars. The changes tier 3 applies are recorded, then
    grouped by neighbour (a counting sort of those entries only) and summed, so that each
    neighbour's gradient is read and written once per call however many moved rows it is
    adjacent to (a popular item's users share many of a deleted user's items). ``cheap`` is
    the share of the budget tier 1 may fill (0: tier 1 is skipped, its loose bounds would use
    up the room that tier 2 needs).
    """
    k = X_old.shape[1]
    n_other = y_norm.shape[0]
    m = dot_old.shape[0]
    # tier-3 entries, applied after the pass: moved row, neighbour, the change's coefficients
    t3 = np.empty(m, dtype=np.int64)
    j3 = np.empty(m, dtype=np.int64)
    c3 = np.empty((m, 3))
    n3 = 0
    for t in range(rows.shape[0]):
        d = step[t]
        if d == 0.0:
            continue
        r = rows[t]
        base = offsets[t] - indptr[r]
        xo_n = norm_old[t]
        for e in range(indptr[r], indptr[r + 1]):
            we = np.float64(w[e])
            ve = np.float64(v[e])
            if we == 0.0 and ve == 0.0:
                continue
            j = indices[e]
            limit = room * max(scale_b[j] - scale_eb[j], floor) - grad_norm[j]
            inc = 2.0 * d * (we * y_norm[j] * (xo_n + norm_new[t]) + abs(ve))
            if err[j] + inc <= cheap * limit:  # tier 1
                pushed[j] += inc
                err[j] += inc
                rhs_err[j] += 2.0 * d * abs(ve)
                continue
            do = dot_old[base + e]
            dn = dot_new[base + e]
            a = we * dn - ve
            c = we * (dn - do)
            sq = a * a * d * d + c * c * xo_n * xo_n + 2.0 * a * c * step_dot_old[t]
            # the exact norm, with a margin far above the rounding of its cancellation
            tri = abs(a) * d + abs(c) * xo_n
            tight = 2.0 * np.sqrt(max(sq, 0.0) + 1e-12 * tri * tri)
            if tight < inc:
                inc = tight
            pushed[j] += inc
            if err[j] + inc <= limit:  # tier 2
                err[j] += inc
                rhs_err[j] += 2.0 * d * abs(ve)
                continue
            t3[n3] = t  # tier 3: the change 2 (a d + c x), and 2 v d at zero
            j3[n3] = j
            c3[n3, 0] = 2.0 * a
            c3[n3, 1] = 2.0 * c
            c3[n3, 2] = 2.0 * ve
            n3 += 1
            dirty[j] = True
    if n3 == 0:
        return
    start = np.zeros(n_other + 1, dtype=np.int64)
    for q in range(n3):
        start[j3[q] + 1] += 1
    for j in range(n_other):
        start[j + 1] += start[j]
    fill = start[:-1].copy()
    order = np.empty(n3, dtype=np.int64)
    for q in range(n3):  # stable: each neighbour's entries stay in the order of rows
        order[fill[j3[q]]] = q
        fill[j3[q]] += 1
    D = X_new - X_old
    acc_g = np.empty(k)
    acc_b = np.empty(k)
    for j in range(n_other):
        if start[j] == start[j + 1]:
            continue
        acc_g[:] = 0.0
        acc_b[:] = 0.0
        for p in range(start[j], start[j + 1]):
            q = order[p]
            t = t3[q]
            a2, c2, v2 = c3[q, 0], c3[q, 1], c3[q, 2]
            for f in range(k):
                acc_g[f] += a2 * D[t, f] + c2 * X_old[t, f]
                acc_b[f] += v2 * D[t, f]
        for f in range(k):
            grad[j, f] += acc_g[f]
            rhs[j, f] += acc_b[f]


@njit(cache=True)
def residual_bounds(gn, e, xn, bn, eb, alive, d2, room, floor):  # pragma: no cover - compiled
    """One pass over a side's rows for the certificate: ``(bound, scale, over)``.

    ``bound[r] = gn[r] + e[r] + d2 * xn[r]`` for live rows (0 for the others: the residual
    bound of the module doc, ``d2 = 2 ||D||_F``), ``scale[r] = max(bn[r] - eb[r], floor)``
    and ``over`` the live rows with ``bound > room * scale``, in order: what four vectorised
    passes and a ``flatnonzero`` give, in the same floating-point operations.
    """
    n = gn.shape[0]
    bound = np.empty(n)
    scale = np.empty(n)
    over = np.empty(n, dtype=np.int64)
    m = 0
    for r in range(n):
        sc = max(bn[r] - eb[r], floor)
        scale[r] = sc
        if alive[r]:
            b = gn[r] + e[r] + d2 * xn[r]
            bound[r] = b
            if b > room * sc:
                over[m] = r
                m += 1
        else:
            bound[r] = 0.0
    return bound, scale, over[:m]


@njit(cache=True)
def live_scale_sumsq(bn, eb, alive):  # pragma: no cover - compiled
    """``(sum over live rows of max(bn - eb, 0)^2, number of live rows)``."""
    total = 0.0
    n = 0
    for r in range(bn.shape[0]):
        if alive[r]:
            v = max(bn[r] - eb[r], 0.0)
            total += v * v
            n += 1
    return total, n
