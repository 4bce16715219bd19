"""A stored receipt as the API and the console show it, with the server's own verification."""

from __future__ import annotations

import json
from typing import Any

from recforget.service.http import reads
from recforget.service.receipts import GENESIS, chain_hash, verify_signature


def check(conn, row: Any) -> list[str]:
    """Problems with one receipt (its hash, its link to the previous one, its signature)."""
    problems = []
    body = json.loads(row.body)
    prev = GENESIS if row.seq == 1 else reads.receipt_hash(conn, row.seq - 1)
    if body.get("prev_hash") != prev:
        problems.append("prev_hash does not match the previous receipt's hash")
    if chain_hash(body.get("prev_hash", ""), row.body) != row.hash:
        problems.append("hash does not match the body")
    key = reads.public_keys(conn).get(row.key_id)
    if key is None:
        problems.append(f"signed by unknown key {row.key_id}")
    elif not verify_signature(key, row.hash, row.signature):
        problems.append("signature does not verify")
    return problems


def as_dict(conn, row: Any) -> dict[str, Any]:
    return {
        "receipt_id": row.id,
        "request_id": row.request_id,
        "receipt": json.loads(row.body),
        "hash": row.hash,
        "signature": row.signature,
        "key_id": row.key_id,
        "verified": not check(conn, row),
    }
