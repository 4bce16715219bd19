"""Errors raised for bad input data, each naming where the problem is."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def show_id(x: object) -> str:
    """repr of a raw id without numpy's type decoration (``196``, not ``np.int64(196)``)."""
    return repr(x.item() if isinstance(x, np.generic) else x)


class DataError(ValueError):
    """Bad interaction data: names the file, line and field where it can.

    Attributes
    ----------
    file, line, column : optional location of the problem (``line`` is 1-based, as an
        editor shows it).
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        column: str | None = None,
    ) -> None:
        self.file = file
        self.line = line
        self.column = column
        where = []
        if file is not None:
            where.append(str(file))
        if line is not None:
            where.append(f"line {line}")
        if column is not None:
            where.append(f"column {column!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class UnknownIdError(KeyError):
    """Raw ids that the model or data set does not know (lists them, at most 20 shown)."""

    def __init__(self, kind: str, ids: Sequence[object]) -> None:
        self.kind = kind
        self.ids = [x.item() if isinstance(x, np.generic) else x for x in ids]
        shown = ", ".join(show_id(x) for x in self.ids[:20])
        more = f" and {len(self.ids) - 20} more" if len(self.ids) > 20 else ""
        super().__init__(f"unknown {kind} id(s): {shown}{more}")

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])
