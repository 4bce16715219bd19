"""Balanced assignment of points to anchors (RecEraser's balanced k-means step), numba."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _greedy(order: np.ndarray, n_anchors: int, n_points: int, capacity: int) -> np.ndarray:
    assigned = np.full(n_points, -1, dtype=np.int64)
    load = np.zeros(n_anchors, dtype=np.int64)
    left = n_points
    for flat in order:
        p = flat // n_anchors
        a = flat % n_anchors
        if assigned[p] >= 0 or load[a] >= capacity:
            continue
        assigned[p] = a
        load[a] += 1
        left -= 1
        if left == 0:
            break
    return assigned


def balanced_assign(dist: np.ndarray, capacity: int) -> np.ndarray:
    """Assign each point (row of ``dist``, shape (n, k)) to an anchor, at most ``capacity`` each.

    Pairs are taken in order of increasing distance (ties by point, then anchor): a point
    goes to the nearest anchor that still has room, as in Chen et al., "Recommendation
    Unlearning" (WWW 2022), Algorithm 1. ``capacity * k`` must be at least ``n``.
    """
    n, k = dist.shape
    if capacity * k < n:
        raise ValueError(f"capacity {capacity} x {k} anchors cannot hold {n} points")
    order = np.argsort(dist.ravel(), kind="stable").astype(np.int64)
    return _greedy(order, k, n, int(capacity))


def balanced_assign_reference(dist: np.ndarray, capacity: int) -> np.ndarray:
    """Slow, obviously correct :func:`balanced_assign` (for tests)."""
    n, k = dist.shape
    pairs = sorted((float(dist[p, a]), p, a) for p in range(n) for a in range(k))
    out = [-1] * n
    load = [0] * k
    for _, p, a in pairs:
        if out[p] < 0 and load[a] < capacity:
            out[p] = a
            load[a] += 1
    return np.array(out, dtype=np.int64)


__all__ = ["balanced_assign", "balanced_assign_reference"]
