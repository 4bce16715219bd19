"""The service database: engine factory, schema and its migrations, counters and locks.

SQLite (the default) is opened in WAL mode with ``synchronous=FULL`` and a busy timeout, and
every transaction starts with ``BEGIN IMMEDIATE`` (one writer at a time, no lock upgrades that
deadlock); all of it is set in :func:`create_engine`'s connect hook, nowhere else. PostgreSQL
is used with a ``postgresql+psycopg://`` URL; writers that must be serialised (ingest, the
deletion step, a batch claim, chain appends) take a row lock on a ``counters`` row, which
SQLite's single writer gives for free.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

SCHEMA_VERSION = 1

metadata = sa.MetaData()
_Time = sa.Float(precision=53)

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", _Time, nullable=False),
)
counters = sa.Table(
    "counters",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)
settings = sa.Table(
    "settings",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)
interactions = sa.Table(
    "interactions",
    metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("user_id", sa.Text, nullable=False),
    sa.Column("item_id", sa.Text, nullable=False),
    sa.Column("value", sa.Float(precision=53), nullable=False),
    sa.Column("ts", sa.BigInteger),
    sa.UniqueConstraint("user_id", "item_id", name="uq_interaction_pair"),
    sa.Index("ix_interactions_item", "item_id"),
)
# raw ids of a request's subjects and the interactions its deletion took out of the store:
# held only until the model no longer stands on them (purged when the request completes)
erasure_hold = sa.Table(
    "erasure_hold",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(36), nullable=False, index=True),
    sa.Column("kind", sa.String(8), nullable=False),  # user | item | pair | row
    sa.Column("seq", sa.BigInteger),  # row: its ingest sequence
    sa.Column("user_id", sa.Text),
    sa.Column("item_id", sa.Text),
    sa.Column("value", sa.Float(precision=53)),
    sa.Column("ts", sa.BigInteger),
)
suppression = sa.Table(
    "suppression",
    metadata,
    sa.Column("subject", sa.String(80), primary_key=True),  # keyed hash, "user:..."/"item:..."
    sa.Column("request_id", sa.String(36), nullable=False),
    sa.Column("created_at", _Time, nullable=False),
)
legal_holds = sa.Table(
    "legal_holds",
    metadata,
    sa.Column("subject", sa.String(80), primary_key=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("created_at", _Time, nullable=False),
)
requests = sa.Table(
    "requests",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("seq", sa.BigInteger, nullable=False, unique=True),
    sa.Column("client", sa.String(200), nullable=False),
    sa.Column("idempotency_key", sa.String(200), nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("subjects", sa.Text, nullable=False),  # JSON: keyed hashes only
    sa.Column("legal_ground", sa.Text, nullable=False),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("lease_owner", sa.String(80)),
    sa.Column("lease_expires", _Time),
    sa.Column("batch_id", sa.String(36)),
    sa.Column("received_at", _Time, nullable=False),
    sa.Column("due_at", _Time, nullable=False),
    sa.Column("due_extension_reason", sa.Text),
    sa.Column("data_deleted_at", _Time),
    sa.Column("completed_at", _Time),
    sa.Column("rows_deleted", sa.Integer),
    sa.Column("version_id", sa.Integer),
    sa.Column("receipt_id", sa.String(36)),
    sa.Column("error", sa.Text),
    sa.UniqueConstraint("client", "idempotency_key", name="uq_request_idempotency"),
)
versions = sa.Table(
    "versions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("parent_id", sa.Integer),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("files", sa.Text, nullable=False),  # JSON {name: sha256}
    sa.Column("digest", sa.String(64), nullable=False),  # sha256 over the files' sha256
    sa.Column("model_hash", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("method", sa.String(40), nullable=False),
    sa.Column("covered_seq", sa.BigInteger, nullable=False),  # highest request seq covered
    sa.Column("covered_count", sa.Integer, nullable=False),
    sa.Column("watermark", sa.BigInteger, nullable=False),  # ingest seq trained to
    sa.Column("data_fingerprint", sa.String(64), nullable=False),
    sa.Column("certificate", sa.Text),
    sa.Column("lease_token", sa.BigInteger),
    sa.Column("created_at", _Time, nullable=False),
    sa.Column("generation", sa.Integer),
)
serving = sa.Table(
    "serving",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("version_id", sa.Integer, nullable=False),
    sa.Column("generation", sa.Integer, nullable=False),
    sa.Column("switched_at", _Time, nullable=False),
)
leases = sa.Table(
    "leases",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("owner", sa.String(80)),
    sa.Column("token", sa.BigInteger, nullable=False),
    sa.Column("expires_at", _Time, nullable=False),
    sa.Column("heartbeat_at", _Time),
)
signing_keys = sa.Table(
    "signing_keys",
    metadata,
    sa.Column("key_id", sa.String(32), primary_key=True),
    sa.Column("public_key", sa.String(64), nullable=False),  # raw Ed25519, hex
    sa.Column("created_at", _Time, nullable=False),
)
receipts = sa.Table(
    "receipts",
    metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("id", sa.String(36), nullable=False, unique=True),
    sa.Column("request_id", sa.String(36), nullable=False, unique=True),  # one per request
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("signature", sa.String(128), nullable=False),
    sa.Column("key_id", sa.String(32), nullable=False),
)
events = sa.Table(
    "events",
    metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("request_id", sa.String(36), index=True),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

COUNTERS = ("ingest", "request", "version", "receipt", "event", "store")


def _v1(conn: Connection) -> None:
    metadata.create_all(conn)
    conn.execute(sa.insert(counters), [{"name": n, "value": 0} for n in COUNTERS])
    conn.execute(
        sa.insert(leases), [{"name": "writer", "owner": None, "token": 0, "expires_at": 0.0}]
    )


# version -> migration; each runs in its own transaction and records itself
MIGRATIONS: dict[int, Callable[[Connection], None]] = {1: _v1}


def create_engine(url: str) -> Engine:
    """An engine for ``url`` (``sqlite:///path`` or ``postgresql+psycopg://...``)."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record):  # pragma: no cover - exercised by every test
            dbapi_conn.isolation_level = None  # the driver must not open transactions itself
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn):  # pragma: no cover - exercised by every test
            # writers take the write lock up front; readers (see ``read``) a WAL snapshot
            read_only = conn.get_execution_options().get("recforget_read_only", False)
            conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine
    if url.startswith("postgresql"):
        if not url.startswith("postgresql+psycopg://"):
            raise ValueError("PostgreSQL URLs must use the psycopg 3 driver: postgresql+psycopg://")
        return sa.create_engine(url, pool_pre_ping=True)
    raise ValueError(
        f"unsupported database URL {url!r}: use sqlite:///... or postgresql+psycopg://"
    )


def read(engine: Engine) -> Connection:
    """A connection for reading only: one consistent snapshot per transaction that never
    blocks writers (SQLite: a deferred transaction under WAL; PostgreSQL: REPEATABLE READ)."""
    conn = engine.connect()
    if engine.dialect.name == "postgresql":
        return conn.execution_options(isolation_level="REPEATABLE READ")
    return conn.execution_options(recforget_read_only=True)


def current_version(engine: Engine) -> int:
    if not sa.inspect(engine).has_table("schema_version"):
        return 0
    with engine.connect() as conn:
        v = conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar()
    return int(v or 0)


def migrate(engine: Engine) -> int:
    """Apply every migration newer than the database's version; returns the new version."""
    have = current_version(engine)
    if have > SCHEMA_VERSION:
        raise RuntimeError(
            f"database schema version {have} is newer than this library ({SCHEMA_VERSION})"
        )
    for v in range(have + 1, SCHEMA_VERSION + 1):
        with engine.begin() as conn:
            MIGRATIONS[v](conn)
            conn.execute(sa.insert(schema_version).values(version=v, applied_at=time.time()))
    return SCHEMA_VERSION


def require_schema(engine: Engine) -> None:
    v = current_version(engine)
    if v != SCHEMA_VERSION:
        raise RuntimeError(
            f"database schema version is {v}, this library needs {SCHEMA_VERSION}; "
            "run `recforget service init` (it migrates)"
        )


def lock(conn: Connection, name: str) -> int:
    """Row-lock counter ``name`` until the transaction ends; returns its value."""
    return int(
        conn.execute(
            sa.select(counters.c.value).where(counters.c.name == name).with_for_update()
        ).scalar_one()
    )


def advance(conn: Connection, name: str, by: int = 1) -> int:
    """Add ``by`` to counter ``name`` (locking it) and return the new value."""
    value = lock(conn, name) + by
    conn.execute(sa.update(counters).where(counters.c.name == name).values(value=value))
    return value


def get_setting(conn: Connection, name: str) -> str | None:
    return conn.execute(sa.select(settings.c.value).where(settings.c.name == name)).scalar()


def set_setting(conn: Connection, name: str, value: str) -> None:
    if get_setting(conn, name) is None:
        conn.execute(sa.insert(settings).values(name=name, value=value))
    else:
        conn.execute(sa.update(settings).where(settings.c.name == name).values(value=value))


__all__ = ["SCHEMA_VERSION", "advance", "create_engine", "lock", "metadata", "migrate", "read"]
