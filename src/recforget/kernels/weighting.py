"""Confidence weights for implicit feedback, computed from the data alone.

Each function maps stored values ``r`` (counts, ratings, 1.0) to a non-negative weight ``w``;
the model's confidence is ``c = 1 + alpha * w`` (Hu, Koren & Volinsky 2008). Weights that use
global statistics (BM25's document frequencies and average row length) are recomputed from
whatever data they are given, so after a deletion no statistic of the deleted data survives.
"""

from __future__ import annotations

import numpy as np

WEIGHTINGS = ("linear", "log", "bm25", "confidence")


def linear_weight(values: np.ndarray) -> np.ndarray:
    """``w = r`` (HKV's ``c = 1 + alpha r``)."""
    return np.asarray(values, dtype=np.float64).copy()


def log_weight(values: np.ndarray, epsilon: float = 1.0) -> np.ndarray:
    """``w = log(1 + r / epsilon)`` (HKV's logarithmic variant)."""
    return np.log1p(np.asarray(values, dtype=np.float64) / epsilon)


def bm25_weight(
    indptr: np.ndarray,
    indices: np.ndarray,
    values: np.ndarray,
    n_items: int,
    k1: float = 100.0,
    b: float = 0.8,
) -> np.ndarray:
    """Okapi BM25 weight of each entry of a users x items CSR.

    Users are documents and items are terms:
    ``w = r (k1 + 1) / (k1 ((1 - b) + b |u| / avg|u|) + r) * idf_i`` with
    ``idf_i = max(0, log(n_users) - log(1 + df_i))``, ``df_i`` the number of users with item
    ``i`` and ``|u|`` the sum of the user's values. Negative idf is clipped to 0 so that
    confidences stay >= 1.
    """
    values = np.asarray(values, dtype=np.float64)
    n_users = len(indptr) - 1
    if len(values) == 0:
        return values.copy()
    df = np.bincount(indices, minlength=n_items).astype(np.float64)
    idf = np.maximum(np.log(max(n_users, 1)) - np.log1p(df), 0.0)
    row_sum = np.add.reduceat(values, indptr[:-1][np.diff(indptr) > 0])
    lengths = np.zeros(n_users)
    lengths[np.diff(indptr) > 0] = row_sum
    avg = lengths[np.diff(indptr) > 0].mean()
    norm = (1.0 - b) + b * lengths / avg
    rows = np.repeat(np.arange(n_users), np.diff(indptr))
    return values * (k1 + 1.0) / (k1 * norm[rows] + values) * idf[indices]


def confidence(
    indptr: np.ndarray,
    indices: np.ndarray,
    values: np.ndarray,
    n_items: int,
    *,
    weighting: str = "linear",
    alpha: float = 1.0,
    bm25_k1: float = 100.0,
    bm25_b: float = 0.8,
    log_epsilon: float = 1.0,
) -> np.ndarray:
    """Confidence ``c = 1 + alpha * w`` of every stored entry, shape (nnz,), float64.

    ``weighting="confidence"`` is the convention of implicit's ``AlternatingLeastSquares``:
    the stored values already are confidences, ``c = alpha * |r|`` (no ``1 +``), with
    preference ``p = 1`` for ``r > 0`` and ``p = 0`` for ``r <= 0`` (a negative value is a
    confident dislike, a stored 0 a cell whose weight is 0).
    """
    if weighting == "confidence":
        return alpha * np.abs(np.asarray(values, dtype=np.float64))
    if weighting == "linear":
        w = linear_weight(values)
    elif weighting == "log":
        w = log_weight(values, log_epsilon)
    elif weighting == "bm25":
        w = bm25_weight(indptr, indices, values, n_items, bm25_k1, bm25_b)
    else:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    return 1.0 + alpha * w
