"""Read-only queries of the HTTP layer, on an engine of its own.

The core's SQLite engine starts every transaction with ``BEGIN IMMEDIATE`` (one writer at a
time), which would queue each read behind the worker's writes. The hot read paths here (token
checks, suppression checks, a user's stored items, the console's listings) use a second
engine opened with ``PRAGMA query_only``: under WAL, such readers see the last committed state
and never wait for a writer. On PostgreSQL it is an autocommit engine (readers never block there).
Nothing here writes.

The recommendation path's queries (:func:`user_items`, :func:`suppressed`,
:func:`counter`) run as fixed SQL on the driver's own cursor: the same statements SQLAlchemy
would send, without its per-statement compile and result machinery (a few hundred
microseconds each, which at hundreds of requests a second is most of a request's cost).
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine

from recforget.service import db
from recforget.service.states import State


def read_engine(url: str) -> Engine:
    """An engine for reads only (SQLite: ``query_only``; both: autocommit)."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record):  # pragma: no cover - exercised by every test
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA busy_timeout=60000")
            cur.execute("PRAGMA query_only=ON")
            cur.close()

        return engine
    # autocommit: each read sees the last commit, and no BEGIN/ROLLBACK round trips
    return sa.create_engine(
        url,
        isolation_level="AUTOCOMMIT",
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=20,
        pool_timeout=5,
        connect_args={"connect_timeout": 5},
    )


def _raw(conn, sql: str, params: tuple | list) -> list[tuple]:
    """Rows of fixed SQL written with ``?`` placeholders, on the driver's cursor."""
    if conn.dialect.paramstyle != "qmark":  # psycopg: %s
        sql = sql.replace("?", "%s")
    cur = conn.connection.dbapi_connection.cursor()
    try:
        cur.execute(sql, tuple(params))
        return cur.fetchall()
    finally:
        cur.close()


def suppressed(conn, subjects: list[str]) -> set[str]:
    """Which of ``subjects`` (keyed hashes) are suppressed (their data was erased)."""
    if not subjects:
        return set()
    marks = ",".join("?" * len(subjects))
    rows = _raw(conn, f"SELECT subject FROM suppression WHERE subject IN ({marks})", subjects)
    return {r[0] for r in rows}


def user_items(conn, user: str) -> list[str]:
    """The items the store now holds for ``user`` (raw, as text)."""
    return [r[0] for r in _raw(conn, "SELECT item_id FROM interactions WHERE user_id = ?", [user])]


def counter(conn, name: str) -> int | None:
    """The value of counter ``name`` (None when the row does not exist)."""
    rows = _raw(conn, "SELECT value FROM counters WHERE name = ?", [name])
    return int(rows[0][0]) if rows else None


def serving_pointer(conn) -> tuple[int, int] | None:
    row = conn.execute(sa.select(db.serving.c.version_id, db.serving.c.generation)).first()
    return None if row is None else (int(row.version_id), int(row.generation))


def version_row(conn, version_id: int) -> Any:
    V = db.versions
    return conn.execute(sa.select(V).where(V.c.id == version_id)).first()


def heartbeat(conn) -> dict[str, Any]:
    L = db.leases
    row = conn.execute(sa.select(L).where(L.c.name == "writer")).first()
    if row is None:
        return {"heartbeat_at": None, "expires_at": None, "token": None}
    return {"heartbeat_at": row.heartbeat_at, "expires_at": row.expires_at, "token": row.token}


def request_row(conn, request_id: str) -> Any:
    r = db.requests
    return conn.execute(sa.select(r).where(r.c.id == request_id)).first()


def receipt_row(conn, receipt_id: str) -> Any:
    R = db.receipts
    return conn.execute(sa.select(R).where(R.c.id == receipt_id)).first()


def receipt_hash(conn, seq: int) -> str | None:
    R = db.receipts
    return conn.execute(sa.select(R.c.hash).where(R.c.seq == seq)).scalar()


def public_keys(conn) -> dict[str, str]:
    K = db.signing_keys
    return {k: v for k, v in conn.execute(sa.select(K.c.key_id, K.c.public_key))}


def events_of(conn, request_id: str) -> list[dict[str, Any]]:
    E = db.events
    rows = conn.execute(sa.select(E).where(E.c.request_id == request_id).order_by(E.c.seq)).all()
    return [json.loads(x.body) for x in rows]


def recent_requests(
    conn, *, states: list[str] | None = None, limit: int = 100, open_first: bool = False
) -> list[Any]:
    r = db.requests
    q = sa.select(r)
    if states:
        q = q.where(r.c.state.in_(states))
    q = q.order_by(r.c.due_at if open_first else r.c.seq.desc()).limit(limit)
    return conn.execute(q).all()


def completion_series(conn, limit: int = 500) -> list[tuple[float, float]]:
    """(completed_at, seconds from receipt to completion) of the last ``limit`` completed."""
    r = db.requests
    rows = conn.execute(
        sa.select(r.c.completed_at, r.c.received_at)
        .where(r.c.state == State.COMPLETED.value)
        .order_by(r.c.seq.desc())
        .limit(limit)
    ).all()
    return sorted((float(c), float(c - a)) for c, a in rows)


def receipts_after(conn, seq: int, limit: int = 1000) -> list[tuple[int, dict[str, Any]]]:
    R = db.receipts
    rows = conn.execute(
        sa.select(R.c.seq, R.c.body).where(R.c.seq > seq).order_by(R.c.seq).limit(limit)
    ).all()
    return [(int(s), json.loads(b)) for s, b in rows]


def versions(conn) -> list[Any]:
    V = db.versions
    return conn.execute(sa.select(V).order_by(V.c.id.desc())).all()


__all__ = ["read_engine"]
