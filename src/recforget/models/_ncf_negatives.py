"""The fixed negatives of an NCF model's retraining objective: stable under deletions.

The fixed-sample objective of :mod:`recforget.models._ncf_objective` is a sum over every
positive and, for each, ``negatives`` items drawn once by :func:`stable_negatives`. A user's
draw depends only on the seed, the ids and its own positives, so a deletion changes the sample
only for the users it touches (:mod:`recforget.unlearn.ncf.sample` derives the change).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from recforget.data.interactions import Interactions, _id_hashes

if TYPE_CHECKING:
    from recforget.models.ncf import NCF

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on uint64 arrays (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def rank_keys(user_hashes: np.ndarray, item_hashes: np.ndarray, seed: int) -> np.ndarray:
    """The seeded rank key of each (user, item) hash pair (broadcasting)."""
    base = _mix(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))[0]
    with np.errstate(over="ignore"):
        return _mix(_mix((user_hashes * _GOLDEN) ^ base) ^ item_hashes)


def stable_negatives(
    data: Interactions, n_neg: int, seed: int, *, users: np.ndarray | None = None
) -> np.ndarray:
    """A fixed negative sample that a deletion only changes for the users it touches.

    User ``u`` ranks every item by a seeded hash of (seed, user id, item id), keeps the items
    that are not its positives in ``data`` and takes the first ``n_neg * |P_u|`` of them (cycling
    through them again when there are fewer), in entry order. The draw is uniform without
    replacement, and it depends only on the ids, the seed and the user's own positives: deleting
    another user's data, or whole users (which re-index the rest), leaves it unchanged, and a
    deleted positive of ``u`` simply becomes eligible (a removed item changes the draw of the
    users that had drawn it). This is what lets a certified model stay certified for every block
    a later deletion does not touch.

    Parameters
    ----------
    data : Interactions
    n_neg, seed : int
    users : int ndarray, optional
        Only fill the rows of these users' entries (the others are -1).

    Returns
    -------
    negatives : int64 ndarray of shape (data.nnz, n_neg)
    """
    n_items = data.n_items
    counts = data.user_counts()
    todo = np.flatnonzero(counts > 0)
    if users is not None:
        todo = np.intersect1d(todo, np.asarray(users, dtype=np.int64))
    out = np.full((data.nnz, n_neg), -1, dtype=np.int64)
    if len(todo) == 0:
        return out
    hu = _id_hashes(data.users)[todo]
    hi = _id_hashes(data.items)
    top = np.iinfo(np.uint64).max
    step = max(1, (1 << 22) // max(n_items, 1))
    for s in range(0, len(todo), step):
        block = todo[s : s + step]
        keys = rank_keys(hu[s : s + step][:, None], hi[None, :], seed)
        for r, u in enumerate(block):
            lo, hi_ = data.indptr[u], data.indptr[u + 1]
            k = keys[r]
            k[data.indices[lo:hi_]] = top
            free = n_items - (hi_ - lo)
            if free <= 0:
                raise ValueError(f"user {data.users.ids[u]!r} has every item as a positive")
            need = (hi_ - lo) * n_neg
            if need < free:  # the `need` smallest keys, in key order
                part = np.argpartition(k, need - 1)[:need]
                order = part[np.argsort(k[part], kind="stable")]
            else:
                order = np.argsort(k, kind="stable")[:free]
            out[lo:hi_] = np.resize(order, need).reshape(hi_ - lo, n_neg)
    return out


def model_negatives(model: NCF) -> np.ndarray:
    """:func:`stable_negatives` of ``model.seen_``, cached on the model (not saved)."""
    key = (int(model.negatives), int(model.seed_))
    cache = model.__dict__.get("_negatives_cache")
    if cache is not None and cache[0] == key and cache[1] is model.seen_:
        return cache[2]
    neg = stable_negatives(model.seen_, *key)
    model._negatives_cache = (key, model.seen_, neg)
    return neg


__all__ = ["model_negatives", "rank_keys", "stable_negatives"]
