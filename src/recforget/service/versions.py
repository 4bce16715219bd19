"""Model version directories: written atomically, verified file by file before every load.

A version holds the model only (factors, vocabularies, parameters), never a copy of the store:
the data it stands on is reconstructed from the database (:func:`recforget.service.store.
version_data`). Writing: a temporary sibling directory, every file fsynced, the directory
fsynced, ``os.replace`` into place, the parent fsynced; the version exists for the service only
once a database row records it with each file's sha256.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from recforget.data.interactions import Interactions
from recforget.io import vocab_from_array, vocab_to_array
from recforget.models.als import ALS
from recforget.service.faults import fault

FILES = ("arrays.npz", "model.json")


class VersionIntegrityError(RuntimeError):
    """A version's files do not match the sha256 recorded for them: it must not be served."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def files_digest(files: dict[str, str]) -> str:
    """One sha256 for a version: over its files' names and sha256, in name order."""
    text = "".join(f"{name}\0{files[name]}\n" for name in sorted(files))
    return hashlib.sha256(text.encode()).hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes) -> str:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return hashlib.sha256(data).hexdigest()


def model_payload(model: ALS) -> dict[str, bytes]:
    """The files of a version: factors and vocabularies (npz) and parameters (JSON)."""
    if not isinstance(model, ALS):
        raise TypeError(f"the service serves ALS models, got {type(model).__name__}")
    arrays = {
        "user_factors": model.user_factors_,
        "item_factors": model.item_factors_,
        "user_ids": vocab_to_array(model.users_),
        "item_ids": vocab_to_array(model.items_),
    }
    if model.user_bias_ is not None:
        arrays["user_bias"] = model.user_bias_
        arrays["item_bias"] = model.item_bias_
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    params = model._saved_params()
    meta = {
        "kind": "als",
        "params": params,
        "seed": int(model.seed_),
        "global_mean": float(model.global_mean_),
        "n_iter": int(getattr(model, "n_iter_", 0)),
        "stop_reason": getattr(model, "stop_reason_", "external"),
    }
    return {
        "arrays.npz": buf.getvalue(),
        "model.json": (json.dumps(meta, sort_keys=True, indent=1) + "\n").encode(),
    }


def write_version(root: Path, model: ALS) -> tuple[str, dict[str, str]]:
    """Write ``model`` as a new directory under ``root``; returns (name, {file: sha256}).

    The directory appears under its final name only complete and fsynced.
    """
    root.mkdir(parents=True, exist_ok=True)
    name = f"v-{uuid.uuid4().hex}"
    tmp = root / f".tmp-{name}"
    tmp.mkdir()
    files: dict[str, str] = {}
    for n, (fname, data) in enumerate(model_payload(model).items()):
        if n == 1:
            fault("build.mid_write")
        files[fname] = _write_file(tmp / fname, data)
    _fsync_dir(tmp)
    os.replace(tmp, root / name)
    _fsync_dir(root)
    return name, files


def verify_files(path: Path, files: dict[str, str]) -> None:
    """Raise :class:`VersionIntegrityError` unless every recorded file matches its sha256."""
    if not path.is_dir():
        raise VersionIntegrityError(f"model version directory {path} is missing")
    for fname, want in sorted(files.items()):
        f = path / fname
        if not f.is_file():
            raise VersionIntegrityError(f"model version {path}: file {fname} is missing")
        got = sha256_file(f)
        if got != want:
            raise VersionIntegrityError(
                f"model version {path}: {fname} has sha256 {got}, recorded {want}; refusing it"
            )


def read_version(path: Path, files: dict[str, str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Verify, then read (meta, arrays) of a version directory."""
    verify_files(path, files)
    meta = json.loads((path / "model.json").read_text())
    with np.load(path / "arrays.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return meta, arrays


def vocabularies(arrays: dict[str, np.ndarray]):
    return vocab_from_array(arrays["user_ids"], "user"), vocab_from_array(
        arrays["item_ids"], "item"
    )


def build_model(meta: dict[str, Any], arrays: dict[str, np.ndarray], data: Interactions) -> ALS:
    """An ALS model from a version's files and the data it stands on."""
    params = {k: v for k, v in meta["params"].items() if k != "factors"}
    model = ALS.from_factors(
        arrays["user_factors"],
        arrays["item_factors"],
        data,
        user_bias=arrays.get("user_bias"),
        item_bias=arrays.get("item_bias"),
        **params,
    )
    model.seed_ = int(meta["seed"])
    model.global_mean_ = float(meta.get("global_mean", 0.0))
    model.n_iter_ = int(meta.get("n_iter", 0))
    model.stop_reason_ = meta.get("stop_reason", "external")
    return model


def remove_dir(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)
        _fsync_dir(path.parent)


__all__ = [
    "VersionIntegrityError",
    "build_model",
    "files_digest",
    "read_version",
    "verify_files",
    "write_version",
]
