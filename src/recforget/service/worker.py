"""The worker: the only writer of models.

One batch: claim pending requests under the writer lease (BUILDING), one unlearning pass for
the whole batch, write the version atomically and register it (STAGED), then one transaction
that checks the lease, compare-and-swaps the serving pointer, marks the requests COMPLETED and
appends their signed receipts. The lease carries a fencing token: a worker that stalls past its
lease finds the token or the expiry changed and can neither register, switch nor write
receipts. After taking the lease a worker recovers what a dead one left: claimed requests go
back to DATA_DELETED (or FAILED past the attempt limit), staged versions are abandoned, and
directories that no serving version needs are deleted.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from traceback import format_tb
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from recforget.models.als import ALS
from recforget.service import db, ledger, store, versions
from recforget.service.faults import fault
from recforget.service.receipts import append_event, append_receipt
from recforget.service.states import State
from recforget.unlearn.requests import DeletionRequest

if TYPE_CHECKING:
    from recforget.service.core import DeletionService

log = logging.getLogger("recforget.service.worker")


def safe_error(exc: BaseException) -> str:
    """An error's text for the ledger and the log: the service's own messages (which name
    files, versions and states, never subjects) in full, any other only by its type, since a
    data error may quote raw ids."""
    from recforget.service.core import ServiceError

    if isinstance(exc, (LeaseLost, versions.VersionIntegrityError, ServiceError)):
        return f"{type(exc).__name__}: {exc}"
    return f"{type(exc).__name__} (message withheld: it may name raw ids)"


class LeaseLost(RuntimeError):
    """The writer lease expired or moved to another worker: this one is fenced off."""


@dataclass
class WorkerConfig:
    """How a worker batches and unlearns.

    batch_size : most requests served by one unlearning pass
    window : seconds to wait, after the oldest pending request, for more to join its batch
    poll : seconds between looks at the queue when idle
    lease_seconds : writer lease length (renewed at every step)
    max_attempts : claims of one request before it is FAILED and surfaced
    method : any registered ALS unlearning method
    tol : certificate tolerance (default: the model's grad_tol, else 1e-3)
    """

    batch_size: int = 64
    window: float = 0.2
    poll: float = 0.05
    lease_seconds: float = 30.0
    max_attempts: int = 5
    method: str = "unlearn-als-selective"
    tol: float | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Batch:
    batch_id: str
    requests: list[Any]
    hold: list[Any]
    parent: Any
    generation: int
    model: ALS
    retrain_data: Any = None
    watermark: int = 0


class Worker:
    """A deletion worker bound to a :class:`~recforget.service.DeletionService`."""

    def __init__(
        self, service: DeletionService, config: WorkerConfig | None = None, owner: str | None = None
    ) -> None:
        self.service = service
        self.config = config or WorkerConfig()
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.token: int | None = None
        self._cache: tuple[int, ALS] | None = None

    # ------------------------------------------------------------------ lease
    @property
    def _fence(self) -> str:
        return f"{self.owner}#{self.token}"

    def acquire(self) -> bool:
        """Take (or renew) the writer lease; recover after a takeover. False: someone holds it."""
        now = time.time()
        L = db.leases
        with self.service.engine.begin() as conn:
            row = conn.execute(sa.select(L).where(L.c.name == "writer").with_for_update()).one()
            mine = row.owner == self.owner and row.token == self.token and row.expires_at > now
            if not mine and row.expires_at > now:
                return False
            token = row.token if mine else row.token + 1
            conn.execute(
                sa.update(L)
                .where(L.c.name == "writer")
                .values(
                    owner=self.owner,
                    token=token,
                    expires_at=now + self.config.lease_seconds,
                    heartbeat_at=now,
                )
            )
            if not mine:
                self.token = token
                self._recover(conn)
                append_event(conn, "lease_taken", None, token=token)
        if not mine:
            self._purge_dirs()
        return True

    def release(self) -> None:
        """Give the lease up (clean shutdown), so another worker need not wait for it."""
        L = db.leases
        with self.service.engine.begin() as conn:
            conn.execute(
                sa.update(L)
                .where(L.c.name == "writer", L.c.owner == self.owner, L.c.token == self.token)
                .values(expires_at=0.0)
            )

    def _renew(self, conn: Connection) -> None:
        """Extend the lease in this transaction, or raise :class:`LeaseLost` (fenced)."""
        now = time.time()
        L = db.leases
        done = conn.execute(
            sa.update(L)
            .where(
                L.c.name == "writer",
                L.c.owner == self.owner,
                L.c.token == self.token,
                L.c.expires_at > now,
            )
            .values(expires_at=now + self.config.lease_seconds, heartbeat_at=now)
        ).rowcount
        if done != 1:
            raise LeaseLost(f"worker {self.owner} lost the writer lease (token {self.token})")

    @contextmanager
    def _heartbeat(self):
        """Renew the lease from a thread while a long build runs (a stopped process stops it)."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.config.lease_seconds / 3):
                try:
                    with self.service.engine.begin() as conn:
                        self._renew(conn)
                except LeaseLost:
                    return

        thread = threading.Thread(target=beat, name="lease-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def _recover(self, conn: Connection, *, mine: bool = False) -> None:
        """Claimed requests back to DATA_DELETED (FAILED past the limit), staged versions
        abandoned: everyone's after a takeover, or (``mine``) this worker's after an error."""
        r, V = db.requests, db.versions
        q = sa.select(r).where(r.c.state.in_([State.BUILDING.value, State.STAGED.value]))
        staged = V.c.status == "staged"
        if mine:
            q = q.where(r.c.lease_owner == self._fence)
            staged = staged & (V.c.lease_token == self.token)
        for row in conn.execute(q).all():
            old = State(row.state)
            if row.attempts >= self.config.max_attempts:
                ledger.move(
                    conn,
                    row.id,
                    old,
                    State.FAILED,
                    lease_owner=None,
                    error=f"gave up after {row.attempts} attempts (worker died)",
                )
            else:
                ledger.move(
                    conn,
                    row.id,
                    old,
                    State.DATA_DELETED,
                    lease_owner=None,
                    lease_expires=None,
                    batch_id=None,
                    event={"recovered": True},
                )
        conn.execute(sa.update(V).where(staged).values(status="abandoned"))

    def _reset_mine(self) -> None:
        try:
            with self.service.engine.begin() as conn:
                self._renew(conn)
                self._recover(conn, mine=True)
        except LeaseLost:  # whoever holds it now recovers them
            pass

    def _purge_dirs(self) -> None:
        """Delete version directories that nothing serves (they may hold erased data)."""
        root = self.service.versions_dir
        V = db.versions
        with db.read(self.service.engine) as conn:
            rows = conn.execute(sa.select(V.c.id, V.c.path, V.c.status)).all()
        keep = {r.path for r in rows if r.status in ("serving", "staged")}
        for r in rows:
            if r.status in ("superseded", "abandoned") and (root / r.path).exists():
                versions.remove_dir(root / r.path)
        if root.is_dir():
            for p in root.iterdir():
                if p.name not in keep and (p.name.startswith(("v-", ".tmp-"))):
                    versions.remove_dir(p)
        with self.service.engine.begin() as conn:
            conn.execute(
                sa.update(V)
                .where(V.c.status.in_(["superseded", "abandoned"]))
                .values(status="purged")
            )

    # ------------------------------------------------------------------ loop
    def intake(self) -> int:
        """Run the deletion step for every RECEIVED request (a submitter may have died)."""
        r = db.requests
        with db.read(self.service.engine) as conn:
            ids = (
                conn.execute(
                    sa.select(r.c.id).where(r.c.state == State.RECEIVED.value).order_by(r.c.seq)
                )
                .scalars()
                .all()
            )
        for rid in ids:
            with self.service.engine.begin() as conn:
                ledger.delete_data(conn, self.service.keys, rid)
        return len(ids)

    def _ready(self) -> bool:
        """A batch is due: enough requests, or the oldest has waited the window."""
        r = db.requests
        with db.read(self.service.engine) as conn:
            n, oldest = conn.execute(
                sa.select(sa.func.count(), sa.func.min(r.c.data_deleted_at)).where(
                    r.c.state == State.DATA_DELETED.value
                )
            ).one()
        if not n:
            return False
        return n >= self.config.batch_size or time.time() - oldest >= self.config.window

    def step(self) -> int:
        """One pass: intake, then a batch if one is due. Returns requests completed."""
        self.intake()
        if not self.acquire():
            return 0
        if not self._ready():
            return 0
        return self.run_batch()

    def run(self, *, max_batches: int | None = None, idle_exit: float | None = None) -> int:
        """Loop until ``max_batches`` batches ran or nothing happened for ``idle_exit`` s."""
        try:
            return self._loop(max_batches, idle_exit)
        finally:
            self.release()

    def _loop(self, max_batches: int | None, idle_exit: float | None) -> int:
        done = batches = 0
        idle_since = time.time()
        while max_batches is None or batches < max_batches:
            try:
                n = self.step()
            except LeaseLost as exc:
                log.warning("%s", exc)
                n = 0
            except Exception as exc:  # the batch goes back to the queue (or FAILED); keep serving
                log.error(
                    "batch failed: %s\n%s", safe_error(exc), "".join(format_tb(exc.__traceback__))
                )
                self._reset_mine()
                n = 0
            if n:
                done += n
                batches += 1
                idle_since = time.time()
            else:
                if idle_exit is not None and time.time() - idle_since >= idle_exit:
                    break
                time.sleep(self.config.poll)
        return done

    # ------------------------------------------------------------------ one batch
    def run_batch(self, *, retrain: bool = False) -> int:
        """Claim, unlearn (or retrain from the store), stage and complete one batch."""
        batch = self._claim(retrain)
        if batch is None:
            return 0
        try:
            with self._heartbeat():
                t0 = time.perf_counter()
                if retrain:
                    new_model, info = self._retrain(batch)
                else:
                    new_model, info = self._unlearn(batch)
                info["build_seconds"] = time.perf_counter() - t0
                name, files = versions.write_version(self.service.versions_dir, new_model)
        except LeaseLost:
            raise
        except Exception as exc:
            self._fail(batch, safe_error(exc))
            raise
        fault("build.after_rename")
        version_id = self._register(batch, name, files, new_model, info, retrain)
        fault("build.after_register")
        fault("complete.before_txn")
        self._complete(batch, version_id, new_model, info)
        fault("complete.after_commit")
        self._cache = (version_id, new_model)
        self._purge_dirs()
        return len(batch.requests)

    def _claim(self, retrain: bool) -> _Batch | None:
        r, h = db.requests, db.erasure_hold
        now = time.time()
        with self.service.engine.begin() as conn:
            db.lock(conn, "store")
            self._renew(conn)
            if retrain:
                for rid in (
                    conn.execute(sa.select(r.c.id).where(r.c.state == State.FAILED.value))
                    .scalars()
                    .all()
                ):
                    ledger.retry_failed(conn, rid)
            q = sa.select(r).where(r.c.state == State.DATA_DELETED.value).order_by(r.c.seq)
            if not retrain:
                q = q.limit(self.config.batch_size)
            rows = conn.execute(q).all()
            if not rows and not retrain:
                return None
            batch_id = str(uuid.uuid4())
            for row in rows:
                ledger.move(
                    conn,
                    row.id,
                    State.DATA_DELETED,
                    State.BUILDING,
                    lease_owner=self._fence,
                    lease_expires=now + self.config.lease_seconds,
                    attempts=row.attempts + 1,
                    batch_id=batch_id,
                    event={"batch_id": batch_id, "attempt": row.attempts + 1},
                )
            ids = [row.id for row in rows]
            hold = []
            for k in range(0, len(ids), 500):
                hold += conn.execute(sa.select(h).where(h.c.request_id.in_(ids[k : k + 500]))).all()
            serving = conn.execute(sa.select(db.serving)).one()
            parent = conn.execute(
                sa.select(db.versions).where(db.versions.c.id == serving.version_id)
            ).one()
            model = self._serving_model(conn, parent)
            batch = _Batch(batch_id, rows, hold, parent, serving.generation, model)
            if retrain:
                batch.watermark = store.watermark(conn)
                batch.retrain_data = store.store_frame(conn, batch.watermark)
        return batch

    def _serving_model(self, conn: Connection, parent: Any) -> ALS:
        if self._cache is not None and self._cache[0] == parent.id:
            return self._cache[1]
        meta, arrays = versions.read_version(
            self.service.versions_dir / parent.path, json.loads(parent.files)
        )
        users, items = versions.vocabularies(arrays)
        data = store.version_data(conn, parent.watermark, users, items)
        if data.fingerprint() != parent.data_fingerprint:
            raise RuntimeError(
                f"the store no longer reconstructs version {parent.id}'s data "
                f"(fingerprint {data.fingerprint()[:12]} != {parent.data_fingerprint[:12]})"
            )
        model = versions.build_model(meta, arrays, data)
        if model.model_hash() != parent.model_hash:
            raise versions.VersionIntegrityError(f"version {parent.id}: model hash mismatch")
        self._cache = (parent.id, model)
        return model

    def _tol(self, model: ALS) -> float:
        if self.config.tol is not None:
            return float(self.config.tol)
        return float(model.grad_tol) if model.grad_tol is not None else 1e-3

    def _unlearn(self, batch: _Batch) -> tuple[ALS, dict]:
        from recforget import forget

        model = batch.model
        W = batch.parent.watermark
        users = {x.user_id for x in batch.hold if x.kind == "user"}
        items = {x.item_id for x in batch.hold if x.kind == "item"}
        pair_requests = {x.request_id for x in batch.hold if x.kind == "pair"}
        pairs = {
            (x.user_id, x.item_id)
            for x in batch.hold
            if x.kind == "row"
            and x.request_id in pair_requests
            and x.seq <= W
            and x.user_id not in users
            and x.item_id not in items
        }
        uv, iv = model.users_, model.items_
        known_u = [u for u in sorted(users) if store.as_vocab_ids([u], uv)[0] in uv]
        known_i = [i for i in sorted(items) if store.as_vocab_ids([i], iv)[0] in iv]
        pairs_l = sorted(pairs)
        request = DeletionRequest(
            pairs=list(
                zip(
                    store.as_vocab_ids([p[0] for p in pairs_l], uv),
                    store.as_vocab_ids([p[1] for p in pairs_l], iv),
                    strict=True,
                )
            ),
            users=store.as_vocab_ids(known_u, uv),
            items=store.as_vocab_ids(known_i, iv),
        )
        tol = self._tol(model)
        method = self.config.method
        options = dict(self.config.options)
        if method in ("unlearn-als", "unlearn-als-selective", "retrain"):
            options.setdefault("tol", tol)
        result = forget(model, request, method, data=model.seen_, missing="ignore", **options)
        rc = result.receipt
        new = result.model
        if new is model:  # nothing of the batch was in the model: same factors, new version
            new = versions.build_model(
                json.loads(versions.model_payload(model)["model.json"]),
                {
                    "user_factors": model.user_factors_,
                    "item_factors": model.item_factors_,
                    "user_bias": model.user_bias_,
                    "item_bias": model.item_bias_,
                },
                result.data,
            )
        if "certificate" not in rc:
            rc.update(new.certify(tol=tol))
        info = {
            "method": method,
            "certificate": rc["certificate"],
            "certified": bool(rc.get("certified", False)),
            "objective": rc.get("objective"),
            "sweeps": rc.get("sweeps"),
            "rows_solved": rc.get("rows_solved"),
            "stop_reason": rc.get("stop_reason"),
            "unlearn_seconds": rc["seconds"],
            "removed": {k: rc["removed"][k] for k in ("interactions", "users", "items")},
            "data_fingerprint_before": rc["data_fingerprint_before"],
            "data_fingerprint_after": rc["data_fingerprint_after"],
            "watermark": W,
        }
        return new, info

    def _retrain(self, batch: _Batch) -> tuple[ALS, dict]:
        from recforget.models.base import clone

        parent = batch.model
        frame = batch.retrain_data
        keys = self.service.keys
        with db.read(self.service.engine) as conn:
            gone = store.suppressed(
                conn,
                [keys.subject("user", u) for u in set(frame["user"])]
                + [keys.subject("item", i) for i in set(frame["item"])],
            )
        if gone:  # never happens through ingest; refuse to train on it anyway
            bad = frame["user"].map(lambda u: keys.subject("user", u) in gone) | frame["item"].map(
                lambda i: keys.subject("item", i) in gone
            )
            frame = frame[~bad]
        data = store.frame_data(frame, source="the interaction store")
        tol = self._tol(parent)
        t0 = time.perf_counter()
        new = clone(parent).set_params(
            random_state=parent.seed_,
            grad_tol=tol,
            tol=None,
            iterations=max(parent.iterations, 5000),
        )
        new.fit(data)
        new.set_params(iterations=parent.iterations)
        seconds = time.perf_counter() - t0
        cert = new.certify(tol=tol)
        return new, {
            "method": "retrain-from-store",
            "certificate": cert["certificate"],
            "certified": bool(cert.get("certified", False)),
            "objective": cert["objective"],
            "sweeps": new.n_iter_,
            "rows_solved": None,
            "stop_reason": new.stop_reason_,
            "unlearn_seconds": seconds,
            "removed": None,
            "data_fingerprint_before": batch.parent.data_fingerprint,
            "data_fingerprint_after": data.fingerprint(),
            "watermark": batch.watermark,
        }

    def _fail(self, batch: _Batch, error: str) -> None:
        with self.service.engine.begin() as conn:
            self._renew(conn)
            for row in batch.requests:
                new = (
                    State.FAILED
                    if row.attempts + 1 >= self.config.max_attempts
                    else (State.DATA_DELETED)
                )
                ledger.move(
                    conn,
                    row.id,
                    State.BUILDING,
                    new,
                    owner=self._fence,
                    lease_owner=None,
                    error=error[:2000],
                    event={"error": error[:200]},
                )

    def _register(self, batch, name, files, model, info, retrain) -> int:
        seqs = [row.seq for row in batch.requests]
        parent = batch.parent
        with self.service.engine.begin() as conn:
            self._renew(conn)
            vid = db.advance(conn, "version")
            conn.execute(
                sa.insert(db.versions).values(
                    id=vid,
                    parent_id=parent.id,
                    path=name,
                    files=json.dumps(files, sort_keys=True),
                    digest=versions.files_digest(files),
                    model_hash=model.model_hash(),
                    status="staged",
                    method=info["method"],
                    covered_seq=max([parent.covered_seq, *seqs]),
                    covered_count=parent.covered_count + len(seqs),
                    watermark=info["watermark"],
                    data_fingerprint=info["data_fingerprint_after"],
                    certificate=json.dumps(
                        {"certificate": info["certificate"], "certified": info["certified"]},
                        default=_json_default,
                    ),
                    lease_token=self.token,
                    created_at=time.time(),
                )
            )
            for row in batch.requests:
                ledger.move(
                    conn,
                    row.id,
                    State.BUILDING,
                    State.STAGED,
                    owner=self._fence,
                    version_id=vid,
                    event={"version": vid},
                )
            append_event(
                conn,
                "version_staged",
                None,
                version=vid,
                batch_id=batch.batch_id,
                digest=versions.files_digest(files),
                retrain=retrain,
            )
        return vid

    def _complete(self, batch: _Batch, version_id: int, model: ALS, info: dict) -> None:
        V, S, r = db.versions, db.serving, db.requests
        with self.service.engine.begin() as conn:
            self._renew(conn)
            serving = conn.execute(sa.select(S).with_for_update()).one()
            if serving.version_id != batch.parent.id or serving.generation != batch.generation:
                raise LeaseLost("the serving pointer moved under this batch; it is not activated")
            new = conn.execute(sa.select(V).where(V.c.id == version_id)).one()
            newest, completed = conn.execute(
                sa.select(sa.func.max(r.c.seq), sa.func.count()).where(
                    r.c.state == State.COMPLETED.value
                )
            ).one()
            if (newest or 0) > new.covered_seq or completed > new.covered_count:
                raise RuntimeError(
                    f"version {version_id} covers fewer requests than the newest completed one"
                )
            generation = serving.generation + 1
            now = time.time()
            conn.execute(
                sa.update(S)
                .where(S.c.id == 1, S.c.generation == serving.generation)
                .values(version_id=version_id, generation=generation, switched_at=now)
            )
            fault("complete.after_switch")
            conn.execute(
                sa.update(V)
                .where(V.c.id == version_id)
                .values(status="serving", generation=generation)
            )
            conn.execute(sa.update(V).where(V.c.id == batch.parent.id).values(status="superseded"))
            parent = batch.parent
            for row in batch.requests:
                rid = str(uuid.uuid4())
                body = {
                    "request_id": row.id,
                    "request_seq": row.seq,
                    "request_fingerprint": row.fingerprint,
                    "subjects": json.loads(row.subjects),
                    "legal_ground": row.legal_ground,
                    "rows_deleted": row.rows_deleted,
                    "method": info["method"],
                    "certificate": info["certificate"],
                    "certified": info["certified"],
                    "objective": info["objective"],
                    "sweeps": info["sweeps"],
                    "rows_solved": info["rows_solved"],
                    "removed_from_model": info["removed"],
                    "batch": {"id": batch.batch_id, "size": len(batch.requests)},
                    "data_fingerprint_before": info["data_fingerprint_before"],
                    "data_fingerprint_after": info["data_fingerprint_after"],
                    "model_sha256_before": parent.digest,
                    "model_sha256_after": new.digest,
                    "model_hash_before": parent.model_hash,
                    "model_hash_after": new.model_hash,
                    "version_before": parent.id,
                    "version_after": version_id,
                    "generation": generation,
                    "timings": {
                        "received_at": row.received_at,
                        "data_deleted_at": row.data_deleted_at,
                        "completed_at": now,
                        "unlearn_seconds": info["unlearn_seconds"],
                        "build_seconds": info["build_seconds"],
                    },
                    "due_at": row.due_at,
                }
                body = json.loads(json.dumps(body, default=_json_default))
                append_receipt(conn, self.service.keys, rid, body)
                ledger.move(
                    conn,
                    row.id,
                    State.STAGED,
                    State.COMPLETED,
                    owner=self._fence,
                    completed_at=now,
                    receipt_id=rid,
                    lease_owner=None,
                    event={"receipt_id": rid, "version": version_id},
                )
            ids = [row.id for row in batch.requests]
            for k in range(0, len(ids), 500):
                conn.execute(
                    sa.delete(db.erasure_hold).where(
                        db.erasure_hold.c.request_id.in_(ids[k : k + 500])
                    )
                )
            append_event(
                conn, "switched", None, version=version_id, generation=generation, requests=len(ids)
            )


def _json_default(obj: object) -> object:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__}")


__all__ = ["LeaseLost", "Worker", "WorkerConfig"]
