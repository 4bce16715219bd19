"""The fixed sample of NCF unlearning: stable negatives, and what a deletion changes in them.

The retraining objective of :mod:`recforget.unlearn._ncf_objective` is a sum over a fixed
sample: every positive and, for each, ``negatives`` items drawn once by
:func:`stable_negatives`. A user's draw depends only on the seed, the ids and its own
positives, so a deletion changes the sample only for the users it touches, and by little: a
user that lost ``k`` positives loses those ``k`` positive samples and the ``k * negatives``
last negatives of its key-ordered draw, and the deleted items become eligible (entering the
draw where their keys rank). :func:`_carry_negatives` derives the new draw from the old one
this way (:func:`recforget.kernels.negatives.merge_negatives`), and records the difference
as a :class:`SampleChange`, so neither costs a pass over the touched users' whole histories.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recforget.data.interactions import Interactions, Removal, _id_hashes
from recforget.kernels.negatives import merge_negatives
from recforget.models.ncf import NCF

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on uint64 arrays (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def _keys(user_hashes: np.ndarray, item_hashes: np.ndarray, seed: int) -> np.ndarray:
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
        keys = _keys(hu[s : s + step][:, None], hi[None, :], seed)
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


@dataclass
class SampleChange:
    """What a deletion changes in the fixed sample: (user, item, label) triples, old indices.

    ``weights`` is +1 for a triple only in the old sample and -1 for one only in the new
    sample (a multiset difference: one entry per occurrence).
    """

    users: np.ndarray
    items: np.ndarray
    labels: np.ndarray
    weights: np.ndarray

    def __len__(self) -> int:
        return len(self.users)

    @classmethod
    def concat(cls, parts: list[SampleChange]) -> SampleChange:
        return cls(
            *(
                np.concatenate([getattr(p, f) for p in parts])
                for f in ("users", "items", "labels", "weights")
            )
        )


def _triples(users: np.ndarray, items: np.ndarray, label: float, weight: float) -> SampleChange:
    n = len(users)
    return SampleChange(
        np.asarray(users, dtype=np.int64),
        np.asarray(items, dtype=np.int64),
        np.full(n, label, dtype=np.float32),
        np.full(n, weight, dtype=np.float32),
    )


def _kept_order(index_map: np.ndarray) -> np.ndarray:
    """Old index of each kept row, in the new order."""
    old = np.flatnonzero(index_map >= 0)
    return old[np.argsort(index_map[old])]


def _multiset_change(
    old: Interactions,
    old_neg: np.ndarray,
    removal: Removal,
    new_neg: np.ndarray,
    changed: np.ndarray,
) -> SampleChange:
    """The change of the ``changed`` (old-index mask) users' samples, by sorting all of them."""
    data, n_items = removal.data, old.n_items
    inv_u, inv_i = _kept_order(removal.user_map), _kept_order(removal.item_map)

    def keys(users: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
        k_pos = (users * n_items + pos) * 2 + 1
        k_neg = (np.repeat(users, neg.shape[1]) * n_items + neg.ravel()) * 2
        return np.concatenate([k_pos, k_neg])

    e = np.flatnonzero(changed[old.row_of_entry])
    k_old = keys(old.row_of_entry[e].astype(np.int64), old.indices[e].astype(np.int64), old_neg[e])
    rows_new = inv_u[data.row_of_entry]
    e = np.flatnonzero(changed[rows_new])
    k_new = keys(rows_new[e], inv_i[data.indices[e]], inv_i[new_neg[e]])
    uniq, inverse = np.unique(np.concatenate([k_old, k_new]), return_inverse=True)
    weight = np.bincount(
        inverse, weights=np.r_[np.ones(len(k_old)), -np.ones(len(k_new))], minlength=len(uniq)
    )
    nz = weight != 0
    uniq, weight = uniq[nz], weight[nz]
    pair = uniq // 2
    return SampleChange(
        pair // n_items,
        pair % n_items,
        (uniq % 2).astype(np.float32),
        weight.astype(np.float32),
    )


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(s, s + n)`` for each start and length."""
    total = int(lengths.sum())
    offsets = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    return offsets + np.arange(total, dtype=np.int64)


def _merge_carry(
    old: Interactions,
    old_neg: np.ndarray,
    removal: Removal,
    neg: np.ndarray,
    users: np.ndarray,
    seed: int,
) -> SampleChange:
    """Fill ``neg``'s rows of ``users`` (new indices) by merging; their :class:`SampleChange`.

    For users whose old draw did not cycle and that lost only positives (no item left the
    vocabulary, so item indices are unchanged): the new draw is the old one merged, by key,
    with the deleted items, cut to the new length.
    """
    data, n_neg = removal.data, old_neg.shape[1]
    uo = _kept_order(removal.user_map)[users]  # old indices
    lens_old = (old.indptr[uo + 1] - old.indptr[uo]).astype(np.int64) * n_neg
    idx = _ranges(old.indptr[uo].astype(np.int64) * n_neg, lens_old)
    old_items = old_neg.ravel()[idx]
    hu, hi = _id_hashes(old.users), _id_hashes(old.items)
    old_keys = _keys(np.repeat(hu[uo], lens_old), hi[old_items], seed)
    where = np.full(old.n_users, -1, dtype=np.int64)
    where[uo] = np.arange(len(uo))
    mine = where[removal.removed_users] >= 0
    ru, ri = removal.removed_users[mine], removal.removed_items[mine].astype(np.int64)
    k = where[ru]
    new_keys = _keys(hu[ru], hi[ri], seed)
    order = np.lexsort((new_keys, k))
    ru, ri, k, new_keys = ru[order], ri[order], k[order], new_keys[order]
    new_ptr = np.r_[0, np.cumsum(np.bincount(k, minlength=len(uo)))].astype(np.int64)
    old_ptr = np.r_[0, np.cumsum(lens_old)].astype(np.int64)
    need = (data.indptr[users + 1] - data.indptr[users]).astype(np.int64) * n_neg
    out_ptr = data.indptr[users].astype(np.int64) * n_neg
    cap = (n_neg + 1) * len(ri)
    dropped, dropped_k = np.empty(cap, np.int64), np.empty(cap, np.int64)
    added, added_k = np.empty(len(ri), np.int64), np.empty(len(ri), np.int64)
    flat = neg.reshape(-1)
    nd, na = merge_negatives(
        old_items,
        old_keys,
        old_ptr,
        ri,
        new_keys,
        new_ptr,
        need,
        flat,
        out_ptr,
        dropped,
        dropped_k,
        added,
        added_k,
    )
    return SampleChange.concat(
        [
            _triples(ru, ri, 1.0, 1.0),
            _triples(uo[dropped_k[:nd]], dropped[:nd], 0.0, 1.0),
            _triples(uo[added_k[:na]], added[:na], 0.0, -1.0),
        ]
    )


def _carry_negatives(model: NCF, removal: Removal, new: NCF) -> None:
    """Cache ``new``'s negatives from ``model``'s, and what changed (:func:`sample_change`).

    Rows of untouched users are unchanged. The users that only lost positives (and whose draw
    never cycled) get their old draw merged with the deleted items (:func:`_merge_carry`);
    the others (those that had drawn a removed item, or whose draw cycles) are drawn again
    (:func:`stable_negatives` with ``users=``) and compared by sorting.
    """
    old, data = model.seen_, removal.data
    n_neg, seed = int(new.negatives), int(new.seed_)
    old_neg = model_negatives(model)
    inv_u, inv_i = _kept_order(removal.user_map), _kept_order(removal.item_map)
    rows = data.row_of_entry.astype(np.int64)
    old_keys = old.row_of_entry.astype(np.int64) * old.n_items + old.indices
    pos = np.searchsorted(old_keys, inv_u[rows] * old.n_items + inv_i[data.indices])
    neg = removal.item_map[old_neg[pos]]
    lost = removal.user_map[removal.affected_users]  # lost positives
    drew_gone = np.unique(rows[(neg < 0).any(axis=1)])  # had drawn a removed item
    redo = np.zeros(data.n_users, dtype=bool)
    redo[lost] = True
    redo[drew_gone] = True
    fast = np.zeros(data.n_users, dtype=bool)
    if len(removal.dropped_items) == 0:
        fast[lost] = True
        fast[drew_gone] = False
        cnt_old = old.user_counts()[inv_u].astype(np.int64)
        fast &= n_neg * cnt_old < old.n_items - cnt_old  # the old draw did not cycle
    slow = redo & ~fast
    parts = []
    if fast.any():
        parts.append(_merge_carry(old, old_neg, removal, neg, np.flatnonzero(fast), seed))
    changed = np.zeros(old.n_users, dtype=bool)
    changed[inv_u[slow]] = True
    changed[removal.dropped_users] = True
    if slow.any():
        fresh = stable_negatives(data, n_neg, seed, users=np.flatnonzero(slow))
        mine = slow[rows]
        neg[mine] = fresh[mine]
    if changed.any():
        parts.append(_multiset_change(old, old_neg, removal, neg, changed))
    new._negatives_cache = ((n_neg, seed), data, neg)
    change = SampleChange.concat(parts) if parts else _triples(np.empty(0), np.empty(0), 0, 0)
    new._sample_change = (removal, change)


def sample_change(model: NCF, removal: Removal, new: NCF) -> SampleChange:
    """What ``removal`` changes in ``model``'s fixed sample (``new``: the warm start).

    Recorded by :func:`_carry_negatives` when ``new`` was made by ``transplant``; otherwise
    found by sorting the samples of every touched user.
    """
    cached = new.__dict__.get("_sample_change")
    if cached is not None and cached[0] is removal:
        return cached[1]
    old = model.seen_
    old_neg, new_neg = model_negatives(model), model_negatives(new)
    changed = np.zeros(old.n_users, dtype=bool)
    changed[removal.affected_users] = True
    changed[removal.dropped_users] = True
    if len(removal.dropped_items):
        gone = np.zeros(old.n_items, dtype=bool)
        gone[removal.dropped_items] = True
        changed[old.row_of_entry[gone[old_neg].any(axis=1)]] = True
    return _multiset_change(old, old_neg, removal, new_neg, changed)
