"""The fixed sample of an NCF model's objective, as a working copy that deletions edit in place.

The positives are a :class:`~recforget.data.mutable.MutableInteractions` of the training data;
the fixed negatives (:func:`~recforget.models._ncf_negatives.stable_negatives`) a second one
whose values count how often the user drew the item (a dense user's draw cycles). Both keep
the first model's indices (removed rows stay, flagged dead). A deletion redraws only the users
it touches (``O(n_items)`` each: a user who lost positives, or had drawn a removed item) and
reports what left and joined the sample as a :class:`~recforget.unlearn.ncf.sample.
SampleChange`; :meth:`WorkingSample.of_rows` lists the samples of given rows from the CSR
arrays of both orientations.
"""

from __future__ import annotations

import numpy as np

from recforget.data.interactions import Interactions, _id_hashes
from recforget.data.mutable import MutableInteractions, MutableRemoval
from recforget.models._ncf_negatives import model_negatives, rank_keys
from recforget.models.ncf import NCF
from recforget.unlearn.ncf.sample import SampleChange

_TOP = np.iinfo(np.uint64).max


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(s, s + n)`` for each start and length."""
    starts, lengths = np.asarray(starts, np.int64), np.asarray(lengths, np.int64)
    total = int(lengths.sum())
    offsets = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    return offsets + np.arange(total, dtype=np.int64)


def _row_samples(m: MutableInteractions, rows: np.ndarray) -> tuple[np.ndarray, ...]:
    """Live entries of user rows ``rows``: (users, items, values)."""
    pos = _ranges(m.indptr[rows], m.indptr[rows + 1] - m.indptr[rows])
    pos = pos[m.live[pos]]
    users = np.searchsorted(m.indptr, pos, side="right") - 1
    return users.astype(np.int64), m.indices[pos].astype(np.int64), m.values[pos]


def _col_samples(m: MutableInteractions, cols: np.ndarray) -> tuple[np.ndarray, ...]:
    """Live entries of item columns ``cols``: (users, items, values)."""
    t = _ranges(m.t_indptr[cols], m.t_indptr[cols + 1] - m.t_indptr[cols])
    pos = m.t_twin[t]
    live = m.live[pos]
    t, pos = t[live], pos[live]
    return m.t_indices[t].astype(np.int64), m.indices[pos].astype(np.int64), m.values[pos]


def _kill(m: MutableInteractions, pos: np.ndarray) -> None:
    """Tombstone the live entries ``pos`` of ``m`` (counts kept in step)."""
    pos = pos[m.live[pos]]
    rows = np.searchsorted(m.indptr, pos, side="right") - 1
    m.live[pos] = False
    np.subtract.at(m.user_counts, rows, 1)
    np.subtract.at(m.item_counts, m.indices[pos].astype(np.int64), 1)


class WorkingSample:
    """Positives and fixed negatives of an NCF model's objective, edited by deletions.

    Attributes: ``positives`` and ``negatives`` (:class:`MutableInteractions`, read them, do
    not edit them), ``seed`` and ``n_neg`` (the draw's).
    """

    def __init__(self, model: NCF) -> None:
        data = model.seen_
        self.seed, self.n_neg = int(model.seed_), int(model.negatives)
        self.positives = MutableInteractions.from_interactions(data)
        neg = model_negatives(model)
        rows = np.repeat(data.row_of_entry.astype(np.int64), neg.shape[1])
        keys, counts = np.unique(rows * data.n_items + neg.ravel(), return_counts=True)
        indptr = np.zeros(data.n_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(keys // data.n_items, minlength=data.n_users), out=indptr[1:])
        negs = Interactions(indptr, keys % data.n_items, counts, data.users, data.items)
        self.negatives = MutableInteractions.from_interactions(negs)
        self._hu, self._hi = _id_hashes(data.users), _id_hashes(data.items)
        self.items_changed()

    def items_changed(self) -> None:
        """Refresh the alive items' index (after items left)."""
        view = self.positives
        self._items_alive = np.flatnonzero(view.item_alive)
        self._item_pos = np.cumsum(view.item_alive) - 1  # view item -> alive index

    def all(self) -> tuple[np.ndarray, ...]:
        """Every sample (users, items, labels, multiplicities), from the working data."""
        pu, pi, _ = _row_samples(self.positives, np.arange(self.positives.n_users))
        nu, ni, nm = _row_samples(self.negatives, np.arange(self.negatives.n_users))
        return (
            np.r_[pu, nu],
            np.r_[pi, ni],
            np.r_[np.ones(len(pu)), np.zeros(len(nu))],
            np.r_[np.ones(len(pu)), nm],
        )

    def apply(self, removal: MutableRemoval) -> SampleChange:
        """The negatives after ``removal`` (already applied to :attr:`positives`); the whole
        sample change (weights: +multiplicity leaving, -multiplicity joining)."""
        neg, view = self.negatives, self.positives
        cu, ci, cy, cw = [removal.users], [removal.items], [np.ones(removal.n_removed)], []
        cw.append(np.ones(removal.n_removed))
        if len(removal.dropped_users):  # every negative of a dropped user leaves
            u, i, m = _row_samples(neg, removal.dropped_users)
            cu.append(u), ci.append(i), cy.append(np.zeros(len(u))), cw.append(m)
            pos = _ranges(
                neg.indptr[removal.dropped_users],
                neg.indptr[removal.dropped_users + 1] - neg.indptr[removal.dropped_users],
            )
            _kill(neg, pos)
            neg.user_alive[removal.dropped_users] = False
        redo = [removal.users]
        if len(removal.dropped_items):
            redo.append(_col_samples(neg, removal.dropped_items)[0])
            neg.item_alive[removal.dropped_items] = False
            self.items_changed()
        redo = np.unique(np.concatenate(redo))
        redo = redo[view.user_alive[redo]]
        for u in redo.tolist():
            items, diff = self.redraw(u)
            if len(items):
                cu.append(np.full(len(items), u)), ci.append(items)
                cy.append(np.zeros(len(items))), cw.append(diff)
        return SampleChange(
            np.concatenate(cu).astype(np.int64),
            np.concatenate(ci).astype(np.int64),
            np.concatenate(cy).astype(np.float32),
            np.concatenate(cw).astype(np.float32),
        )

    def draw(self, u: int) -> tuple[np.ndarray, np.ndarray]:
        """User ``u``'s negatives now (:func:`~recforget.models._ncf_negatives.
        stable_negatives` on the remaining data): view item indices and multiplicities."""
        view = self.positives
        pos = view.row_entries(u)
        count = len(pos)
        if count == 0:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        k = rank_keys(self._hu[u : u + 1], self._hi[self._items_alive], self.seed)
        k[self._item_pos[view.indices[pos]]] = _TOP
        free = len(k) - count
        if free <= 0:
            raise ValueError(f"user {view.users.ids[u]!r} has every item as a positive")
        need = count * self.n_neg
        if need < free:
            part = np.argpartition(k, need - 1)[:need]
        else:
            part = np.resize(np.argsort(k, kind="stable")[:free], need)
        c = np.bincount(part, minlength=len(k))
        nz = np.flatnonzero(c)
        return self._items_alive[nz], c[nz]

    def redraw(self, u: int) -> tuple[np.ndarray, np.ndarray]:
        """Redraw ``u``'s negatives in place; the items whose count changed and by how much
        it fell (+ leaving, - joining)."""
        neg = self.negatives
        pos = neg.row_entries(u)
        old_items, old_c = neg.indices[pos].astype(np.int64), neg.values[pos]
        new_items, new_c = self.draw(u)
        items = np.union1d(old_items, new_items)
        before = np.zeros(len(items))
        before[np.searchsorted(items, old_items)] = old_c
        after = np.zeros(len(items))
        after[np.searchsorted(items, new_items)] = new_c
        diff = before - after
        moved = diff != 0
        at = np.full(len(items), -1, np.int64)
        at[np.searchsorted(items, old_items)] = pos
        gone = moved & (after == 0) & (at >= 0)
        _kill(neg, at[gone])
        upd = moved & (after > 0) & (at >= 0)
        neg.values[at[upd]] = after[upd]
        for i, c in zip(
            items[moved & (at < 0)].tolist(), after[moved & (at < 0)].tolist(), strict=True
        ):
            neg.append(neg.users.ids[u], neg.items.ids[i], float(c))
        return items[moved], diff[moved]

    def of_rows(self, rows: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
        """Every remaining sample of the moved rows (users, items, labels, multiplicities)."""
        parts = []
        mu = np.zeros(self.positives.n_users, dtype=bool)
        mu[rows["users"]] = True
        for m, label in ((self.positives, 1.0), (self.negatives, 0.0)):
            u, i, v = _row_samples(m, rows["users"])
            parts.append((u, i, np.full(len(u), label), np.ones(len(u)) if label else v))
            u, i, v = _col_samples(m, rows["items"])
            keep = ~mu[u]  # a sample of a moved user and a moved item counts once
            u, i, v = u[keep], i[keep], v[keep]
            parts.append((u, i, np.full(len(u), label), np.ones(len(u)) if label else v))
        return tuple(np.concatenate([p[k] for p in parts]) for k in range(4))


__all__ = ["WorkingSample"]
