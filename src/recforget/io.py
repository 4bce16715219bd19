"""Model persistence without pickle: ``arrays.npz`` + ``config.json`` + ``manifest.json``.

``config.json`` holds the constructor parameters (``get_params()``), ``manifest.json`` the
library version, the seed, the training-data fingerprint, the vocabularies' kind and the
deletion log. Arrays are read back with ``allow_pickle=False``; raw ids are stored as int64
or as fixed-width unicode arrays, never as Python objects.

Integrity: the manifest records the sha256 of every other file of the directory (``files``)
and of itself (``manifest_sha256``, over its canonical JSON without that key). Loading checks
them all before it parses anything, so a truncated, damaged or edited file is refused with a
:class:`~recforget.DataError` that names it, never half-read.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from recforget.data.errors import DataError
from recforget.data.vocab import Vocabulary

FORMAT_VERSION = 2  # 2: the manifest holds every file's sha256


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
    files: tuple[str, ...] = (),
) -> Path:
    """Write a model directory; files are written to temporaries and renamed (atomic each).

    ``files`` names the files the caller already wrote into ``path`` (e.g. network weights):
    their hashes join the manifest's, so loading checks them too. The manifest is written
    last: a directory whose manifest does not match its files was not completely written.
    """
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
    names = ("arrays.npz", "config.json", *files)
    manifest = {**meta, **manifest, "files": {name: file_sha256(path / name) for name in names}}
    manifest["manifest_sha256"] = _self_digest(manifest)
    _write_json(path / "manifest.json", manifest)
    return path


def load_model_dir(path: str | Path, kind: str) -> tuple[dict, dict, dict[str, np.ndarray]]:
    """Read ``(params, manifest, arrays)`` of a directory written by :func:`save_model_dir`.

    Every file is checked against the manifest's sha256 first (:func:`verify_model_dir`).
    """
    path = Path(path)
    for name in ("config.json", "manifest.json", "arrays.npz"):
        if not (path / name).is_file():
            raise DataError(f"not a recforget model directory: {name} is missing", file=str(path))
    manifest = verify_model_dir(path)
    config = _read_json(path / "config.json")
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
    try:
        with np.load(path / "arrays.npz", allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise DataError(f"unreadable arrays file ({exc})", file=str(path / "arrays.npz")) from exc
    return config["params"], manifest, arrays


def verify_model_dir(path: str | Path) -> dict[str, Any]:
    """Check a model directory's files against its manifest; return the manifest.

    Raises :class:`~recforget.DataError` naming the first file that is missing or whose sha256
    differs from the recorded one, or the manifest itself when it was edited. Directories
    written before format version 2 carry no hashes and are only parsed.
    """
    path = Path(path)
    manifest = _read_json(path / "manifest.json")
    recorded = manifest.get("manifest_sha256")
    if recorded is not None and recorded != _self_digest(manifest):
        raise DataError(
            "manifest.json does not match its own sha256: it was edited or damaged",
            file=str(path / "manifest.json"),
        )
    for name, digest in (manifest.get("files") or {}).items():
        file = path / name
        if not file.is_file():
            raise DataError(f"{name} is missing (listed in manifest.json)", file=str(path))
        if file_sha256(file) != digest:
            raise DataError(
                f"{name} does not match the sha256 in manifest.json: it is damaged, truncated "
                "or was edited",
                file=str(file),
            )
    return manifest


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _self_digest(manifest: dict[str, Any]) -> str:
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=_json_default)
    return hashlib.sha256(text.encode()).hexdigest()


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
