"""Deletion requests: which interactions, users and items to forget (raw ids)."""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recforget.data.errors import DataError


def _plain(x: object) -> object:
    return x.item() if isinstance(x, np.generic) else x


@dataclass(frozen=True)
class DeletionRequest:
    """What to forget, by raw id.

    Parameters
    ----------
    pairs : iterable of (user, item)
        Single interactions.
    users : iterable of user ids
        Whole users: all their interactions go and they leave the model.
    items : iterable of item ids
        Whole items, likewise.
    request_id : str, optional
        Caller's reference, copied into the receipt.

    Files: :meth:`from_json` reads ``{"pairs": [[u, i], ...], "users": [...], "items": [...]}``;
    :meth:`from_csv` reads a ``user,item`` header where a row with both is a pair, a row with an
    empty ``item`` is a whole user and a row with an empty ``user`` a whole item.
    """

    pairs: tuple[tuple[object, object], ...] = ()
    users: tuple[object, ...] = ()
    items: tuple[object, ...] = ()
    request_id: str | None = field(default=None, compare=False)

    def __init__(
        self,
        pairs: Iterable[tuple[object, object]] = (),
        users: Iterable[object] = (),
        items: Iterable[object] = (),
        request_id: str | None = None,
    ) -> None:
        clean_pairs = []
        for p in pairs:
            if not isinstance(p, (tuple, list, np.ndarray)) or len(p) != 2:
                raise ValueError(f"a pair must be (user, item), got {p!r}")
            clean_pairs.append((_plain(p[0]), _plain(p[1])))
        object.__setattr__(self, "pairs", tuple(clean_pairs))
        object.__setattr__(self, "users", tuple(_plain(u) for u in users))
        object.__setattr__(self, "items", tuple(_plain(i) for i in items))
        object.__setattr__(self, "request_id", request_id)

    def __len__(self) -> int:
        return len(self.pairs) + len(self.users) + len(self.items)

    @property
    def is_empty(self) -> bool:
        return len(self) == 0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "pairs": [list(p) for p in self.pairs],
            "users": list(self.users),
            "items": list(self.items),
        }
        if self.request_id is not None:
            out["request_id"] = self.request_id
        return out

    def digest(self) -> str:
        """sha256 of the request's canonical JSON (ids as text)."""
        canon = {
            "pairs": sorted([str(u), str(i)] for u, i in self.pairs),
            "users": sorted(str(u) for u in self.users),
            "items": sorted(str(i) for i in self.items),
        }
        return hashlib.sha256(json.dumps(canon, sort_keys=True).encode()).hexdigest()

    @classmethod
    def from_dict(cls, obj: dict[str, Any], *, source: str | None = None) -> DeletionRequest:
        if not isinstance(obj, dict):
            raise DataError("a deletion request must be a JSON object", file=source)
        unknown = set(obj) - {"pairs", "users", "items", "request_id"}
        if unknown:
            raise DataError(
                f"unknown field(s) {sorted(unknown)}; expected pairs, users, items", file=source
            )
        for key in ("pairs", "users", "items"):
            if not isinstance(obj.get(key, []), list):
                raise DataError(f"{key!r} must be a list", file=source, column=key)
        for n, p in enumerate(obj.get("pairs", [])):
            if not isinstance(p, (list, tuple)) or len(p) != 2:
                raise DataError(
                    f"pairs[{n}] must be [user, item], got {p!r}", file=source, column="pairs"
                )
        return cls(
            obj.get("pairs", []), obj.get("users", []), obj.get("items", []), obj.get("request_id")
        )

    @classmethod
    def from_json(cls, path: str | Path) -> DeletionRequest:
        path = Path(path)
        try:
            obj = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise DataError(f"invalid JSON: {exc.msg}", file=str(path), line=exc.lineno) from exc
        return cls.from_dict(obj, source=str(path))

    @classmethod
    def from_csv(cls, path: str | Path) -> DeletionRequest:
        path = Path(path)
        pairs, users, items = [], [], []
        with open(path, newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                raise DataError("empty file (expected a 'user,item' header)", file=str(path))
            header = [h.strip() for h in header]
            if "user" not in header or "item" not in header:
                raise DataError(
                    f"header must name 'user' and 'item' columns, got {header}",
                    file=str(path),
                    line=1,
                )
            cu, ci = header.index("user"), header.index("item")
            for lineno, row in enumerate(reader, start=2):
                if not row or all(not c.strip() for c in row):
                    continue
                if len(row) != len(header):
                    raise DataError(
                        f"expected {len(header)} fields, got {len(row)}",
                        file=str(path),
                        line=lineno,
                    )
                u, i = row[cu].strip(), row[ci].strip()
                if u and i:
                    pairs.append((u, i))
                elif u:
                    users.append(u)
                elif i:
                    items.append(i)
                else:  # pragma: no cover - filtered above
                    raise DataError(
                        "row names neither a user nor an item", file=str(path), line=lineno
                    )
        return cls(pairs, users, items)

    @classmethod
    def read(cls, path: str | Path) -> DeletionRequest:
        """Read a request from ``.json`` or ``.csv`` by suffix."""
        suffix = Path(path).suffix.lower()
        if suffix == ".json":
            return cls.from_json(path)
        if suffix in (".csv", ".txt"):
            return cls.from_csv(path)
        raise DataError("a deletion request file must be .json or .csv", file=str(path))


__all__ = ["DeletionRequest"]
