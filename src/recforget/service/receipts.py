"""Secrets, keyed subject hashes, Ed25519 signatures and the two hash chains.

The service home holds two secrets, written once by ``init`` with mode 0600: ``keys/hmac.key``
(subject ids are stored only as ``HMAC-SHA256(secret, kind:id)``) and ``keys/signing.key`` (the
Ed25519 key that signs receipts; its public half is also stored in the database, so an auditor
needs only the database). Receipts and audit events are append-only chains: each row's hash is
``sha256(previous hash || canonical JSON body)``, and the body names the previous hash.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy.engine import Connection

from recforget.service import db

GENESIS = "0" * 64


def canonical(obj: Any) -> str:
    """The JSON text that is hashed and signed: sorted keys, no spaces."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def chain_hash(prev: str, body: str) -> str:
    return hashlib.sha256(prev.encode() + b"\n" + body.encode()).hexdigest()


def _write_secret(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


class Keys:
    """The service's HMAC secret and receipt-signing key, read from ``home/keys``."""

    def __init__(self, hmac_key: bytes, signing_key: Ed25519PrivateKey) -> None:
        self._hmac = hmac_key
        self._signing = signing_key
        raw = signing_key.public_key().public_bytes_raw()
        self.public_hex = raw.hex()
        self.key_id = hashlib.sha256(raw).hexdigest()[:16]

    @classmethod
    def create(cls, home: str | Path) -> Keys:
        folder = Path(home) / "keys"
        if not (folder / "hmac.key").exists():
            _write_secret(folder / "hmac.key", os.urandom(32).hex().encode())
        if not (folder / "signing.key").exists():
            key = Ed25519PrivateKey.generate()
            _write_secret(folder / "signing.key", key.private_bytes_raw().hex().encode())
        return cls.load(home)

    @classmethod
    def load(cls, home: str | Path) -> Keys:
        folder = Path(home) / "keys"
        try:
            hkey = bytes.fromhex((folder / "hmac.key").read_text().strip())
            skey = bytes.fromhex((folder / "signing.key").read_text().strip())
        except FileNotFoundError as exc:
            raise FileNotFoundError(
                f"service secrets missing: {exc.filename} (run `recforget service init`)"
            ) from exc
        return cls(hkey, Ed25519PrivateKey.from_private_bytes(skey))

    def subject(self, kind: str, raw: object) -> str:
        """Keyed hash of a subject id: ``kind:hex`` (kind is user, item or pair)."""
        text = f"{kind}:{raw[0]}\x1f{raw[1]}" if kind == "pair" else f"{kind}:{raw}"  # type: ignore[index]
        return f"{kind}:" + hmac.new(self._hmac, text.encode(), hashlib.sha256).hexdigest()

    def keyed(self, text: str) -> str:
        return hmac.new(self._hmac, text.encode(), hashlib.sha256).hexdigest()

    def sign(self, digest: str) -> str:
        return self._signing.sign(digest.encode()).hex()

    def register(self, conn: Connection) -> None:
        """Record the public key in the database (once)."""
        have = conn.execute(
            sa.select(db.signing_keys.c.key_id).where(db.signing_keys.c.key_id == self.key_id)
        ).scalar()
        if have is None:
            conn.execute(
                sa.insert(db.signing_keys).values(
                    key_id=self.key_id, public_key=self.public_hex, created_at=time.time()
                )
            )


def verify_signature(public_hex: str, digest: str, signature_hex: str) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_hex)).verify(
            bytes.fromhex(signature_hex), digest.encode()
        )
    except (InvalidSignature, ValueError):
        return False
    return True


def _head(conn: Connection, table: sa.Table, seq: int) -> str:
    if seq == 0:
        return GENESIS
    h = conn.execute(sa.select(table.c.hash).where(table.c.seq == seq)).scalar()
    if h is None:
        raise RuntimeError(f"{table.name} chain is broken: row {seq} is missing")
    return h


def append_event(conn: Connection, kind: str, request_id: str | None = None, **fields: Any) -> None:
    """Append an audit event (hash-chained; no raw personal ids may be passed)."""
    seq = db.advance(conn, "event")
    prev = _head(conn, db.events, seq - 1)
    body = canonical(
        {
            "seq": seq,
            "kind": kind,
            "request_id": request_id,
            "at": time.time(),
            "prev": prev,
            **fields,
        }
    )
    conn.execute(
        sa.insert(db.events).values(
            seq=seq, kind=kind, request_id=request_id, body=body, hash=chain_hash(prev, body)
        )
    )


def append_receipt(conn: Connection, keys: Keys, receipt_id: str, body: dict[str, Any]) -> dict:
    """Append a signed receipt to the chain; returns the stored receipt."""
    seq = db.advance(conn, "receipt")
    prev = _head(conn, db.receipts, seq - 1)
    full = {
        **body,
        "receipt_id": receipt_id,
        "receipt_seq": seq,
        "prev_hash": prev,
        "key_id": keys.key_id,
    }
    text = canonical(full)
    digest = chain_hash(prev, text)
    signature = keys.sign(digest)
    conn.execute(
        sa.insert(db.receipts).values(
            seq=seq,
            id=receipt_id,
            request_id=body["request_id"],
            body=text,
            hash=digest,
            signature=signature,
            key_id=keys.key_id,
        )
    )
    return {"receipt": full, "hash": digest, "signature": signature}


def verify_chain(conn: Connection) -> list[str]:
    """Problems found in the receipt and event chains and the receipts' signatures ([] = ok)."""
    problems: list[str] = []
    keys = {r.key_id: r.public_key for r in conn.execute(sa.select(db.signing_keys))}
    prev, expect = GENESIS, 1
    for row in conn.execute(sa.select(db.receipts).order_by(db.receipts.c.seq)):
        where = f"receipt {row.seq} ({row.id})"
        if row.seq != expect:
            problems.append(f"{where}: sequence gap (expected {expect})")
        expect = row.seq + 1
        body = json.loads(row.body)
        if body.get("prev_hash") != prev:
            problems.append(f"{where}: prev_hash does not match the previous receipt")
        if chain_hash(prev, row.body) != row.hash:
            problems.append(f"{where}: hash does not match its body")
        if row.key_id not in keys:
            problems.append(f"{where}: signed by unknown key {row.key_id}")
        elif not verify_signature(keys[row.key_id], row.hash, row.signature):
            problems.append(f"{where}: bad signature")
        prev = row.hash
    prev, expect = GENESIS, 1
    for row in conn.execute(sa.select(db.events).order_by(db.events.c.seq)):
        if row.seq != expect:
            problems.append(f"event {row.seq}: sequence gap (expected {expect})")
        expect = row.seq + 1
        if json.loads(row.body).get("prev") != prev or chain_hash(prev, row.body) != row.hash:
            problems.append(f"event {row.seq}: hash chain broken")
        prev = row.hash
    return problems


__all__ = ["Keys", "append_event", "append_receipt", "canonical", "verify_chain"]
