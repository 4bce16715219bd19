"""Batched top-k selection over dense score rows."""

from __future__ import annotations

import numpy as np


def topk_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the ``k`` largest entries of each row, best first.

    Ties are broken by the lower column index (stable), so results are deterministic.

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
    if k == n_cols:
        part = np.broadcast_to(np.arange(n_cols), (n_rows, n_cols))
    else:
        # argpartition on -scores, then a stable sort of the k candidates
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    cand = np.take_along_axis(scores, part, axis=1)
    # sort by (-score, index) for determinism under ties
    order = np.lexsort((part, -cand), axis=1) if n_rows else np.empty((0, k), dtype=np.int64)
    idx = np.take_along_axis(part, order, axis=1).astype(np.int64)
    return idx, np.take_along_axis(scores, idx, axis=1)
