"""The serving process's in-memory model: loaded read-only, verified, swapped whole.

The server never writes a model. A thread watches the serving pointer's generation; when it
moves, the new version is loaded into a fresh :class:`ServingModel` and checked in full
(every file against its recorded sha256, the factors' shapes against the vocabularies, all
values finite, and the model hash recomputed from the arrays against the one registered;
optionally also the data it stands on, rebuilt from the store, against its recorded
fingerprint). Only then is the reference swapped, in one assignment: a request sees the old
model or the new one, never a mix. A failed load is logged and counted and the old model
keeps serving; the same version is retried after a back-off.

Recommendations exclude what the store holds for the user now, and items or users whose data
was erased (suppressed) are never returned, even before the worker has built the version
that forgets them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recforget.service import store, versions

log = logging.getLogger("recforget.service.http")


class ModelLoadError(RuntimeError):
    """A version that failed verification (the message says which check)."""


@dataclass
class ServingModel:
    """Factors, biases and vocabularies of one verified version."""

    version_id: int
    generation: int
    digest: str
    users: Any
    items: Any
    X: np.ndarray
    Y: np.ndarray
    bu: np.ndarray | None
    bi: np.ndarray | None
    global_mean: float
    loaded_at: float = field(default_factory=time.time)
    load_seconds: float = 0.0
    # built once per version, off the request path: raw id text -> row, and row -> item id
    # text; a version with the same vocabularies as the one before shares that one's
    lookups: tuple[dict[str, int], dict[str, int], list[str]] | None = field(
        default=None, repr=False
    )
    raw_ids: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.lookups is None:
            item_ids = [str(x) for x in self.items.ids.tolist()]
            self.lookups = (
                {str(x): k for k, x in enumerate(self.users.ids.tolist())},
                {x: k for k, x in enumerate(item_ids)},
                item_ids,
            )
        self._user_rows, self._item_rows, self.item_ids = self.lookups

    def user_index(self, user: str) -> int:
        """Row of raw ``user`` (-1 if unknown); the vocabulary's coercion when not verbatim."""
        row = self._user_rows.get(user)
        if row is None:  # e.g. "0196" for the integer id 196: the vocabulary decides
            row = int(self.users.index([user], missing="ignore")[0])
        return row

    def item_rows(self, items: list[str]) -> list[int]:
        """Rows of raw ``items`` (unknown ones left out)."""
        rows, rest = [], []
        for x in items:
            r = self._item_rows.get(x)
            if r is None:
                rest.append(x)
            else:
                rows.append(r)
        if rest:
            idx = self.items.index(rest, missing="ignore")
            rows.extend(int(r) for r in idx[idx >= 0])
        return rows

    def recommend(self, u: int, k: int, exclude: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (item indices, scores) for user row ``u``, without ``exclude`` (raw)."""
        scores = (self.Y @ self.X[u]).astype(np.float64)
        if self.bu is not None:
            scores += self.global_mean + float(self.bu[u]) + self.bi
        if exclude:
            scores[self.item_rows(exclude)] = -np.inf
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.lexsort((top, -scores[top]))]
        keep = np.isfinite(scores[top])
        return top[keep], scores[top][keep]


def _model_hash(*arrays: np.ndarray | None) -> str:
    h = hashlib.sha256()
    for arr in arrays:
        if arr is not None:
            h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def _same_ids(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and bool(np.array_equal(a, b))


def load_verified(
    service,
    row: Any,
    generation: int,
    *,
    verify_data: bool,
    previous: ServingModel | None = None,
) -> ServingModel:
    """Read version ``row`` and check it in full; raises :class:`ModelLoadError`.

    ``previous`` (the model now serving): when the new version's id arrays equal the ones
    it was built from, its vocabularies and lookups are shared instead of rebuilt (most
    versions only move factors), which keeps a load short.
    """
    t0 = time.perf_counter()
    try:
        meta, arrays = versions.read_version(service.versions_dir / row.path, json.loads(row.files))
    except (versions.VersionIntegrityError, OSError, ValueError) as exc:
        raise ModelLoadError(f"version {row.id}: {exc}") from exc
    if versions.files_digest(json.loads(row.files)) != row.digest:
        raise ModelLoadError(f"version {row.id}: recorded file digest does not match its files")
    try:
        ids = (arrays["user_ids"], arrays["item_ids"])
        prev_ids = previous.raw_ids if previous is not None else None
        if prev_ids is not None and all(map(_same_ids, ids, prev_ids)):
            users, items, lookups = previous.users, previous.items, previous.lookups
        else:
            (users, items), lookups = versions.vocabularies(arrays), None
        X, Y = arrays["user_factors"], arrays["item_factors"]
    except (KeyError, ValueError) as exc:
        raise ModelLoadError(f"version {row.id}: unreadable arrays ({exc})") from exc
    bu, bi = arrays.get("user_bias"), arrays.get("item_bias")
    if X.ndim != 2 or Y.ndim != 2 or X.shape[1] != Y.shape[1]:
        raise ModelLoadError(f"version {row.id}: factor shapes {X.shape} and {Y.shape} differ")
    if X.shape[0] != len(users) or Y.shape[0] != len(items):
        raise ModelLoadError(f"version {row.id}: factors do not match the vocabularies")
    if not (np.isfinite(X).all() and np.isfinite(Y).all()):
        raise ModelLoadError(f"version {row.id}: factors contain NaN or inf")
    dtype = np.dtype(meta["params"].get("dtype", X.dtype))
    X, Y = np.ascontiguousarray(X, dtype), np.ascontiguousarray(Y, dtype)
    if bu is not None:
        bu, bi = np.asarray(bu, dtype), np.asarray(bi, dtype)
    if _model_hash(X, Y, bu, bi) != row.model_hash:
        raise ModelLoadError(f"version {row.id}: model hash differs from the registered one")
    if verify_data:
        with service.engine.connect() as conn:
            data = store.version_data(conn, row.watermark, users, items)
        if data.fingerprint() != row.data_fingerprint:
            raise ModelLoadError(f"version {row.id}: the store does not rebuild its data")
    return ServingModel(
        version_id=int(row.id),
        generation=int(generation),
        digest=row.digest,
        users=users,
        items=items,
        X=X,
        Y=Y,
        bu=bu,
        bi=bi,
        global_mean=float(meta.get("global_mean", 0.0)),
        load_seconds=time.perf_counter() - t0,
        lookups=lookups,
        raw_ids=ids,
    )


class ModelHolder:
    """Holds the current :class:`ServingModel` and follows the serving pointer."""

    def __init__(self, service, read_engine, *, poll: float, verify_data: bool) -> None:
        self.service = service
        self.read_engine = read_engine
        self.poll = poll
        self.verify_data = verify_data
        self.model: ServingModel | None = None
        self.last_error: str | None = None
        self.failures = 0
        self.loads = 0
        self._failed: dict[int, float] = {}  # version id -> time of its failed load
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def refresh(self) -> bool:
        """Load the serving version if it is not the one held. True: a new one is held."""
        from recforget.service.http import reads

        with self._lock:
            with self.read_engine.connect() as conn:
                ptr = reads.serving_pointer(conn)
                if ptr is None:
                    return False
                vid, gen = ptr
                cur = self.model
                if cur is not None and cur.version_id == vid:
                    if cur.generation != gen:
                        cur.generation = gen
                    return False
                failed_at = self._failed.get(vid)
                if failed_at is not None and time.time() - failed_at < max(5.0, 10 * self.poll):
                    return False
                row = reads.version_row(conn, vid)
            try:
                new = load_verified(
                    self.service, row, gen, verify_data=self.verify_data, previous=cur
                )
            except ModelLoadError as exc:
                self.failures += 1
                self.last_error = str(exc)
                self._failed[vid] = time.time()
                log.error("model load refused, previous model keeps serving: %s", exc)
                return False
            self.model = new  # the swap: one reference assignment
            self.loads += 1
            self.last_error = None
            self._failed.pop(vid, None)
            log.info(
                "serving version %d (generation %d), loaded and verified in %.3f s",
                new.version_id,
                new.generation,
                new.load_seconds,
            )
            return True

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    self.refresh()
                except Exception:  # the database may be down for a moment: keep serving
                    log.exception("serving pointer check failed")
                self._stop.wait(self.poll)

        self._thread = threading.Thread(target=loop, name="model-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None


__all__ = ["ModelHolder", "ModelLoadError", "ServingModel", "load_verified"]
