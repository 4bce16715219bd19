"""Interactions: an immutable users x items matrix with raw-id vocabularies."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recforget.data.errors import DataError, UnknownIdError, show_id
from recforget.data.vocab import Vocabulary

DuplicatePolicy = Literal["error", "sum", "mean", "max", "last", "first"]
_DUPLICATE_POLICIES = ("error", "sum", "mean", "max", "last", "first")


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


class Interactions:
    """Immutable user-item interactions: CSR (users x items) plus raw-id vocabularies.

    Values are explicit ratings or implicit strengths (counts, 1.0); the model decides how to
    read them. Entries are sorted by (user index, item index) and unique. Timestamps, when
    given, are aligned with the entries.

    Build one with :meth:`from_frame`, :meth:`from_arrays` or :meth:`from_csr`; readers in
    :mod:`recforget.data.readers` build them from files.

    Parameters
    ----------
    indptr, indices, values : CSR arrays of shape (n_users + 1,), (nnz,), (nnz,)
        Sorted, duplicate-free rows (checked).
    users, items : Vocabulary
    timestamps : int64 array of shape (nnz,), optional
    """

    __slots__ = ("_cache", "_indices", "_indptr", "_timestamps", "_values", "items", "users")

    def __init__(
        self,
        indptr: np.ndarray,
        indices: np.ndarray,
        values: np.ndarray,
        users: Vocabulary,
        items: Vocabulary,
        timestamps: np.ndarray | None = None,
    ) -> None:
        indptr = np.ascontiguousarray(indptr, dtype=np.int64)
        indices = np.ascontiguousarray(indices, dtype=np.int32)
        values = np.ascontiguousarray(values, dtype=np.float64)
        if indptr.shape != (len(users) + 1,) or indptr[0] != 0 or indptr[-1] != len(indices):
            raise DataError("indptr does not match the user vocabulary and the entries")
        if len(values) != len(indices):
            raise DataError(f"{len(values)} values for {len(indices)} entries")
        if len(indices) and (indices.min() < 0 or indices.max() >= len(items)):
            raise DataError("item index out of range of the item vocabulary")
        if not np.all(np.isfinite(values)):
            bad = int(np.flatnonzero(~np.isfinite(values))[0])
            raise DataError(f"non-finite value {values[bad]!r} at entry {bad}")
        if np.any(np.diff(indptr) < 0):
            raise DataError("indptr must be non-decreasing")
        # rows sorted and unique: within each row, indices strictly increasing
        if len(indices) > 1:
            step = np.diff(indices.astype(np.int64))
            row_start = np.zeros(len(indices), dtype=bool)
            row_start[indptr[:-1][np.diff(indptr) > 0]] = True
            if np.any((step <= 0) & ~row_start[1:]):
                raise DataError("entries must be sorted and unique within each user")
        if timestamps is not None:
            timestamps = np.ascontiguousarray(timestamps, dtype=np.int64)
            if timestamps.shape != indices.shape:
                raise DataError("timestamps must have one value per entry")
            _readonly(timestamps)
        self._indptr = _readonly(indptr)
        self._indices = _readonly(indices)
        self._values = _readonly(values)
        self._timestamps = timestamps
        self.users = users
        self.items = items
        self._cache: dict[str, object] = {}

    # ------------------------------------------------------------------ builders
    @classmethod
    def from_frame(
        cls,
        df: pd.DataFrame,
        user_col: str = "user",
        item_col: str = "item",
        rating_col: str | None = "rating",
        timestamp_col: str | None = None,
        *,
        duplicates: DuplicatePolicy = "error",
        users: Vocabulary | None = None,
        items: Vocabulary | None = None,
        source: str | None = None,
        first_line: int | None = None,
    ) -> Interactions:
        """Build from a data frame with one row per interaction.

        Parameters
        ----------
        df : pandas.DataFrame
        user_col, item_col : str
            Raw id columns.
        rating_col : str or None
            Value column; ``None`` (or a missing ``"rating"`` column when left at the default)
            gives implicit values of 1.0.
        timestamp_col : str or None
            Integer (or datetime) timestamps, optional.
        duplicates : {"error", "sum", "mean", "max", "last", "first"}
            What to do with repeated (user, item) pairs. ``"error"`` (default) refuses them and
            names the first repeat; the others combine values (``"last"``/``"first"`` by row
            order) and keep the latest timestamp.
        users, items : Vocabulary, optional
            Fixed vocabularies (ids outside them are an error); default: the sorted distinct ids.
        source, first_line : str, int, optional
            File name and the line of ``df``'s first row, so errors can name them.
        """
        if duplicates not in _DUPLICATE_POLICIES:
            raise ValueError(f"duplicates must be one of {_DUPLICATE_POLICIES}, got {duplicates!r}")
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"expected a pandas DataFrame, got {type(df).__name__}")

        def where(row: int) -> int | None:
            return None if first_line is None else first_line + row

        if rating_col == "rating" and "rating" not in df.columns:
            rating_col = None
        needed = [c for c in (user_col, item_col, rating_col, timestamp_col) if c is not None]
        missing = [c for c in needed if c not in df.columns]
        if missing:
            raise DataError(
                f"missing column(s) {missing}; the data has columns {list(df.columns)}",
                file=source,
            )
        if len(df) == 0:
            raise DataError("no interactions (the data is empty)", file=source)
        for col in (user_col, item_col):
            nulls = df[col].isna().to_numpy()
            if nulls.any():
                row = int(np.flatnonzero(nulls)[0])
                raise DataError("missing id", file=source, line=where(row), column=col)
        if rating_col is None:
            values = np.ones(len(df), dtype=np.float64)
        else:
            values = _numeric(df[rating_col], rating_col, source, where)
        ts = None
        if timestamp_col is not None:
            col = df[timestamp_col]
            if pd.api.types.is_datetime64_any_dtype(col):
                if col.isna().any():
                    row = int(np.flatnonzero(col.isna().to_numpy())[0])
                    raise DataError(
                        "missing timestamp", file=source, line=where(row), column=timestamp_col
                    )
                ts = col.astype("datetime64[s]").astype(np.int64).to_numpy()
            else:
                tsf = _numeric(col, timestamp_col, source, where)
                ts = tsf.astype(np.int64)

        if users is None:
            u, users = _factorize(df[user_col], "user")
        else:
            u = users.index(df[user_col].to_numpy(), missing="ignore")
        if items is None:
            i, items = _factorize(df[item_col], "item")
        else:
            i = items.index(df[item_col].to_numpy(), missing="ignore")
        for idx, col, vocab in ((u, user_col, users), (i, item_col, items)):
            if (idx < 0).any():
                row = int(np.flatnonzero(idx < 0)[0])
                raise DataError(
                    f"{vocab.name} id {show_id(df[col].iloc[row])} is not in the given vocabulary",
                    file=source,
                    line=where(row),
                    column=col,
                )
        return cls._from_coo(u, i, values, ts, users, items, duplicates, source, where)

    @classmethod
    def from_arrays(
        cls,
        users: Sequence[object] | np.ndarray,
        items: Sequence[object] | np.ndarray,
        values: Sequence[float] | np.ndarray | None = None,
        timestamps: Sequence[int] | np.ndarray | None = None,
        *,
        duplicates: DuplicatePolicy = "error",
    ) -> Interactions:
        """Build from parallel arrays of raw user ids, raw item ids and (optional) values."""
        frame = {"user": np.asarray(users), "item": np.asarray(items)}
        if values is not None:
            frame["rating"] = np.asarray(values, dtype=np.float64)
        if timestamps is not None:
            frame["timestamp"] = np.asarray(timestamps)
        return cls.from_frame(
            pd.DataFrame(frame),
            rating_col="rating" if values is not None else None,
            timestamp_col="timestamp" if timestamps is not None else None,
            duplicates=duplicates,
        )

    @classmethod
    def from_csr(
        cls,
        matrix: sp.spmatrix | sp.sparray | np.ndarray,
        users: Vocabulary | Iterable[object] | None = None,
        items: Vocabulary | Iterable[object] | None = None,
        timestamps: np.ndarray | None = None,
    ) -> Interactions:
        """Build from a users x items matrix; ids default to ``0..n-1``.

        Explicitly stored zeros are kept as entries (an observed value of 0).
        """
        csr = sp.csr_array(matrix)
        csr.sum_duplicates()
        csr.sort_indices()
        n_users, n_items = csr.shape
        users = _vocab(users, n_users, "user")
        items = _vocab(items, n_items, "item")
        if (len(users), len(items)) != csr.shape:
            raise DataError(f"vocabulary sizes {(len(users), len(items))} != matrix {csr.shape}")
        return cls(csr.indptr, csr.indices, csr.data, users, items, timestamps)

    @classmethod
    def _from_coo(cls, u, i, values, ts, users, items, duplicates, source=None, where=None):
        order = np.lexsort((i, u))
        u, i, values = u[order], i[order], values[order]
        ts = ts[order] if ts is not None else None
        same = (u[1:] == u[:-1]) & (i[1:] == i[:-1])
        if same.any():
            if duplicates == "error":
                k = int(np.flatnonzero(same)[0])
                rows = sorted((int(order[k]), int(order[k + 1])))
                line = where(rows[1]) if where is not None else None
                first = where(rows[0]) if where is not None else None
                raise DataError(
                    f"duplicate interaction (user {show_id(users.ids[u[k]])}, "
                    f"item {show_id(items.ids[i[k]])})"
                    + (f", first seen at line {first}" if first is not None else "")
                    + "; pass duplicates='sum'|'mean'|'max'|'last'|'first' to combine repeats",
                    file=source,
                    line=line,
                )
            start = np.concatenate([[True], ~same])
            group = np.cumsum(start) - 1
            keys = np.flatnonzero(start)
            frame = pd.DataFrame({"g": group, "v": values, "o": order})
            if duplicates in ("last", "first"):
                frame = frame.sort_values(["g", "o"], kind="stable")
                agg = frame.groupby("g")["v"].agg(duplicates).to_numpy()
            else:
                agg = frame.groupby("g")["v"].agg(duplicates).to_numpy()
            values = agg.astype(np.float64)
            if ts is not None:
                ts = pd.Series(ts).groupby(group).max().to_numpy()
            u, i = u[keys], i[keys]
        indptr = np.zeros(len(users) + 1, dtype=np.int64)
        np.cumsum(np.bincount(u, minlength=len(users)), out=indptr[1:])
        return cls(indptr, i, values, users, items, ts)

    # ------------------------------------------------------------------ views
    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def nnz(self) -> int:
        return len(self._indices)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_users, self.n_items)

    @property
    def indptr(self) -> np.ndarray:
        return self._indptr

    @property
    def indices(self) -> np.ndarray:
        return self._indices

    @property
    def values(self) -> np.ndarray:
        return self._values

    @property
    def timestamps(self) -> np.ndarray | None:
        return self._timestamps

    @property
    def row_of_entry(self) -> np.ndarray:
        """User index of each entry, shape (nnz,)."""
        if "rows" not in self._cache:
            rows = np.repeat(np.arange(self.n_users, dtype=np.int32), np.diff(self._indptr))
            self._cache["rows"] = _readonly(rows)
        return self._cache["rows"]  # type: ignore[return-value]

    def __repr__(self) -> str:
        return (
            f"Interactions(n_users={self.n_users}, n_items={self.n_items}, nnz={self.nnz}, "
            f"timestamps={self._timestamps is not None})"
        )

    def __len__(self) -> int:
        return self.nnz

    def to_csr(self) -> sp.csr_array:
        """A copy as ``scipy.sparse.csr_array`` of shape (n_users, n_items), float64 values."""
        return sp.csr_array(
            (self._values.copy(), self._indices.copy(), self._indptr.copy()), shape=self.shape
        )

    def transpose_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Item-major CSR of the same entries: ``(indptr, indices, values, perm)``.

        ``perm[k]`` is the user-major entry position of item-major entry ``k``, so any per-entry
        array ``a`` (weights, targets) is reordered as ``a[perm]``.
        """
        if "T" not in self._cache:
            rows = self.row_of_entry
            perm = np.lexsort((rows, self._indices))
            indptr = np.zeros(self.n_items + 1, dtype=np.int64)
            np.cumsum(np.bincount(self._indices, minlength=self.n_items), out=indptr[1:])
            arrays = tuple(
                _readonly(a)
                for a in (indptr, rows[perm].astype(np.int32), self._values[perm], perm)
            )
            self._cache["T"] = arrays
        return self._cache["T"]  # type: ignore[return-value]

    def to_frame(self) -> pd.DataFrame:
        """One row per interaction: ``user``, ``item``, ``rating`` [, ``timestamp``] (raw ids)."""
        frame = {
            "user": self.users.ids[self.row_of_entry],
            "item": self.items.ids[self._indices],
            "rating": self._values.copy(),
        }
        if self._timestamps is not None:
            frame["timestamp"] = self._timestamps.copy()
        return pd.DataFrame(frame)

    def user_counts(self) -> np.ndarray:
        return np.diff(self._indptr)

    def item_counts(self) -> np.ndarray:
        return np.bincount(self._indices, minlength=self.n_items)

    def fingerprint(self) -> str:
        """sha256 of the (user, item, value) triples in a canonical order: content, not layout.

        Each raw id is hashed from its text (blake2b, 8 bytes); entries are ordered by
        (user hash, item hash) and the hashes and values are digested with sha256. Two objects
        with the same interactions have the same fingerprint whatever their vocabularies' order
        or unused ids.
        """
        if "fp" not in self._cache:
            hu = _id_hashes(self.users)[self.row_of_entry]
            hi = _id_hashes(self.items)[self._indices]
            order = np.lexsort((hi, hu))
            h = hashlib.sha256()
            h.update(b"recforget-interactions-v1\n")
            h.update(np.ascontiguousarray(hu[order], dtype="<u8").tobytes())
            h.update(np.ascontiguousarray(hi[order], dtype="<u8").tobytes())
            h.update(np.ascontiguousarray(self._values[order], dtype="<f8").tobytes())
            self._cache["fp"] = h.hexdigest()
        return self._cache["fp"]  # type: ignore[return-value]

    # ------------------------------------------------------------------ derived data
    def select(self, keep: np.ndarray) -> Interactions:
        """Keep the entries where the boolean mask ``keep`` (shape (nnz,)) is true.

        Vocabularies are unchanged (users and items may be left with no entries).
        """
        keep = np.asarray(keep, dtype=bool)
        if keep.shape != (self.nnz,):
            raise ValueError(f"mask must have shape ({self.nnz},), got {keep.shape}")
        counts = np.bincount(self.row_of_entry[keep], minlength=self.n_users)
        indptr = np.zeros(self.n_users + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        ts = self._timestamps[keep] if self._timestamps is not None else None
        return Interactions(
            indptr, self._indices[keep], self._values[keep], self.users, self.items, ts
        )

    def with_values(self, values: np.ndarray) -> Interactions:
        """Same entries with new values (shape (nnz,))."""
        return Interactions(
            self._indptr,
            self._indices,
            np.asarray(values, dtype=np.float64),
            self.users,
            self.items,
            self._timestamps,
        )

    def reindex(self, users: Vocabulary, items: Vocabulary) -> Interactions:
        """Same interactions under other vocabularies (ids missing from them are an error)."""
        frame = self.to_frame()
        return Interactions.from_frame(
            frame,
            timestamp_col="timestamp" if self._timestamps is not None else None,
            users=users,
            items=items,
        )

    def entry_positions(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        """Entry position of each (user index, item index) pair, -1 where absent."""
        u = np.asarray(u, dtype=np.int64)
        i = np.asarray(i, dtype=np.int64)
        out = np.full(len(u), -1, dtype=np.int64)
        if len(u) == 0:
            return out
        starts, ends = self._indptr[u], self._indptr[u + 1]
        key = self.row_of_entry.astype(np.int64) * self.n_items + self._indices
        pos = np.searchsorted(key, u * self.n_items + i)
        ok = (pos < ends) & (pos >= starts)
        ok[ok] = self._indices[pos[ok]] == i[ok]
        out[ok] = pos[ok]
        return out

    def remove(
        self,
        pairs: Iterable[tuple[object, object]] = (),
        users: Iterable[object] = (),
        items: Iterable[object] = (),
        *,
        missing: Literal["error", "ignore"] = "error",
    ) -> Removal:
        """Remove interactions, whole users and whole items (raw ids).

        Whole users and items leave the vocabularies too; pairs leave only the matrix. Pairs that
        are not (or no longer) interactions are counted in ``Removal.absent_pairs``; ids that are
        not in the vocabularies raise :class:`UnknownIdError` (``missing="error"``) or are
        reported in ``Removal.unknown`` (``missing="ignore"``).
        """
        pairs = list(pairs)
        users = list(users)
        items = list(items)
        pu = [p[0] for p in pairs]
        pi = [p[1] for p in pairs]
        for p in pairs:
            if not isinstance(p, (tuple, list)) or len(p) != 2:
                raise ValueError(f"a pair must be (user, item), got {p!r}")
        unknown = {
            "users": _unique(self.users.unknown(users + pu)),
            "items": _unique(self.items.unknown(items + pi)),
        }
        if missing == "error":
            if unknown["users"]:
                raise UnknownIdError("user", unknown["users"])
            if unknown["items"]:
                raise UnknownIdError("item", unknown["items"])
        uidx = self.users.index(users, missing="ignore")
        iidx = self.items.index(items, missing="ignore")
        uidx, iidx = np.unique(uidx[uidx >= 0]), np.unique(iidx[iidx >= 0])
        pu_idx = self.users.index(pu, missing="ignore")
        pi_idx = self.items.index(pi, missing="ignore")
        known = (pu_idx >= 0) & (pi_idx >= 0)
        pos = self.entry_positions(pu_idx[known], pi_idx[known])
        absent = int((pos < 0).sum())

        drop = np.zeros(self.nnz, dtype=bool)
        drop[pos[pos >= 0]] = True
        user_gone = np.zeros(self.n_users, dtype=bool)
        user_gone[uidx] = True
        item_gone = np.zeros(self.n_items, dtype=bool)
        item_gone[iidx] = True
        drop |= user_gone[self.row_of_entry] | item_gone[self._indices]
        removed_u = self.row_of_entry[drop].astype(np.int64)
        removed_i = self._indices[drop].astype(np.int64)

        kept = self.select(~drop)
        user_map = np.cumsum(~user_gone) - 1
        user_map[user_gone] = -1
        item_map = np.cumsum(~item_gone) - 1
        item_map[item_gone] = -1
        if user_gone.any() or item_gone.any():
            keep_u = np.flatnonzero(~user_gone)
            keep_i = np.flatnonzero(~item_gone)
            rows = kept.row_of_entry
            sub_i = item_map[kept.indices]
            if (sub_i < 0).any():  # pragma: no cover - removed above
                raise AssertionError("entries of removed items survived")
            counts = np.bincount(user_map[rows], minlength=len(keep_u))
            indptr = np.zeros(len(keep_u) + 1, dtype=np.int64)
            np.cumsum(counts, out=indptr[1:])
            kept = Interactions(
                indptr,
                sub_i,
                kept.values,
                self.users.take(keep_u),
                self.items.take(keep_i),
                kept.timestamps,
            )
        if "T" in self._cache:
            kept._cache["T"] = self._filtered_transpose(~drop, removed_i, user_map, item_map, kept)
        return Removal(
            data=kept,
            removed_users=removed_u,
            removed_items=removed_i,
            user_map=user_map,
            item_map=item_map,
            dropped_users=uidx,
            dropped_items=iidx,
            absent_pairs=absent,
            unknown=unknown,
        )

    def _filtered_transpose(
        self,
        keep: np.ndarray,
        removed_items: np.ndarray,
        user_map: np.ndarray,
        item_map: np.ndarray,
        kept: Interactions,
    ) -> tuple[np.ndarray, ...]:
        """``kept.transpose_arrays()`` derived from this data's cached one, without a sort.

        Filtering the item-major order keeps it item-major (and user-ascending within an item,
        since ``user_map`` is increasing on kept users); item counts are the old ones minus the
        removed entries'.
        """
        indptr_t, rows_t, values_t, perm = self._cache["T"]
        keep_t = keep[perm]
        kept_perm = perm[keep_t]
        counts = np.diff(indptr_t) - np.bincount(removed_items, minlength=self.n_items)
        indptr = np.zeros(kept.n_items + 1, dtype=np.int64)
        np.cumsum(counts[item_map >= 0], out=indptr[1:])
        new_pos = np.cumsum(keep) - 1
        arrays = (
            indptr,
            user_map[rows_t[keep_t]].astype(np.int32),
            values_t[keep_t],
            new_pos[kept_perm],
        )
        return tuple(_readonly(a) for a in arrays)

    def drop_pairs(self, pairs: Iterable[tuple[object, object]]) -> Interactions:
        """Interactions without the given (user, item) pairs."""
        return self.remove(pairs=pairs).data

    def drop_users(self, users: Iterable[object]) -> Interactions:
        """Interactions without these users (they leave the vocabulary too)."""
        return self.remove(users=users).data

    def drop_items(self, items: Iterable[object]) -> Interactions:
        """Interactions without these items (they leave the vocabulary too)."""
        return self.remove(items=items).data


@dataclass(frozen=True)
class Removal:
    """What :meth:`Interactions.remove` did.

    Indices are those of the data *before* removal; ``user_map``/``item_map`` take an old index
    to the new one (-1 where the user/item left the vocabulary).
    """

    data: Interactions
    removed_users: np.ndarray  # old user index of each removed entry
    removed_items: np.ndarray  # old item index of each removed entry
    user_map: np.ndarray
    item_map: np.ndarray
    dropped_users: np.ndarray  # old indices of whole users removed
    dropped_items: np.ndarray
    absent_pairs: int = 0
    unknown: dict[str, list[object]] = field(default_factory=dict)

    @property
    def n_removed(self) -> int:
        """Number of interactions removed."""
        return len(self.removed_users)

    @property
    def affected_users(self) -> np.ndarray:
        """Old indices of kept users that lost interactions."""
        u = np.unique(self.removed_users)
        return u[self.user_map[u] >= 0]

    @property
    def affected_items(self) -> np.ndarray:
        """Old indices of kept items that lost interactions."""
        i = np.unique(self.removed_items)
        return i[self.item_map[i] >= 0]

    @property
    def is_noop(self) -> bool:
        return self.n_removed == 0 and len(self.dropped_users) == 0 and len(self.dropped_items) == 0


def _id_hashes(vocab: Vocabulary) -> np.ndarray:
    """64-bit hash of each id's text, uint64 array in index order."""
    return np.fromiter(
        (
            int.from_bytes(hashlib.blake2b(str(x).encode(), digest_size=8).digest(), "little")
            for x in vocab.ids.tolist()
        ),
        dtype=np.uint64,
        count=len(vocab),
    )


def _factorize(col: pd.Series, name: str) -> tuple[np.ndarray, Vocabulary]:
    """Codes and the sorted vocabulary of an id column in one pass."""
    codes, uniques = pd.factorize(col, sort=True)
    vocab = Vocabulary(np.asarray(uniques), name=name)
    if vocab.is_integer or len(vocab) == len(uniques):
        return codes.astype(np.int64), vocab
    raise AssertionError("factorize lost ids")  # pragma: no cover


def _unique(values: list[object]) -> list[object]:
    return list(dict.fromkeys(values))


def _vocab(ids: Vocabulary | Iterable[object] | None, n: int, name: str) -> Vocabulary:
    if ids is None:
        return Vocabulary(np.arange(n, dtype=np.int64), name=name)
    if isinstance(ids, Vocabulary):
        return ids
    return Vocabulary(ids, name=name)


def _numeric(col: pd.Series, name: str, source, where) -> np.ndarray:
    """Column as float64; a non-number or NaN/inf is a DataError naming its line."""
    values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raw = col.iloc[row]
        what = (
            "missing value" if pd.isna(raw) and not isinstance(raw, str) else f"bad value {raw!r}"
        )
        raise DataError(
            f"{what} (expected a finite number)", file=source, line=where(row), column=name
        )
    return values


__all__ = ["DuplicatePolicy", "Interactions", "Removal", "UnknownIdError"]
