"""Transforms of Interactions: implicit feedback, value filters, k-core pruning."""

from __future__ import annotations

import numpy as np

from recforget.data.interactions import Interactions


def to_implicit(data: Interactions, threshold: float = 4.0) -> Interactions:
    """Positive-only implicit feedback: keep entries with value >= ``threshold``, set to 1.0.

    The usual reading of star ratings as implicit feedback (4 and 5 stars are positives).
    Vocabularies are unchanged, so users or items whose ratings were all low stay, with no
    entries; chain :func:`drop_empty` (or :func:`k_core`) to remove them.

    Parameters
    ----------
    data : Interactions
    threshold : float

    Returns
    -------
    Interactions
        Entries ``data.values >= threshold`` with values 1.0 (timestamps kept).
    """
    kept = data.select(data.values >= threshold)
    return kept.with_values(np.ones(kept.nnz))


def filter_values(
    data: Interactions, min_value: float | None = None, max_value: float | None = None
) -> Interactions:
    """Keep entries with ``min_value <= value <= max_value`` (either bound optional).

    Values and vocabularies are unchanged.
    """
    keep = np.ones(data.nnz, dtype=bool)
    if min_value is not None:
        keep &= data.values >= min_value
    if max_value is not None:
        keep &= data.values <= max_value
    return data.select(keep)


def drop_empty(data: Interactions) -> Interactions:
    """Remove users and items without entries from the vocabularies (entries unchanged)."""
    return _compact(data, np.ones(data.nnz, dtype=bool))


def k_core(data: Interactions, user_k: int = 5, item_k: int = 5) -> Interactions:
    """The largest sub-matrix where every user has >= ``user_k`` and every item >= ``item_k``.

    Entries of users or items below their threshold are removed repeatedly until nothing
    changes (a fixed point; the result is unique). Users and items left with no entries leave
    the vocabularies.

    Parameters
    ----------
    data : Interactions
    user_k, item_k : int >= 0

    Returns
    -------
    Interactions
        Possibly empty (0 users, 0 items) if no core exists.
    """
    if user_k < 0 or item_k < 0:
        raise ValueError("user_k and item_k must be >= 0")
    rows = data.row_of_entry
    cols = data.indices
    keep = np.ones(data.nnz, dtype=bool)
    while True:
        ucount = np.bincount(rows[keep], minlength=data.n_users)
        icount = np.bincount(cols[keep], minlength=data.n_items)
        new = keep & (ucount[rows] >= user_k) & (icount[cols] >= item_k)
        if new.sum() == keep.sum():
            break
        keep = new
    return _compact(data, keep)


def _compact(data: Interactions, keep: np.ndarray) -> Interactions:
    """Entries ``keep``; users and items with none left leave the vocabularies."""
    rows = data.row_of_entry[keep]
    cols = data.indices[keep].astype(np.int64)
    keep_u = np.flatnonzero(np.bincount(rows, minlength=data.n_users) > 0)
    keep_i = np.flatnonzero(np.bincount(cols, minlength=data.n_items) > 0)
    item_map = np.full(data.n_items, -1, dtype=np.int64)
    item_map[keep_i] = np.arange(len(keep_i))
    counts = np.bincount(rows, minlength=data.n_users)[keep_u]
    indptr = np.zeros(len(keep_u) + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    ts = data.timestamps[keep] if data.timestamps is not None else None
    return Interactions(
        indptr,
        item_map[cols],  # order within rows is preserved: the map is increasing
        data.values[keep],
        data.users.take(keep_u),
        data.items.take(keep_i),
        ts,
    )


__all__ = ["drop_empty", "filter_values", "k_core", "to_implicit"]
