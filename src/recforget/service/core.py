"""``DeletionService``: the service core that the CLI and an HTTP layer call.

It is a plain object over one database and one home directory (secrets, model versions); it
imports no web framework and does nothing at import time. Each public method is one or a few
transactions; a method that changes a request's state does so through the ledger's single
``move`` function.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from recforget.models.als import ALS
from recforget.service import db, ledger, store, versions
from recforget.service.faults import fault
from recforget.service.receipts import Keys, append_event
from recforget.service.states import PENDING, State
from recforget.service.worker import Worker, WorkerConfig
from recforget.unlearn.requests import DeletionRequest

CONFIG = "service.json"


class ServiceError(RuntimeError):
    """A service operation that cannot be done (the message says why)."""


class NotFound(ServiceError):
    """No such request, receipt or version."""


def default_url(home: str | Path) -> str:
    return f"sqlite:///{Path(home).resolve() / 'service.db'}"


class DeletionService:
    """The deletion pipeline over ``home`` (secrets, versions) and its database.

    Parameters
    ----------
    home : path
        The service directory written by :meth:`init`.
    url : str, optional
        Database URL; default: the one recorded by :meth:`init` in ``home/service.json``.
    """

    def __init__(self, home: str | Path, url: str | None = None) -> None:
        self.home = Path(home)
        cfg = self.home / CONFIG
        if not cfg.is_file():
            raise ServiceError(f"{self.home} is not a service home ({CONFIG} missing); run init")
        conf = json.loads(cfg.read_text())
        self.url = url or conf["url"]
        self.versions_dir = self.home / "versions"
        self.engine = db.create_engine(self.url)
        db.require_schema(self.engine)
        self.keys = Keys.load(self.home)

    # ------------------------------------------------------------------ set-up
    @classmethod
    def init(
        cls,
        home: str | Path,
        model: ALS,
        *,
        url: str | None = None,
        data: Any = None,
    ) -> DeletionService:
        """Create the database (migrated), the secrets, and import ``model`` as version 1.

        ``data`` (rows ``(user, item, value[, ts])`` or Interactions) is imported into the
        interaction store; default: the data the model was trained on (``model.seen_``). The
        store's content must be exactly that data.
        """
        home = Path(home)
        home.mkdir(parents=True, exist_ok=True)
        url = url or default_url(home)
        engine = db.create_engine(url)
        if db.current_version(engine):
            with engine.connect() as conn:
                if conn.execute(sa.select(db.serving)).first() is not None:
                    raise ServiceError(f"the database at {url} already holds a service")
        db.migrate(engine)
        engine.dispose()
        keys = Keys.create(home)
        (home / CONFIG).write_text(json.dumps({"url": url}, indent=1) + "\n")
        svc = cls(home, url)
        rows = _rows_of(data if data is not None else model.seen_)
        with svc.engine.begin() as conn:
            keys.register(conn)
            result = store.ingest(conn, keys, rows)
            frame = store.store_frame(conn, result.watermark)
        stored = store.frame_data(frame, model.users_, model.items_)
        if stored.fingerprint() != model.seen_.fingerprint():
            raise ServiceError(
                "the imported data is not the data the model was trained on "
                f"(store fingerprint {stored.fingerprint()[:12]}, model "
                f"{model.seen_.fingerprint()[:12]}); pass the model's training data"
            )
        name, files = versions.write_version(svc.versions_dir, model)
        cert = model.certify(tol=model.grad_tol if model.grad_tol is not None else 1e-3)
        with svc.engine.begin() as conn:
            vid = db.advance(conn, "version")
            conn.execute(
                sa.insert(db.versions).values(
                    id=vid,
                    parent_id=None,
                    path=name,
                    files=json.dumps(files, sort_keys=True),
                    digest=versions.files_digest(files),
                    model_hash=model.model_hash(),
                    status="serving",
                    method="import",
                    covered_seq=0,
                    covered_count=0,
                    watermark=result.watermark,
                    data_fingerprint=model.seen_.fingerprint(),
                    certificate=json.dumps(cert, default=float),
                    created_at=time.time(),
                    generation=1,
                )
            )
            conn.execute(
                sa.insert(db.serving).values(
                    id=1, version_id=vid, generation=1, switched_at=time.time()
                )
            )
            append_event(
                conn,
                "init",
                None,
                version=vid,
                rows=result.inserted,
                digest=versions.files_digest(files),
            )
        return svc

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------ requests
    def submit(
        self,
        client: str,
        idempotency_key: str,
        request: DeletionRequest,
        legal_ground: str,
        *,
        apply: bool = True,
    ) -> ledger.Submission:
        """Record a deletion request durably and acknowledge it.

        The request row is committed first (RECEIVED) and the returned :class:`Submission` is
        the acknowledgement. With ``apply`` (default) the deletion step then runs at once; if
        it does not (crash, ``apply=False``), the worker runs it. A replayed idempotency key
        returns the stored request (``replay=True``); the same key with another body raises
        :class:`~recforget.service.ledger.IdempotencyConflict`.
        """
        with self.engine.begin() as conn:
            sub = ledger.submit(conn, self.keys, client, idempotency_key, request, legal_ground)
        fault("submit.after_commit")
        if apply and not sub.replay:
            with self.engine.begin() as conn:
                state = ledger.delete_data(conn, self.keys, sub.request_id)
            sub = ledger.Submission(**{**sub.to_dict(), "state": state})
        return sub

    def status(self, request_id: str) -> dict[str, Any]:
        """The ledger row (keyed hashes only), with its receipt once completed."""
        r = db.requests
        with db.read(self.engine) as conn:
            row = conn.execute(sa.select(r).where(r.c.id == request_id)).first()
            if row is None:
                raise NotFound(f"no deletion request {request_id}")
            out = ledger.request_dict(row)
            out["overdue"] = out["state"] in {s.value for s in PENDING | {State.RECEIVED}} and (
                time.time() > out["due_at"]
            )
            if row.receipt_id:
                out["receipt"] = self._receipt(conn, request_id=request_id)
        return out

    def find(self, client: str, idempotency_key: str) -> dict[str, Any] | None:
        r = db.requests
        with db.read(self.engine) as conn:
            rid = conn.execute(
                sa.select(r.c.id).where(
                    r.c.client == client, r.c.idempotency_key == idempotency_key
                )
            ).scalar()
        return None if rid is None else self.status(rid)

    def receipt(self, receipt_id: str | None = None, *, request_id: str | None = None) -> dict:
        """A stored receipt: ``{"receipt": body, "hash", "signature", "key_id"}``."""
        with db.read(self.engine) as conn:
            return self._receipt(conn, receipt_id=receipt_id, request_id=request_id)

    def _receipt(self, conn, receipt_id=None, request_id=None) -> dict:
        R = db.receipts
        cond = R.c.id == receipt_id if receipt_id is not None else R.c.request_id == request_id
        row = conn.execute(sa.select(R).where(cond)).first()
        if row is None:
            raise NotFound(f"no receipt {receipt_id or 'for request ' + str(request_id)}")
        return {
            "receipt": json.loads(row.body),
            "hash": row.hash,
            "signature": row.signature,
            "key_id": row.key_id,
        }

    def public_key(self) -> dict[str, str]:
        return {
            "key_id": self.keys.key_id,
            "algorithm": "Ed25519",
            "public_key": self.keys.public_hex,
        }

    def queue(self) -> dict[str, Any]:
        """Requests by state, and the oldest pending request's age and due date."""
        r = db.requests
        with db.read(self.engine) as conn:
            counts = dict(
                conn.execute(sa.select(r.c.state, sa.func.count()).group_by(r.c.state)).all()
            )
            open_states = [s.value for s in PENDING | {State.RECEIVED}]
            oldest = conn.execute(
                sa.select(sa.func.min(r.c.received_at), sa.func.min(r.c.due_at)).where(
                    r.c.state.in_(open_states)
                )
            ).one()
        now = time.time()
        return {
            "by_state": {s.value: int(counts.get(s.value, 0)) for s in State},
            "oldest_pending_age_s": None if oldest[0] is None else now - oldest[0],
            "earliest_due_in_s": None if oldest[1] is None else oldest[1] - now,
        }

    def requests(self, state: str | None = None, limit: int | None = None) -> list[dict]:
        r = db.requests
        q = sa.select(r).order_by(r.c.seq)
        if state is not None:
            q = q.where(r.c.state == State(state).value)
        if limit is not None:
            q = q.limit(limit)
        with db.read(self.engine) as conn:
            return [ledger.request_dict(x) for x in conn.execute(q)]

    def export(self, *, receipts: bool = False) -> Iterator[dict[str, Any]]:
        """The ledger (and optionally the receipts) as JSON-ready dicts, in sequence order."""
        for row in self.requests():
            yield {"type": "request", **row}
        if receipts:
            with db.read(self.engine) as conn:
                rows = conn.execute(sa.select(db.receipts).order_by(db.receipts.c.seq)).all()
            for x in rows:
                yield {
                    "type": "receipt",
                    "receipt": json.loads(x.body),
                    "hash": x.hash,
                    "signature": x.signature,
                    "key_id": x.key_id,
                }

    def extend_due(self, request_id: str, days: float, reason: str) -> float:
        with self.engine.begin() as conn:
            return ledger.extend_due(conn, request_id, days, reason)

    def add_legal_hold(self, kind: str, raw: object, reason: str) -> str:
        with self.engine.begin() as conn:
            return ledger.add_legal_hold(conn, self.keys, kind, raw, reason)

    def retry(self, request_id: str) -> None:
        with self.engine.begin() as conn:
            ledger.retry_failed(conn, request_id)

    # ------------------------------------------------------------------ data and models
    def ingest(self, rows: Iterable[Sequence[object]]) -> store.IngestResult:
        """Append interactions ``(user, item[, value[, timestamp]])`` to the store."""
        with self.engine.begin() as conn:
            return store.ingest(conn, self.keys, rows)

    def serving(self) -> dict[str, Any]:
        """The serving pointer and its version row."""
        with db.read(self.engine) as conn:
            s = conn.execute(sa.select(db.serving)).one()
            v = conn.execute(sa.select(db.versions).where(db.versions.c.id == s.version_id)).one()
        return {"generation": s.generation, "switched_at": s.switched_at, **_version_dict(v)}

    def versions(self) -> list[dict[str, Any]]:
        with db.read(self.engine) as conn:
            rows = conn.execute(sa.select(db.versions).order_by(db.versions.c.id)).all()
        return [_version_dict(v) for v in rows]

    def load_version(self, version_id: int | None = None) -> tuple[dict[str, Any], ALS]:
        """Verify every file of a version (default: the serving one), then load it.

        Raises :class:`~recforget.service.versions.VersionIntegrityError` for a damaged one.
        """
        V = db.versions
        with db.read(self.engine) as conn:
            if version_id is None:
                version_id = conn.execute(sa.select(db.serving.c.version_id)).scalar_one()
            row = conn.execute(sa.select(V).where(V.c.id == version_id)).first()
            if row is None:
                raise NotFound(f"no model version {version_id}")
            meta, arrays = versions.read_version(
                self.versions_dir / row.path, json.loads(row.files)
            )
            users, items = versions.vocabularies(arrays)
            data = store.version_data(conn, row.watermark, users, items)
        model = versions.build_model(meta, arrays, data)
        return _version_dict(row), model

    def worker(self, config: WorkerConfig | None = None, **kwargs: Any) -> Worker:
        return Worker(self, config or WorkerConfig(**kwargs))

    def retrain(self, config: WorkerConfig | None = None) -> int:
        """Full retrain from the store (suppression respected), registered and activated.

        Takes the writer lease (fails if a worker holds it), covers every pending request.
        Returns the new serving version id.
        """
        w = self.worker(config)
        if not w.acquire():
            raise ServiceError("the writer lease is held by a running worker; stop it or wait")
        try:
            w.run_batch(retrain=True)
        finally:
            w.release()
        return int(self.serving()["id"])

    def audit(self, *, tol: float | None = None) -> dict[str, Any]:
        from recforget.service.audit import audit

        return audit(self, tol=tol)


def _version_dict(v: Any) -> dict[str, Any]:
    out = dict(v._mapping)
    out["files"] = json.loads(out["files"])
    out["certificate"] = json.loads(out["certificate"]) if out["certificate"] else None
    return out


def _rows_of(data: Any) -> list[tuple]:
    from recforget.data.interactions import Interactions

    if isinstance(data, Interactions):
        f = data.to_frame()
        ts = f["timestamp"] if "timestamp" in f else [None] * len(f)
        return list(
            zip(f["user"].tolist(), f["item"].tolist(), f["rating"].tolist(), ts, strict=True)
        )
    return list(data)


__all__ = ["DeletionService", "NotFound", "ServiceError"]
