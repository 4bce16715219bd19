"""Batched top-k selection over dense score rows."""

from __future__ import annotations

import numpy as np


def topk_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the ``k`` largest entries of each row, best first.

    Ties are broken by the lower column index, also at the k-th place, so results are
    deterministic.

    Parameters
    ----------
    scores : ndarray of shape (n_rows, n_cols)
    k : int, 1 <= k <= n_cols

    Returns
    -------
    idx : int64 ndarray of shape (n_rows, k)
    val : ndarray of shape (n_rows, k)
    """
    n_rows, n_cols = scores.shape
    k = min(k, n_cols)
    if n_rows == 0 or k == 0:
        return np.empty((n_rows, k), dtype=np.int64), np.empty((n_rows, k), dtype=scores.dtype)
    if k == n_cols:
        part = np.broadcast_to(np.arange(n_cols), (n_rows, n_cols)).copy()
    else:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        # argpartition picks arbitrary members of a tie at the k-th value: repair those rows
        kth = np.take_along_axis(scores, part, axis=1).min(axis=1)
        eq_total = (scores == kth[:, None]).sum(axis=1)
        eq_taken = (np.take_along_axis(scores, part, axis=1) == kth[:, None]).sum(axis=1)
        for r in np.flatnonzero(eq_total > eq_taken):
            row = scores[r]
            above = np.flatnonzero(row > kth[r])
            tied = np.flatnonzero(row == kth[r])[: k - len(above)]
            part[r] = np.concatenate([above, tied])
    cand = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -cand), axis=1)  # by (-score, index)
    idx = np.take_along_axis(part, order, axis=1).astype(np.int64)
    return idx, np.take_along_axis(scores, idx, axis=1)
