"""Vocabulary: a bijection between raw ids (as users know them) and dense indices."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import numpy as np
import pandas as pd

from recforget.data.errors import DataError, UnknownIdError, show_id


class Vocabulary:
    """Immutable map between raw ids and dense indices ``0 .. len-1``.

    Ids are kept in the order given (sorted when built by :meth:`from_values`). Integer ids stay
    integers; anything else is stored as ``str``. Lookups coerce the query to the vocabulary's
    kind, so ``"196"`` finds the integer id ``196`` (deletion requests often arrive as text).

    Parameters
    ----------
    ids : array-like of shape (n,)
        Unique raw ids; position is the index.
    name : str
        What the ids are ("user", "item"), used in error messages.
    """

    __slots__ = ("_ids", "_index", "_positions", "name")

    SMALL = 64  # lookups of at most this many ids go through a dict (built on first use)

    def __init__(self, ids: Iterable[object], name: str = "id") -> None:
        arr = _as_id_array(np.asarray(list(ids) if not hasattr(ids, "__len__") else ids))
        index = pd.Index(arr)
        if not index.is_unique:
            dup = index[index.duplicated()][0]
            raise DataError(f"duplicate {name} id {show_id(dup)} in vocabulary")
        self._index = index
        self.name = name
        self._ids: np.ndarray | None = None
        self._positions: dict | None = None

    @classmethod
    def from_values(cls, values: Iterable[object], name: str = "id") -> Vocabulary:
        """Vocabulary of the sorted distinct values."""
        arr = _as_id_array(np.asarray(pd.unique(np.asarray(values))))
        return cls(np.sort(arr), name=name)

    def __len__(self) -> int:
        return len(self._index)

    def __repr__(self) -> str:
        return f"Vocabulary({self.name}, n={len(self)}, dtype={self.ids.dtype})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self._index.equals(other._index)

    def __hash__(self) -> int:  # pragma: no cover - vocabularies are not dict keys
        return hash((self.name, len(self)))

    def __contains__(self, raw: object) -> bool:
        return bool(self.index([raw], missing="ignore")[0] >= 0)

    @property
    def ids(self) -> np.ndarray:
        """Raw ids in index order (read-only)."""
        if self._ids is None:
            values = self._index.to_numpy()
            values.flags.writeable = False
            self._ids = values
        return self._ids

    @property
    def is_integer(self) -> bool:
        return self._index.dtype.kind in "iu"

    def index(
        self, raw: Iterable[object], *, missing: Literal["error", "ignore"] = "error"
    ) -> np.ndarray:
        """Indices of raw ids.

        Parameters
        ----------
        raw : iterable of raw ids
        missing : {"error", "ignore"}
            ``"error"`` raises :class:`UnknownIdError` listing every unknown id; ``"ignore"``
            returns -1 for them.
        """
        query = self._coerce(raw)
        idx = self._lookup(query)
        if missing == "error" and (idx < 0).any():
            raise UnknownIdError(
                self.name, list(pd.unique(np.asarray(query, dtype=object)[idx < 0]))
            )
        return idx.astype(np.int64, copy=False)

    def unknown(self, raw: Iterable[object]) -> list[object]:
        """The distinct ids of ``raw`` that are not in the vocabulary."""
        query = self._coerce(raw)
        idx = self._lookup(query)
        return list(pd.unique(np.asarray(query, dtype=object)[idx < 0]))

    def _lookup(self, query: np.ndarray) -> np.ndarray:
        """Positions of coerced ids (-1 if absent): a dict for a few ids (a stream's requests
        name one user or a few pairs), the index's vectorised lookup for many."""
        if len(query) > self.SMALL:
            return self._index.get_indexer(query)
        if self._positions is None:
            self._positions = {v: i for i, v in enumerate(self.ids.tolist())}
        get = self._positions.get
        return np.fromiter((get(q, -1) for q in query.tolist()), dtype=np.int64, count=len(query))

    def take(self, indices: Iterable[int]) -> Vocabulary:
        """Sub-vocabulary of the given indices (in that order)."""
        return Vocabulary(self._index.to_numpy()[np.asarray(indices, dtype=np.int64)], self.name)

    def _coerce(self, raw: Iterable[object]) -> np.ndarray:
        values = np.asarray(list(raw) if not isinstance(raw, (np.ndarray, pd.Index)) else raw)
        if values.dtype.kind in "iu" or len(values) == 0:
            return values.astype(np.int64) if self.is_integer else values.astype(str)
        if self.is_integer:
            # each id on its own: one that is not an integer matches nothing, the others still do
            out = np.empty(len(values), dtype=object)
            whole = True
            for k, v in enumerate(values.tolist()):
                n = _integer(v)
                out[k] = v if n is None else n
                whole = whole and n is not None
            return out.astype(np.int64) if whole else out
        return values.astype(str).astype(object)


_INT64 = np.iinfo(np.int64)


def _integer(v: object) -> int | None:
    """``v`` as an int64 id (``196``, ``"196"``, ``196.0``, ``"196.0"``), or ``None``."""
    if isinstance(v, (bool, np.bool_)):
        return None
    n = None
    if isinstance(v, (int, np.integer)):
        n = int(v)
    else:
        try:
            n = int(str(v).strip())  # exact for long digit strings, which floats round
        except ValueError:
            try:
                f = float(v)
                n = int(f) if f.is_integer() else None
            except (TypeError, ValueError, OverflowError):
                n = None
    return n if n is not None and _INT64.min <= n <= _INT64.max else None


def _as_id_array(values: np.ndarray) -> np.ndarray:
    """Integer ids stay int64; everything else becomes ``str`` (object array)."""
    if values.dtype.kind in "iu":
        return values.astype(np.int64, copy=False)
    if values.dtype.kind == "b":
        raise DataError("ids must be integers or strings, got booleans")
    if values.dtype.kind == "f":
        if len(values) and not np.all(np.isfinite(values)):
            raise DataError("ids must not be missing (NaN)")
        if np.all(values == np.round(values)):
            return values.astype(np.int64)
    return values.astype(str).astype(object)
