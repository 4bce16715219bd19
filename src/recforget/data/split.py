"""Train/test splits. Each returns ``(train, test)`` with the vocabularies of the input.

Both parts keep every user and item of ``data`` (some with no entries), so indices mean the same
thing in train and test and a model fitted on ``train`` can score ``test`` directly. The two
parts are disjoint and together hold every entry of ``data`` (values and timestamps kept).
"""

from __future__ import annotations

import numpy as np

from recforget._rng import check_random_state
from recforget.data.interactions import Interactions


def random_holdout(
    data: Interactions,
    fraction: float = 0.2,
    *,
    random_state: int | np.random.Generator | None = None,
) -> tuple[Interactions, Interactions]:
    """Hold out ``round(fraction * nnz)`` entries chosen uniformly at random.

    Parameters
    ----------
    data : Interactions
    fraction : float in [0, 1]
    random_state : int, numpy.random.Generator or None

    Returns
    -------
    train, test : Interactions
        A user can end up with all of its entries in ``test``.
    """
    _check_fraction(fraction)
    rng = check_random_state(random_state)
    n_test = round(fraction * data.nnz)
    test = np.zeros(data.nnz, dtype=bool)
    test[rng.choice(data.nnz, size=n_test, replace=False)] = True
    return data.select(~test), data.select(test)


def leave_k_out(
    data: Interactions,
    k: int = 1,
    *,
    random_state: int | np.random.Generator | None = None,
) -> tuple[Interactions, Interactions]:
    """Hold out ``k`` random entries of each user.

    Users with ``k`` or fewer entries keep them all in ``train`` (no test entries), so every
    user with a test entry also has a training entry.

    Returns
    -------
    train, test : Interactions
        ``test`` has exactly ``k`` entries for every user with more than ``k``.
    """
    _check_k(k)
    rng = check_random_state(random_state)
    return _per_user_first(data, k, (rng.random(data.nnz),))


def temporal(
    data: Interactions, fraction: float = 0.2, *, at: int | None = None
) -> tuple[Interactions, Interactions]:
    """Global time cut: the latest entries are the test set.

    The cut time ``t`` is the timestamp of the ``round(fraction * nnz)``-th latest entry (or
    ``at`` if given); ``test`` is every entry with timestamp >= ``t``. Ties at ``t`` all go to
    ``test``, so it can be slightly larger than ``fraction``, and every training entry is
    strictly earlier than every test entry.

    Raises
    ------
    ValueError
        ``data`` has no timestamps.
    """
    ts = _timestamps(data, "temporal")
    if at is None:
        _check_fraction(fraction)
        n_test = round(fraction * data.nnz)
        if n_test == 0:
            return data, data.select(np.zeros(data.nnz, dtype=bool))
        at = int(np.sort(ts)[data.nnz - n_test])
    test = ts >= at
    return data.select(~test), data.select(test)


def temporal_leave_k_out(data: Interactions, k: int = 1) -> tuple[Interactions, Interactions]:
    """Hold out the ``k`` latest entries of each user.

    Among entries with equal timestamps, the one with the larger item index counts as later.

    Users with ``k`` or fewer entries keep them all in ``train``.

    Raises
    ------
    ValueError
        ``data`` has no timestamps.
    """
    _check_k(k)
    ts = _timestamps(data, "temporal_leave_k_out")
    # latest first within each user, then larger item index first
    return _per_user_first(data, k, (-data.indices.astype(np.int64), -ts))


def _per_user_first(
    data: Interactions, k: int, keys: tuple[np.ndarray, ...]
) -> tuple[Interactions, Interactions]:
    """Test = the first ``k`` entries of each user with more than ``k``, ordered by ``keys``.

    ``keys`` follow :func:`numpy.lexsort` (last key primary), within each user.
    """
    rows = data.row_of_entry
    order = np.lexsort((*keys, rows))
    rank = np.empty(data.nnz, dtype=np.int64)
    rank[order] = np.arange(data.nnz) - data.indptr[rows[order]]
    counts = data.user_counts()
    test = (rank < k) & (counts[rows] > k)
    return data.select(~test), data.select(test)


def _timestamps(data: Interactions, what: str) -> np.ndarray:
    if data.timestamps is None:
        raise ValueError(
            f"{what} needs timestamps and this data has none (read a file with a timestamp "
            "column, or use random_holdout / leave_k_out)"
        )
    return data.timestamps


def _check_fraction(fraction: float) -> None:
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")


def _check_k(k: int) -> None:
    if int(k) != k or k < 0:
        raise ValueError(f"k must be a non-negative integer, got {k}")


__all__ = ["leave_k_out", "random_holdout", "temporal", "temporal_leave_k_out"]
