"""A mutable, append-and-delete working view of interactions, for streams of small changes.

:class:`~recforget.data.interactions.Interactions` is immutable: every removal copies the whole
CSR and rebuilds the vocabularies, ``O(nnz)``. :class:`MutableInteractions` is the working copy
a stream of deletions edits in place instead:

* both orientations are kept: the user-major CSR (``indptr, indices``) and the item-major one
  (``t_indptr, t_indices``), tied by ``twin`` (user-major position -> item-major position) and
  ``t_twin`` (the reverse), so an entry is removed from both in ``O(1)``;
* a removed entry is a **tombstone**: its slot stays, flagged dead (``live[e] = False``), so
  the CSR structure (``indptr``) never moves and removing a user or a few pairs costs
  ``O(deleted + the rows' lengths)``, whatever ``nnz`` is. Row kernels that weight entries
  (the ALS kernels) see a tombstone with weight and target 0, which contributes nothing;
* removed users and items keep their index (flagged dead in ``user_alive`` / ``item_alive``),
  so arrays aligned with the rows (factors) stay aligned;
* free slots (tombstones, or slack left by :meth:`compact`) take appended entries of the same
  user and item; :meth:`compact` rewrites the arrays without tombstones (optionally with
  per-row slack) when they pile up, an ``O(nnz)`` pass amortised over the removals that made
  them (see :meth:`should_compact`).

:meth:`from_interactions` and :meth:`to_interactions` convert both ways.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from recforget.data.errors import UnknownIdError
from recforget.data.interactions import Interactions
from recforget.data.vocab import Vocabulary


@dataclass(frozen=True)
class Compaction:
    """Where :meth:`MutableInteractions.compact` moved the live entries.

    Per-entry arrays kept beside the view (weights, targets) follow with
    ``new = np.zeros(capacity); new[new_pos] = old[old_pos]`` (user-major) and likewise with
    ``t_old_pos``/``t_new_pos`` (item-major).
    """

    old_pos: np.ndarray
    new_pos: np.ndarray
    t_old_pos: np.ndarray
    t_new_pos: np.ndarray
    capacity: int


@dataclass(frozen=True)
class MutableRemoval:
    """What :meth:`MutableInteractions.remove` did (indices are the view's, which never move)."""

    entries: np.ndarray  # user-major positions of the removed entries (now tombstones)
    users: np.ndarray  # user index of each removed entry
    items: np.ndarray  # item index of each removed entry
    dropped_users: np.ndarray  # whole users removed (now dead)
    dropped_items: np.ndarray
    absent_pairs: int = 0
    unknown: dict[str, list[object]] = field(default_factory=dict)

    @property
    def n_removed(self) -> int:
        return len(self.entries)

    @property
    def is_noop(self) -> bool:
        return self.n_removed == 0 and len(self.dropped_users) == 0 and len(self.dropped_items) == 0


class MutableInteractions:
    """Users x items interactions edited in place: tombstones, free slots, both orientations.

    Build with :meth:`from_interactions`; read back with :meth:`to_interactions`. Attributes
    (arrays are owned by the view and edited in place):

    ``indptr, indices, values, timestamps, live``
        User-major CSR with tombstones (``live`` false). Within a row, entries are sorted by
        item until an append fills a free slot.
    ``t_indptr, t_indices, twin, t_twin``
        Item-major CSR of the same slots; ``twin[e]`` is the item-major slot of user-major
        slot ``e`` and ``t_twin`` its inverse (free slots are paired too).
    ``user_alive, item_alive``
        False for removed users/items; ``user_counts``, ``item_counts`` count live entries.
    """

    def __init__(self) -> None:  # use from_interactions
        self.users: Vocabulary
        self.items: Vocabulary

    # ------------------------------------------------------------------ conversion
    @classmethod
    def from_interactions(cls, data: Interactions, *, slack: float = 0.0) -> MutableInteractions:
        """A working copy of ``data`` (arrays copied); ``slack`` as in :meth:`compact`."""
        view = cls()
        view.users, view.items = data.users, data.items
        t_indptr, t_indices, _, perm = data.transpose_arrays()
        view.indptr = data.indptr.copy()
        view.indices = data.indices.copy()
        view.values = data.values.copy()
        view.timestamps = None if data.timestamps is None else data.timestamps.copy()
        view.live = np.ones(data.nnz, dtype=bool)
        view.t_indptr = t_indptr.copy()
        view.t_indices = t_indices.copy()
        view.t_twin = perm.astype(np.int64)
        view.twin = np.empty(data.nnz, dtype=np.int64)
        view.twin[view.t_twin] = np.arange(data.nnz, dtype=np.int64)
        view.user_alive = np.ones(data.n_users, dtype=bool)
        view.item_alive = np.ones(data.n_items, dtype=bool)
        view.user_counts = data.user_counts().astype(np.int64)
        view.item_counts = data.item_counts().astype(np.int64)
        view.sorted_rows = True
        if slack > 0:
            view.compact(slack=slack)
        return view

    def to_interactions(self) -> Interactions:
        """The live entries as an immutable :class:`Interactions` (dead users/items leave).

        ``O(nnz)``; a stream reads it when it needs the public object, not per request.
        """
        pos = np.flatnonzero(self.live)
        rows = np.repeat(np.arange(self.n_users, dtype=np.int64), np.diff(self.indptr))[pos]
        cols = self.indices[pos].astype(np.int64)
        if not self.sorted_rows:
            order = np.lexsort((cols, rows))
            pos, rows, cols = pos[order], rows[order], cols[order]
        umap, imap = self.user_map(), self.item_map()
        counts = np.bincount(umap[rows], minlength=int(self.user_alive.sum()))
        indptr = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return Interactions(
            indptr,
            imap[cols],
            self.values[pos],
            self.users.take(np.flatnonzero(self.user_alive)),
            self.items.take(np.flatnonzero(self.item_alive)),
            None if self.timestamps is None else self.timestamps[pos],
        )

    def user_map(self) -> np.ndarray:
        """View user index -> index in :meth:`to_interactions` (-1 for removed users)."""
        return _alive_map(self.user_alive)

    def item_map(self) -> np.ndarray:
        """View item index -> index in :meth:`to_interactions` (-1 for removed items)."""
        return _alive_map(self.item_alive)

    # ------------------------------------------------------------------ sizes
    @property
    def n_users(self) -> int:
        """Rows of the view, removed users included (indices never move)."""
        return len(self.user_alive)

    @property
    def n_items(self) -> int:
        return len(self.item_alive)

    @property
    def nnz(self) -> int:
        """Live entries."""
        return int(self.user_counts.sum())

    @property
    def capacity(self) -> int:
        """Slots, live or free."""
        return len(self.indices)

    def tombstone_fraction(self) -> float:
        return 1.0 - self.nnz / self.capacity if self.capacity else 0.0

    def should_compact(self, threshold: float = 0.5) -> bool:
        """Whether free slots exceed ``threshold`` of the slots (then :meth:`compact` pays off:
        its ``O(capacity)`` cost is at most ``1 / threshold`` per entry removed since)."""
        return self.tombstone_fraction() > threshold

    def row_entries(self, u: int) -> np.ndarray:
        """User-major positions of user ``u``'s live entries."""
        s, e = self.indptr[u], self.indptr[u + 1]
        return s + np.flatnonzero(self.live[s:e])

    def item_entries(self, i: int) -> np.ndarray:
        """User-major positions of item ``i``'s live entries."""
        s, e = self.t_indptr[i], self.t_indptr[i + 1]
        pos = self.t_twin[s:e]
        return pos[self.live[pos]]

    # ------------------------------------------------------------------ lookups
    def find(self, u: int, i: int) -> int:
        """User-major position of the live entry ``(u, i)``, or -1. ``O(length of row u)``."""
        s, e = self.indptr[u], self.indptr[u + 1]
        hit = np.flatnonzero((self.indices[s:e] == i) & self.live[s:e])
        return int(s + hit[0]) if len(hit) else -1

    def _slot(self, u: int, i: int) -> int:
        """User-major position of any slot holding ``(u, i)`` (live or tombstone), or -1."""
        s, e = self.indptr[u], self.indptr[u + 1]
        hit = np.flatnonzero(self.indices[s:e] == i)
        return int(s + hit[0]) if len(hit) else -1

    def _lookup(self, vocab: Vocabulary, alive: np.ndarray, raw: list[object]) -> np.ndarray:
        idx = vocab.index(raw, missing="ignore")
        idx[(idx >= 0) & ~alive[np.maximum(idx, 0)]] = -1
        return idx

    # ------------------------------------------------------------------ edits
    def remove(
        self,
        pairs: Iterable[tuple[object, object]] = (),
        users: Iterable[object] = (),
        items: Iterable[object] = (),
        *,
        missing: Literal["error", "ignore"] = "error",
    ) -> MutableRemoval:
        """Remove pairs, whole users and whole items by raw id, in place.

        Same semantics as :meth:`Interactions.remove` (absent pairs counted, unknown ids an
        error or reported; a removed user or item is unknown from then on), at a cost of
        ``O(removed entries + lengths of the rows named)``, not ``O(nnz)``.
        """
        pairs = list(pairs)
        users, items = list(users), list(items)
        for p in pairs:
            if not isinstance(p, (tuple, list)) or len(p) != 2:
                raise ValueError(f"a pair must be (user, item), got {p!r}")
        pu = [p[0] for p in pairs]
        pi = [p[1] for p in pairs]
        uidx = self._lookup(self.users, self.user_alive, users + pu)
        iidx = self._lookup(self.items, self.item_alive, items + pi)
        unknown = {
            "users": list(dict.fromkeys(r for r, k in zip(users + pu, uidx, strict=True) if k < 0)),
            "items": list(dict.fromkeys(r for r, k in zip(items + pi, iidx, strict=True) if k < 0)),
        }
        if missing == "error":
            if unknown["users"]:
                raise UnknownIdError("user", unknown["users"])
            if unknown["items"]:
                raise UnknownIdError("item", unknown["items"])
        whole_u = np.unique(uidx[: len(users)][uidx[: len(users)] >= 0])
        whole_i = np.unique(iidx[: len(items)][iidx[: len(items)] >= 0])
        pu_idx, pi_idx = uidx[len(users) :], iidx[len(items) :]
        found, absent = [], 0
        for u, i in zip(pu_idx.tolist(), pi_idx.tolist(), strict=True):
            if u < 0 or i < 0:
                continue
            e = self.find(u, i)
            if e < 0:
                absent += 1
            else:
                found.append(e)
        parts = [np.asarray(found, dtype=np.int64)]
        parts += [self.row_entries(int(u)) for u in whole_u]
        parts += [self.item_entries(int(i)) for i in whole_i]
        entries = np.unique(np.concatenate(parts)) if parts else np.empty(0, np.int64)
        rows = self._rows_of(entries)
        cols = self.indices[entries].astype(np.int64)
        self.live[entries] = False
        np.subtract.at(self.user_counts, rows, 1)
        np.subtract.at(self.item_counts, cols, 1)
        self.user_alive[whole_u] = False
        self.item_alive[whole_i] = False
        return MutableRemoval(entries, rows, cols, whole_u, whole_i, absent, unknown)

    def append(self, user: object, item: object, value: float = 1.0, timestamp: int = 0) -> int:
        """Add the interaction ``(user, item)`` (both known and alive); returns its position.

        Uses a free slot of the user's row and of the item's row (the pair's own tombstone if
        it was removed before); when either row has none, the arrays are compacted with slack
        first (amortised). An existing live pair is an error.
        """
        u = int(self._lookup(self.users, self.user_alive, [user])[0])
        i = int(self._lookup(self.items, self.item_alive, [item])[0])
        if u < 0:
            raise UnknownIdError("user", [user])
        if i < 0:
            raise UnknownIdError("item", [item])
        if not np.isfinite(value):
            raise ValueError(f"value must be finite, got {value!r}")
        if self.find(u, i) >= 0:
            raise ValueError(f"interaction ({user!r}, {item!r}) is already present")
        e = self._slot(u, i)
        if e < 0:
            e = self._free_pair(u, i)
            if e < 0:
                self.compact(slack=0.25)
                e = self._free_pair(u, i)
            self.sorted_rows = False
        self.values[e] = value
        if self.timestamps is not None:
            self.timestamps[e] = timestamp
        self.live[e] = True
        self.user_counts[u] += 1
        self.item_counts[i] += 1
        return e

    def _free_pair(self, u: int, i: int) -> int:
        """Claim a free slot in row ``u`` and one in column ``i``, pair them, set their ids."""
        s, e = self.indptr[u], self.indptr[u + 1]
        free_u = np.flatnonzero(~self.live[s:e])
        ts, te = self.t_indptr[i], self.t_indptr[i + 1]
        free_t = np.flatnonzero(~self.live[self.t_twin[ts:te]])
        if len(free_u) == 0 or len(free_t) == 0:
            return -1
        pu, pt = int(s + free_u[0]), int(ts + free_t[0])
        # re-pair: pu <-> pt become the pair (u, i); their old twins, free slots of the old
        # column of pu and the old row of pt, become a free pair of each other
        qt, qu = int(self.twin[pu]), int(self.t_twin[pt])
        old_col, old_row = int(self.indices[pu]), int(self.t_indices[pt])
        self.twin[pu], self.t_twin[pt] = pt, pu
        self.twin[qu], self.t_twin[qt] = qt, qu
        self.indices[pu], self.t_indices[pt] = i, u
        self.indices[qu], self.t_indices[qt] = old_col, old_row
        return pu

    def compact(self, slack: float = 0.0) -> Compaction:
        """Rewrite the arrays with live entries only (rows sorted), plus free slots per row.

        ``slack``: each user row gets ``ceil(slack * live)`` free slots and each item row as
        many as needed to pair them. Indices of users and items do not change.
        """
        pos = np.flatnonzero(self.live)
        rows = self._rows_of(pos)
        cols = self.indices[pos].astype(np.int64)
        order = np.lexsort((cols, rows))
        pos, rows, cols = pos[order], rows[order], cols[order]
        n_u, n_i = self.n_users, self.n_items
        extra = np.ceil(slack * self.user_counts).astype(np.int64) if slack > 0 else None
        # free slots are pairs (user row, item column): spread over items round-robin
        if extra is not None and extra.sum():
            f_rows = np.repeat(np.arange(n_u, dtype=np.int64), extra)
            f_cols = np.arange(len(f_rows), dtype=np.int64) % max(n_i, 1)
        else:
            f_rows = f_cols = np.empty(0, np.int64)
        all_rows = np.concatenate([rows, f_rows])
        all_cols = np.concatenate([cols, f_cols])
        is_live = np.concatenate([np.ones(len(rows), bool), np.zeros(len(f_rows), bool)])
        src = np.concatenate([pos, np.full(len(f_rows), -1, np.int64)])
        order = np.lexsort((~is_live, all_rows))  # by row: live entries (sorted) first
        all_rows, all_cols, is_live, src = (a[order] for a in (all_rows, all_cols, is_live, src))
        cap = len(all_rows)
        indptr = np.zeros(n_u + 1, dtype=np.int64)
        np.cumsum(np.bincount(all_rows, minlength=n_u), out=indptr[1:])
        t_order = np.lexsort((all_rows, all_cols))
        t_indptr = np.zeros(n_i + 1, dtype=np.int64)
        np.cumsum(np.bincount(all_cols, minlength=n_i), out=t_indptr[1:])
        twin = np.empty(cap, dtype=np.int64)
        twin[t_order] = np.arange(cap, dtype=np.int64)
        values = np.zeros(cap)
        values[is_live] = self.values[src[is_live]]
        if self.timestamps is not None:
            ts = np.zeros(cap, dtype=np.int64)
            ts[is_live] = self.timestamps[src[is_live]]
            self.timestamps = ts
        t_old = self.twin[src[is_live]]
        new_live = np.flatnonzero(is_live)
        result = Compaction(src[is_live], new_live, t_old, twin[new_live], cap)
        self.indptr, self.indices, self.values, self.live = (
            indptr,
            all_cols.astype(np.int32),
            values,
            is_live.copy(),
        )
        self.t_indptr, self.t_indices = t_indptr, all_rows[t_order].astype(np.int32)
        self.twin, self.t_twin = twin, t_order.astype(np.int64)
        self.sorted_rows = True
        return result

    def _rows_of(self, pos: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.indptr, pos, side="right").astype(np.int64) - 1


def _alive_map(alive: np.ndarray) -> np.ndarray:
    out = np.cumsum(alive) - 1
    out[~alive] = -1
    return out.astype(np.int64)


__all__ = ["Compaction", "MutableInteractions", "MutableRemoval"]
