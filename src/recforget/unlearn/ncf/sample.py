"""What a deletion changes in an NCF model's fixed sample, and the gradient of that change.

The retraining objective of :mod:`recforget.models._ncf_objective` is a sum over a fixed
sample: every positive and, for each, ``negatives`` items drawn once by
:func:`~recforget.models._ncf_negatives.stable_negatives`. A user's draw depends only on the seed,
the ids and its own positives, so a deletion changes the sample only for the users it touches, and
by little: a user that lost ``k`` positives loses those ``k`` positive samples and the ``k *
negatives`` last negatives of its key-ordered draw, and the deleted items become eligible (entering
the draw where their keys rank). :func:`carry_negatives` derives the new draw from the old one this
way (:func:`recforget.kernels.negatives.merge_negatives`), and records the difference
as a :class:`SampleChange`, so neither costs a pass over the touched users' whole histories.

:func:`sample_delta` is the gradient of that change at the original network, and
:func:`anchor_of` the original's full residual, the linear term of the anchored objective.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from recforget.data.interactions import Interactions, Removal, _id_hashes
from recforget.kernels.negatives import merge_negatives
from recforget.models._ncf_negatives import model_negatives, rank_keys, stable_negatives
from recforget.models._ncf_objective import Anchor, data_gradients, fixed_sample, shared_weights
from recforget.models.ncf import NCF


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
    old_keys = rank_keys(np.repeat(hu[uo], lens_old), hi[old_items], seed)
    where = np.full(old.n_users, -1, dtype=np.int64)
    where[uo] = np.arange(len(uo))
    mine = where[removal.removed_users] >= 0
    ru, ri = removal.removed_users[mine], removal.removed_items[mine].astype(np.int64)
    k = where[ru]
    new_keys = rank_keys(hu[ru], hi[ri], seed)
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


def carry_negatives(model: NCF, removal: Removal, new: NCF) -> None:
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

    Recorded by :func:`carry_negatives` when ``new`` was made by ``transplant``; otherwise
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


# ---------------------------------------------------------------------------- sample difference
def kept_rows(index_map: np.ndarray) -> torch.Tensor:
    """Old indices of the kept rows, in their new order."""
    return torch.as_tensor(_kept_order(index_map), dtype=torch.int64)


def sample_delta(model: NCF, removal: Removal, new: NCF) -> Anchor:
    """:math:`\\delta = \\nabla F_{full}(\\theta_0) - \\nabla F_{rem}(\\theta_0)` (new index space).

    The two fixed samples differ only for the users the removal touches (the negatives are
    stable): the removed positives, the negatives those users gained or lost, and every sample
    of a dropped user. :math:`\\delta` is the summed BCE gradient, at the original network, of
    the samples only in the old sample minus those only in the new one (multiset difference;
    the ridge terms cancel), so it costs a pass over a few samples, not over the data.
    """
    change = sample_change(model, removal, new)
    module = model.module_
    dev = next(module.parameters()).device
    users = torch.as_tensor(change.users, device=dev)
    items = torch.as_tensor(change.items, device=dev)
    y = torch.as_tensor(change.labels, device=dev)
    w = torch.as_tensor(change.weights, device=dev)
    U = module.all_user_vectors().detach().requires_grad_()
    V = module.all_item_vectors().detach().requires_grad_()
    sh = {k: v.clone().requires_grad_() for k, v in shared_weights(module).items()}
    if len(change):
        z = module.logits(U[users], V[items], sh)
        ell = F.binary_cross_entropy_with_logits(z, y, reduction="none")
        (w * ell).sum().backward()

    def grad(t: torch.Tensor) -> torch.Tensor:
        return (t.grad if t.grad is not None else torch.zeros_like(t)).double()

    return Anchor(
        grad(U)[kept_rows(removal.user_map).to(dev)],
        grad(V)[kept_rows(removal.item_map).to(dev)],
        {k: grad(v) for k, v in sh.items()},
    )


def anchor_of(model: NCF, removal: Removal, new: NCF, reg: float) -> Anchor:
    """The original's gradient :math:`c = \\nabla F_{full}(\\theta_0)`, rows in the new index space.

    :math:`F_{full}` is the retraining objective of ``model.seen_`` (the data *before*
    removal); dropped users' and items' rows are left out. ``new`` is the warm start (the
    original's kept rows, :func:`transplant`): :math:`c = \\nabla F_{rem}(\\theta_0) + \\delta`
    (one pass over the remaining data, plus :func:`sample_delta`).
    """
    delta = sample_delta(model, removal, new)
    module = new.module_
    gU, gV, gS = data_gradients(module, fixed_sample(new))
    params = module.shared_parameters()
    return Anchor(
        gU.double() + reg * module.all_user_vectors().detach().double() + delta.users,
        gV.double() + reg * module.all_item_vectors().detach().double() + delta.items,
        {
            k: g.double() + reg * params[k].detach().double() + delta.shared[k]
            for k, g in gS.items()
        },
    )


__all__ = [
    "SampleChange",
    "anchor_of",
    "carry_negatives",
    "kept_rows",
    "sample_change",
    "sample_delta",
]
