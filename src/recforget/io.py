"""Model persistence without pickle: ``arrays.npz`` + ``config.json`` + ``manifest.json``.

``config.json`` holds the constructor parameters (``get_params()``), ``manifest.json`` the
library version, the seed, the training-data fingerprint, the vocabularies' kind and the
deletion log. Arrays are read back with ``allow_pickle=False``; raw ids are stored as int64
or as fixed-width unicode arrays, never as Python objects.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from recforget.data.errors import DataError
from recforget.data.vocab import Vocabulary

FORMAT_VERSION = 1


def vocab_to_array(vocab: Vocabulary) -> np.ndarray:
    ids = vocab.ids
    return ids.astype(np.int64) if vocab.is_integer else ids.astype(str)


def vocab_from_array(arr: np.ndarray, name: str) -> Vocabulary:
    return Vocabulary(arr if arr.dtype.kind in "iu" else arr.astype(object), name=name)


def save_model_dir(
    path: str | Path,
    *,
    kind: str,
    arrays: dict[str, np.ndarray],
    config: dict[str, Any],
    manifest: dict[str, Any],
) -> Path:
    """Write a model directory; files are written to temporaries and renamed (atomic each)."""
    from recforget import __version__

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    for arr in arrays.values():
        if np.asarray(arr).dtype == object:
            raise TypeError("object arrays cannot be saved without pickle")
    tmp = path / "arrays.tmp.npz"
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    tmp.replace(path / "arrays.npz")
    meta = {"format_version": FORMAT_VERSION, "model": kind, "recforget_version": __version__}
    _write_json(path / "config.json", {**meta, "params": config})
    _write_json(path / "manifest.json", {**meta, **manifest})
    return path


def load_model_dir(path: str | Path, kind: str) -> tuple[dict, dict, dict[str, np.ndarray]]:
    """Read ``(params, manifest, arrays)`` of a directory written by :func:`save_model_dir`."""
    path = Path(path)
    for name in ("config.json", "manifest.json", "arrays.npz"):
        if not (path / name).is_file():
            raise DataError(f"not a recforget model directory: {name} is missing", file=str(path))
    config = _read_json(path / "config.json")
    manifest = _read_json(path / "manifest.json")
    if config.get("model") != kind:
        raise DataError(
            f"this directory holds a {config.get('model')!r} model, not {kind!r}", file=str(path)
        )
    if config.get("format_version", 0) > FORMAT_VERSION:
        raise DataError(
            f"format version {config['format_version']} is newer than this library reads "
            f"({FORMAT_VERSION})",
            file=str(path),
        )
    with np.load(path / "arrays.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return config["params"], manifest, arrays


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")
    tmp.replace(path)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON: {exc.msg}", file=str(path), line=exc.lineno) from exc


def _json_default(obj: object) -> object:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")
