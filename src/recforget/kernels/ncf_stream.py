"""A GMF step's effect on the fixed-sample loss, summed over the samples of the moved rows.

GMF's logit is :math:`z = h^\\top (p_u \\odot q_i) + c`. When an update moves some user rows
(``P0 -> P1``) and item rows (``Q0 -> Q1``) with the head fixed, the binary cross-entropy
:math:`\\sum_s m_s \\ell(z_s, y_s)` and its gradients change only through the samples of the
moved rows. :func:`gmf_sweep` walks exactly those samples, straight from the working data's
CSR arrays (positives, label 1, and fixed negatives, label 0 with a multiplicity, each in both
orientations), each sample once, and accumulates in float64

* the loss change :math:`\\sum_s m_s (\\ell(z^1_s) - \\ell(z^0_s))`,
* every touched row's data-gradient change (``gU``, ``gV``: :math:`c^1_s h \\odot q^1_i -
  c^0_s h \\odot q^0_i` for the user side, with :math:`c_s = m_s (\\sigma(z_s) - y_s)`),
* the head's gradient change (``gh`` for :math:`h`, ``acc[1]`` for :math:`c`).

Pure function over arrays, no allocation; ``O(d)`` per sample.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, fastmath=True, inline="always")
def _loss_and_slope(z: float, y: float) -> tuple[float, float]:
    """``bce(z, y)`` (log(1 + e^z) - y z, stable on both sides) and ``sigmoid(z) - y``."""
    e = np.exp(-abs(z))
    s = 1.0 / (1.0 + e) if z >= 0 else e / (1.0 + e)
    return max(z, 0.0) - z * y + np.log1p(e), s - y


@njit(cache=True, fastmath=True, inline="always")
def _sample_change(z0, z1, y, m, acc):
    """Add one sample's change (logit ``z0`` before, ``z1`` after, weight ``m``) to ``acc``
    (loss, slope sum, weight sum); return its weighted slopes ``(c0, c1)``."""
    l0, r0 = _loss_and_slope(z0, y)
    l1, r1 = _loss_and_slope(z1, y)
    acc[0] += m * (l1 - l0)
    c0 = m * r0
    c1 = m * r1
    acc[1] += c1 - c0
    acc[2] += m
    return c0, c1


@njit(cache=True, fastmath=True, inline="always")
def _term(u, i, y, m, P0, Q0, P1, Q1, h, gU, gV, gh, acc, b):
    """One sample whose user (and maybe item) moved."""
    d = P0.shape[1]
    z0 = b
    z1 = b
    for k in range(d):
        z0 += h[k] * P0[u, k] * Q0[i, k]
        z1 += h[k] * P1[u, k] * Q1[i, k]
    c0, c1 = _sample_change(z0, z1, y, m, acc)
    for k in range(d):
        gU[u, k] += h[k] * (c1 * Q1[i, k] - c0 * Q0[i, k])
        gV[i, k] += h[k] * (c1 * P1[u, k] - c0 * P0[u, k])
        gh[k] += c1 * P1[u, k] * Q1[i, k] - c0 * P0[u, k] * Q0[i, k]


@njit(cache=True, fastmath=True, inline="always")
def _item_term(u, y, m, P0, a0, a1, gU, S0, S1, acc, b):
    """One sample of a moved item ``i`` whose user did not move: ``a = h * q_i`` before and
    after; the item's and the head's parts go to ``S0``/``S1`` (sums of ``c p_u``)."""
    d = P0.shape[1]
    z0 = b
    z1 = b
    for k in range(d):
        z0 += P0[u, k] * a0[k]
        z1 += P0[u, k] * a1[k]
    c0, c1 = _sample_change(z0, z1, y, m, acc)
    for k in range(d):
        p = P0[u, k]
        gU[u, k] += c1 * a1[k] - c0 * a0[k]
        S0[k] += c0 * p
        S1[k] += c1 * p


@njit(cache=True, fastmath=True)
def gmf_sweep(
    users: np.ndarray,
    items: np.ndarray,
    user_moved: np.ndarray,
    indptr: np.ndarray,
    indices: np.ndarray,
    live: np.ndarray,
    t_indptr: np.ndarray,
    t_indices: np.ndarray,
    t_twin: np.ndarray,
    n_indptr: np.ndarray,
    n_indices: np.ndarray,
    n_live: np.ndarray,
    n_values: np.ndarray,
    nt_indptr: np.ndarray,
    nt_indices: np.ndarray,
    nt_twin: np.ndarray,
    P0: np.ndarray,
    Q0: np.ndarray,
    P1: np.ndarray,
    Q1: np.ndarray,
    h: np.ndarray,
    b: float,
    gU: np.ndarray,
    gV: np.ndarray,
    gh: np.ndarray,
    acc: np.ndarray,
    touched_users: np.ndarray,
    touched_items: np.ndarray,
) -> None:
    """Accumulate the change of every sample of the moved ``users`` and ``items``.

    Positives are the live entries of (``indptr, indices, live``) and its item-major twin
    (``t_indptr, t_indices, t_twin``: user and user-major slot of each item-major slot);
    negatives those of the ``n_`` / ``nt_`` arrays, ``n_values`` their multiplicities.
    A sample of a moved user and a moved item is taken once (on the user side:
    ``user_moved``). Adds to ``gU`` (n_users, d), ``gV`` (n_items, d), ``gh`` (d,) and
    ``acc`` (loss change, bias-gradient change, samples); flags the rows whose gradient
    changed in ``touched_users`` / ``touched_items``.
    """
    for r in range(len(users)):
        u = users[r]
        touched_users[u] = True
        for e in range(indptr[u], indptr[u + 1]):
            if live[e]:
                i = indices[e]
                touched_items[i] = True
                _term(u, i, 1.0, 1.0, P0, Q0, P1, Q1, h, gU, gV, gh, acc, b)
        for e in range(n_indptr[u], n_indptr[u + 1]):
            if n_live[e]:
                i = n_indices[e]
                touched_items[i] = True
                _term(u, i, 0.0, n_values[e], P0, Q0, P1, Q1, h, gU, gV, gh, acc, b)
    d = P0.shape[1]
    a0 = np.empty(d)
    a1 = np.empty(d)
    S0 = np.empty(d)
    S1 = np.empty(d)
    for r in range(len(items)):
        i = items[r]
        touched_items[i] = True
        for k in range(d):
            a0[k] = h[k] * Q0[i, k]
            a1[k] = h[k] * Q1[i, k]
            S0[k] = 0.0
            S1[k] = 0.0
        for t in range(t_indptr[i], t_indptr[i + 1]):
            u = t_indices[t]
            if live[t_twin[t]] and not user_moved[u]:
                touched_users[u] = True
                _item_term(u, 1.0, 1.0, P0, a0, a1, gU, S0, S1, acc, b)
        for t in range(nt_indptr[i], nt_indptr[i + 1]):
            u = nt_indices[t]
            e = nt_twin[t]
            if n_live[e] and not user_moved[u]:
                touched_users[u] = True
                _item_term(u, 0.0, n_values[e], P0, a0, a1, gU, S0, S1, acc, b)
        for k in range(d):  # gV_i = h * sum c p_u; gh = sum c p_u * q_i
            gV[i, k] += h[k] * (S1[k] - S0[k])
            gh[k] += S1[k] * Q1[i, k] - S0[k] * Q0[i, k]


__all__ = ["gmf_sweep"]
