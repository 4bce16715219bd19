"""Read interaction files: CSV, TSV, Parquet, RecBole atomic files and the GroupLens formats.

Every problem with the input is a :class:`~recforget.data.errors.DataError` naming the file,
the 1-based line (as an editor shows it) and, where it applies, the column. No row is ever
dropped silently: a blank line inside the data is an error (blank lines at the very end of a
file are ignored, they move no line number).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Literal

import numpy as np
import pandas as pd

from recforget.data.errors import DataError
from recforget.data.interactions import DuplicatePolicy, Interactions

Format = Literal["auto", "csv", "tsv", "parquet", "u.data", "dat", "atomic"]
FORMATS = ("csv", "tsv", "parquet", "u.data", "dat", "atomic")

#: Column names tried, in order, when a column argument is left at ``None``.
ALIASES: dict[str, tuple[str, ...]] = {
    "user": ("user", "userId", "user_id"),
    "item": ("item", "movieId", "item_id"),
    "rating": ("rating",),
    "timestamp": ("timestamp",),
}
#: Fields of the headerless GroupLens formats (``u.data`` and ``ratings.dat``).
GROUPLENS_FIELDS = ("user", "item", "rating", "timestamp")
#: File names :func:`read_movielens` looks for in a directory, in order.
MOVIELENS_FILES = ("u.data", "ratings.dat", "ratings.csv")

_INT_ID = re.compile(r"-?(?:0|[1-9][0-9]{0,17})")  # canonical integers that fit in int64
_UNIT_SEP = "\x1f"  # stands in for "::" so the fast C parser can read ratings.dat


def read_interactions(
    path: str | Path,
    *,
    format: Format = "auto",
    user_col: str | None = None,
    item_col: str | None = None,
    rating_col: str | None = None,
    timestamp_col: str | None = None,
    sep: str | None = None,
    duplicates: DuplicatePolicy = "error",
) -> Interactions:
    """Read an interaction file into :class:`~recforget.data.interactions.Interactions`.

    Parameters
    ----------
    path : str or pathlib.Path
    format : {"auto", "csv", "tsv", "parquet", "u.data", "dat", "atomic"}
        ``"auto"`` (default) detects it from the file name: ``u.data`` (MovieLens 100K,
        tab-separated ``user item rating timestamp``, no header), ``*.dat`` whose first line
        contains ``::`` (MovieLens 1M/10M ``ratings.dat``, ``user::item::rating::timestamp``,
        no header), ``*.inter`` (RecBole atomic file: tab-separated, header ``name:type``),
        then ``.csv``, ``.tsv``/``.tab`` and ``.parquet``/``.pq``. MovieLens ``ratings.csv``
        (header ``userId,movieId,rating,timestamp``) is a plain CSV whose columns are found
        by their aliases.
    user_col, item_col : str, optional
        Id columns. Default: the first present of :data:`ALIASES` (``user``/``userId``/
        ``user_id`` and ``item``/``movieId``/``item_id``). Headerless formats name their
        fields :data:`GROUPLENS_FIELDS`.
    rating_col : str, optional
        Value column. Default: ``rating`` if present, otherwise every value is 1.0.
    timestamp_col : str, optional
        Integer timestamp column (epoch seconds). Default: ``timestamp`` if present.
    sep : str, optional
        Field separator of CSV/TSV files (default ``","`` and tab).
    duplicates : {"error", "sum", "mean", "max", "last", "first"}
        Repeated (user, item) pairs: ``"error"`` (default) names both lines; the others
        combine them (see :meth:`Interactions.from_frame`).

    Returns
    -------
    Interactions
        Ids that all look like canonical integers (``"196"``, not ``"0196"``) become int64;
        other ids stay strings.

    Raises
    ------
    DataError
        Malformed rows (wrong number of fields), a blank line inside the data, non-numeric,
        NaN or infinite ratings or timestamps, missing ids, an empty file, missing columns (the
        message lists those that exist) and duplicates under ``duplicates="error"``. Lines are
        1-based and count the header; for Parquet the "line" is the 1-based row number.
    ImportError
        Parquet without pyarrow installed.

    Notes
    -----
    Quoted CSV fields that span several lines are not supported: line numbers would count
    records, not lines.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    fmt = detect_format(path) if format == "auto" else format
    if fmt not in FORMATS:
        raise ValueError(f"format must be 'auto' or one of {FORMATS}, got {format!r}")
    source = str(path)
    if fmt == "parquet":
        frame, first_line = _read_parquet(path), 1
    elif fmt == "dat":
        frame, first_line = _read_dat(path), 1
    else:
        frame, first_line = read_table(
            path,
            source,
            sep=sep or ("," if fmt == "csv" else "\t"),
            header=fmt != "u.data",
            quoting=csv.QUOTE_MINIMAL if fmt in ("csv", "tsv") else csv.QUOTE_NONE,
        )
        if fmt == "atomic":
            frame.columns = [str(c).split(":")[0] for c in frame.columns]
    if fmt in ("u.data", "dat"):
        frame = _name_fields(frame, source)
    return frame_to_interactions(
        frame,
        source,
        first_line,
        user_col=user_col,
        item_col=item_col,
        rating_col=rating_col,
        timestamp_col=timestamp_col,
        duplicates=duplicates,
        header=fmt not in ("u.data", "dat", "parquet"),
    )


def read_movielens(path: str | Path, *, duplicates: DuplicatePolicy = "error") -> Interactions:
    """Read a GroupLens MovieLens ratings file, or find one in a directory.

    Parameters
    ----------
    path : str or pathlib.Path
        ``u.data`` (100K), ``ratings.dat`` (1M, 10M), ``ratings.csv`` (20M, 25M, latest), or a
        directory holding one of them (directly or in one sub-directory, as the unpacked
        ``ml-100k.zip`` does).
    duplicates : {"error", "sum", "mean", "max", "last", "first"}

    Returns
    -------
    Interactions
        Integer user and item ids, ratings, and timestamps.
    """
    path = Path(path)
    if path.is_dir():
        path = _find_movielens(path)
    return read_interactions(path, duplicates=duplicates)


def detect_format(path: str | Path) -> str:
    """The format ``read_interactions(path, format="auto")`` uses (see there)."""
    path = Path(path)
    name, suffix = path.name.lower(), path.suffix.lower()
    if name == "u.data":
        return "u.data"
    if suffix == ".dat":
        with open(path, encoding="utf-8", errors="replace") as f:
            first = next((line for line in f if line.strip()), "")
        if "::" in first:
            return "dat"
        raise DataError(
            "a .dat file without '::' separators: pass format='csv' or 'tsv' with sep=",
            file=str(path),
        )
    by_suffix = {
        ".csv": "csv",
        ".tsv": "tsv",
        ".tab": "tsv",
        ".parquet": "parquet",
        ".pq": "parquet",
        ".inter": "atomic",
    }
    if suffix in by_suffix:
        return by_suffix[suffix]
    raise DataError(
        f"cannot tell the format from the name {path.name!r}: pass format= one of {FORMATS}",
        file=str(path),
    )


def read_table(
    f: IO[str] | IO[bytes] | str | Path,
    source: str,
    *,
    sep: str,
    header: bool,
    quoting: int = csv.QUOTE_MINIMAL,
) -> tuple[pd.DataFrame, int]:
    """Read delimited text as strings, keeping the line structure.

    Parameters
    ----------
    f : file object or path
    source : str
        Name for error messages.
    sep : str
        A single character (the fast C parser is used).
    header : bool
        Whether the first line holds the column names (otherwise columns are ``0..k-1``).
    quoting : int
        A :mod:`csv` quoting constant; ``csv.QUOTE_NONE`` for formats without quoting
        (GroupLens, RecBole), where a ``"`` is an ordinary character.

    Returns
    -------
    frame : pandas.DataFrame of shape (n_rows, n_fields)
        All fields as strings; an empty field is missing (NaN). Row ``r`` is on line
        ``first_line + r``.
    first_line : int
        Line number of the first data row.
    """
    try:
        frame = pd.read_csv(
            f,
            sep=sep,
            header=None,
            dtype=str,
            keep_default_na=False,
            na_values=[""],
            skip_blank_lines=False,
            quoting=quoting,
            encoding="utf-8",
            engine="c",
        )
    except pd.errors.EmptyDataError:
        raise DataError("the file is empty", file=source) from None
    except pd.errors.ParserError as exc:
        raise _parser_error(exc, source) from None
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text ({exc.reason})", file=source) from None
    frame = _drop_trailing_blank(frame)
    if len(frame) == 0:
        raise DataError("the file is empty", file=source)
    first_line = 1
    if header:
        names = frame.iloc[0]
        if names.isna().any():
            col = int(np.flatnonzero(names.isna().to_numpy())[0]) + 1
            raise DataError(f"empty column name (field {col} of the header)", file=source, line=1)
        names = [str(x).strip() for x in names]
        dup = [c for c in dict.fromkeys(names) if names.count(c) > 1]
        if dup:
            raise DataError(f"repeated column name(s) {dup} in the header", file=source, line=1)
        frame = frame.iloc[1:].reset_index(drop=True)
        frame.columns = names
        first_line = 2
    blank = frame.isna().all(axis=1).to_numpy()
    if blank.any():
        row = int(np.flatnonzero(blank)[0])
        raise DataError(
            "blank line inside the data (remove it)", file=source, line=first_line + row
        )
    return frame, first_line


def frame_to_interactions(
    frame: pd.DataFrame,
    source: str,
    first_line: int,
    *,
    user_col: str | None = None,
    item_col: str | None = None,
    rating_col: str | None = None,
    timestamp_col: str | None = None,
    duplicates: DuplicatePolicy = "error",
    header: bool = True,
) -> Interactions:
    """Pick the columns of a read table, convert integer-looking ids and build Interactions.

    Column arguments left at ``None`` are found through :data:`ALIASES`; ``header`` says
    whether a missing column is reported at line 1 (the header).
    """
    columns = [str(c) for c in frame.columns]
    if len(frame) == 0:
        raise DataError("no interactions (the file has a header but no data)", file=source)
    line = 1 if header else None
    ucol = _pick(columns, user_col, "user", True, source, line)
    icol = _pick(columns, item_col, "item", True, source, line)
    rcol = _pick(columns, rating_col, "rating", False, source, line)
    tcol = _pick(columns, timestamp_col, "timestamp", False, source, line)
    if ucol == icol:
        raise DataError(f"user and item columns are the same ({ucol!r})", file=source)
    keep = list(dict.fromkeys(c for c in (ucol, icol, rcol, tcol) if c is not None))
    frame = frame[keep].copy()
    frame[ucol] = integer_ids(frame[ucol])
    frame[icol] = integer_ids(frame[icol])
    return Interactions.from_frame(
        frame,
        user_col=ucol,
        item_col=icol,
        rating_col=rcol,
        timestamp_col=tcol,
        duplicates=duplicates,
        source=source,
        first_line=first_line,
    )


def integer_ids(col: pd.Series) -> pd.Series:
    """An id column as int64 if every value is a canonical integer, else unchanged.

    ``"0196"`` or ``"+5"`` keep the column textual, so distinct texts stay distinct ids.
    """
    if col.dtype.kind in "iu" or len(col) == 0 or col.isna().any():
        return col  # missing ids are reported by Interactions.from_frame with their line
    if col.dtype.kind == "f":
        return col
    text = col.astype(str)
    if text.str.fullmatch(_INT_ID.pattern).all():
        return text.astype(np.int64)
    return col


# ---------------------------------------------------------------------- helpers


def _read_dat(path: Path) -> pd.DataFrame:
    """``ratings.dat``: ``::``-separated, no header; read by pandas after ``::`` -> U+001F."""
    source = str(path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(f"not UTF-8 text ({exc.reason})", file=source, line=line) from None
    if _UNIT_SEP in text:
        k = text.index(_UNIT_SEP)
        raise DataError("control character U+001F in the data", file=source, line=_line_of(text, k))
    text = text.replace("::", _UNIT_SEP)
    frame, _ = read_table(
        io.StringIO(text), source, sep=_UNIT_SEP, header=False, quoting=csv.QUOTE_NONE
    )
    return frame


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _name_fields(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Name the fields of a headerless GroupLens file (``user item rating timestamp``)."""
    n = frame.shape[1]
    if n != len(GROUPLENS_FIELDS):
        raise DataError(
            f"expected {len(GROUPLENS_FIELDS)} fields ({' '.join(GROUPLENS_FIELDS)}), found {n}",
            file=source,
            line=1,
        )
    frame.columns = list(GROUPLENS_FIELDS)
    return frame


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise ImportError(
            "reading Parquet needs pyarrow: pip install 'recforget[parquet]' (or pyarrow)"
        ) from None
    try:
        frame = pd.read_parquet(path, engine="pyarrow")
    except Exception as exc:  # pyarrow raises its own error types
        raise DataError(f"cannot read Parquet ({exc})", file=str(path)) from None
    if len(frame) == 0:
        raise DataError("no interactions (the file has no rows)", file=str(path))
    return frame.reset_index(drop=True)


def _drop_trailing_blank(frame: pd.DataFrame) -> pd.DataFrame:
    blank = frame.isna().all(axis=1).to_numpy()
    if len(blank) and blank[-1]:
        keep = np.flatnonzero(~blank)
        frame = frame.iloc[: (keep[-1] + 1) if len(keep) else 0]
    return frame


_PARSER_LINE = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


def _parser_error(exc: Exception, source: str) -> DataError:
    m = _PARSER_LINE.search(str(exc))
    if m:
        want, line, saw = (int(g) for g in m.groups())
        return DataError(f"expected {want} fields, found {saw}", file=source, line=line)
    return DataError(f"cannot parse ({exc})", file=source)


def _pick(
    columns: Sequence[str],
    given: str | None,
    role: str,
    required: bool,
    source: str,
    line: int | None,
) -> str | None:
    if given is not None:
        if given not in columns:
            raise DataError(
                f"no {role} column {given!r}; the file has columns {list(columns)}",
                file=source,
                line=line,
            )
        return given
    for name in ALIASES[role]:
        if name in columns:
            return name
    if required:
        raise DataError(
            f"no {role} column (looked for {list(ALIASES[role])}); the file has columns "
            f"{list(columns)}: pass {role}_col=",
            file=source,
            line=line,
        )
    return None


def _find_movielens(folder: Path) -> Path:
    candidates = [folder / n for n in MOVIELENS_FILES if (folder / n).is_file()]
    if not candidates:
        for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
            candidates += [sub / n for n in MOVIELENS_FILES if (sub / n).is_file()]
    if len(candidates) == 1:
        return candidates[0]
    if len(candidates) > 1:
        raise DataError(
            f"several MovieLens ratings files: {[str(c) for c in candidates]}; pass one of them",
            file=str(folder),
        )
    listing = sorted(p.name for p in folder.iterdir())[:20]
    raise DataError(
        f"no MovieLens ratings file ({', '.join(MOVIELENS_FILES)}) here or in a sub-directory; "
        f"found {listing}",
        file=str(folder),
    )


__all__ = [
    "ALIASES",
    "FORMATS",
    "GROUPLENS_FIELDS",
    "MOVIELENS_FILES",
    "detect_format",
    "frame_to_interactions",
    "integer_ids",
    "read_interactions",
    "read_movielens",
    "read_table",
]
