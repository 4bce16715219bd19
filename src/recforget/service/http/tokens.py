"""API bearer tokens: created and revoked by ``recforget service keys``, stored hashed.

A token reads ``rf_<id>_<secret>``: ``id`` (12 hex) finds the row, ``secret`` (32 random
bytes, urlsafe base64) is checked against its stored sha256 in constant time. The secret is
shown once, at creation, and never stored. Each token names the client it acts for (the
ledger's ``client``: idempotency keys are per client) and its scopes:

``submit``  submit deletion requests and ingest interactions
``read``    read requests, receipts, recommendations and metrics (a client sees its own requests)
``admin``   everything, every client's requests, and the operator console

The table lives in the service database beside the core's, under its own schema version
(the ``settings`` row ``http_schema_version``), so the core's migrations stay untouched.

Verified tokens are cached by the serving process (:class:`TokenCache`, keyed by the
token's sha256, never the token): a request then costs one indexed read of the revocation
counter (``counters`` row ``http_tokens``, advanced by every :func:`revoke` in the same
transaction) instead of the token row. A cached entry counts only while that counter still
reads what it read before the entry was verified, and only until the token's expiry, so a
revocation takes effect on the next request, in every server process.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import time
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from recforget.service import db

SCOPES = ("submit", "read", "admin")
HTTP_SCHEMA_VERSION = 2
REVOCATIONS = "http_tokens"  # counters row: advanced by each revocation
_SETTING = "http_schema_version"
_TOKEN = re.compile(r"^rf_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")

metadata = sa.MetaData()
api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.String(12), primary_key=True),
    sa.Column("client", sa.String(200), nullable=False),
    sa.Column("scopes", sa.String(64), nullable=False),  # comma-separated
    sa.Column("secret_sha256", sa.String(64), nullable=False),
    sa.Column("note", sa.Text),
    sa.Column("created_at", db._Time, nullable=False),
    sa.Column("expires_at", db._Time),
    sa.Column("revoked_at", db._Time),
)


class TokenError(ValueError):
    """A token operation that cannot be done (the message says why)."""


@dataclass(frozen=True)
class Principal:
    """Who a verified token acts for."""

    token_id: str
    client: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


def _v1(conn: Connection) -> None:
    metadata.create_all(conn)


def _v2(conn: Connection) -> None:
    conn.execute(sa.insert(db.counters).values(name=REVOCATIONS, value=0))


_MIGRATIONS = {1: _v1, 2: _v2}


def schema_version(conn: Connection) -> int:
    return int(db.get_setting(conn, _SETTING) or 0)


def migrate(engine: Engine) -> int:
    """Create or upgrade the token table (each step in its own transaction)."""
    with engine.begin() as conn:
        have = schema_version(conn)
    if have > HTTP_SCHEMA_VERSION:
        raise RuntimeError(
            f"API token schema version {have} is newer than this library ({HTTP_SCHEMA_VERSION})"
        )
    for v in range(have + 1, HTTP_SCHEMA_VERSION + 1):
        with engine.begin() as conn:
            db.lock(conn, "store")  # two processes migrating at once: one waits
            if schema_version(conn) < v:
                _MIGRATIONS[v](conn)
                db.set_setting(conn, _SETTING, str(v))
    return HTTP_SCHEMA_VERSION


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _scopes(scopes: list[str] | tuple[str, ...]) -> str:
    bad = [s for s in scopes if s not in SCOPES]
    if bad or not scopes:
        raise TokenError(f"scopes must be some of {', '.join(SCOPES)}; got {list(scopes)}")
    return ",".join(s for s in SCOPES if s in scopes)


def create(
    engine: Engine,
    client: str,
    scopes: list[str] | tuple[str, ...],
    *,
    note: str | None = None,
    expires_days: float | None = None,
) -> tuple[str, str]:
    """Create a token; returns ``(token_id, token)``. The token is shown only this once."""
    if not client or len(client) > 200:
        raise TokenError("client must be 1 to 200 characters")
    scope_text = _scopes(scopes)
    migrate(engine)
    token_id = os.urandom(6).hex()
    secret = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    now = time.time()
    with engine.begin() as conn:
        conn.execute(
            sa.insert(api_tokens).values(
                id=token_id,
                client=client,
                scopes=scope_text,
                secret_sha256=_digest(secret),
                note=note,
                created_at=now,
                expires_at=None if expires_days is None else now + expires_days * 86400.0,
            )
        )
    return token_id, f"rf_{token_id}_{secret}"


def revoke(engine: Engine, token_id: str) -> None:
    """Revoke a token by id (or by the full token); it stops working at once."""
    m = _TOKEN.match(token_id)
    token_id = m.group(1) if m else token_id
    migrate(engine)
    with engine.begin() as conn:
        done = conn.execute(
            sa.update(api_tokens)
            .where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
            .values(revoked_at=time.time())
        ).rowcount
        if done == 1:
            db.advance(conn, REVOCATIONS)  # serving processes drop their cached verifications
    if done != 1:
        raise TokenError(f"no active API token {token_id}")


def listing(engine: Engine) -> list[dict]:
    migrate(engine)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(api_tokens).order_by(api_tokens.c.created_at)).all()
    return [{k: v for k, v in row._mapping.items() if k != "secret_sha256"} for row in rows]


def verify(conn: Connection, token: str) -> Principal | None:
    """The principal of a valid, unrevoked, unexpired token; None otherwise."""
    found = _lookup(conn, token)
    return None if found is None else found[0]


class TokenCache:
    """Verified tokens of one serving process, checked against the revocation counter.

    :meth:`verify` reads the counter (one indexed row) and answers from the cache when the
    entry was verified under the same counter value and the token has not expired; otherwise
    it verifies against the token row and caches a valid result under the counter value read
    *before* that check (so a revocation committed meanwhile still invalidates it). Invalid
    tokens are not cached. At most ``size`` entries (cleared when full).
    """

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._entries: dict[str, tuple[Principal, float | None, int | None]] = {}
        self.hits = 0
        self.misses = 0

    def verify(self, conn: Connection, token: str) -> Principal | None:
        from recforget.service.http.reads import counter

        rev = counter(conn, REVOCATIONS)
        if rev is None:  # no revocation counter (schema not migrated): no caching
            return verify(conn, token)
        key = hashlib.sha256(token.encode()).hexdigest()
        entry = self._entries.get(key)
        if entry is not None:
            who, expires_at, seen = entry
            if seen == rev and (expires_at is None or expires_at >= time.time()):
                self.hits += 1
                return who
            self._entries.pop(key, None)
        self.misses += 1
        found = _lookup(conn, token)
        if found is None:
            return None
        who, expires_at = found
        if len(self._entries) >= self.size:
            self._entries.clear()
        self._entries[key] = (who, expires_at, rev)
        return who


def _lookup(conn: Connection, token: str) -> tuple[Principal, float | None] | None:
    m = _TOKEN.match(token)
    if m is None:
        return None
    row = conn.execute(sa.select(api_tokens).where(api_tokens.c.id == m.group(1))).first()
    if row is None or not hmac.compare_digest(row.secret_sha256, _digest(m.group(2))):
        return None
    if row.revoked_at is not None or (row.expires_at is not None and row.expires_at < time.time()):
        return None
    return Principal(row.id, row.client, frozenset(row.scopes.split(","))), row.expires_at


__all__ = [
    "SCOPES",
    "Principal",
    "TokenCache",
    "TokenError",
    "create",
    "listing",
    "migrate",
    "revoke",
    "verify",
]
