"""The request ledger: submission with idempotency keys, the deletion step, state moves.

Every change of a request's state goes through :func:`move` (which checks the move against
:mod:`recforget.service.states`, guards on the current state, and appends an audit event), in
the caller's transaction. Subject ids are stored in the ledger only as keyed hashes; their raw
form waits in ``erasure_hold`` until the request completes or is rejected.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from recforget.service import db
from recforget.service.faults import fault
from recforget.service.receipts import Keys, append_event, canonical
from recforget.service.states import State, check_move
from recforget.unlearn.requests import DeletionRequest

DUE_DAYS = 30  # GDPR Art. 12(3): one month
MAX_EXTENSION_DAYS = 60  # ... extendable by two further months, with reasons
DAY = 86400.0


class LedgerError(RuntimeError):
    """A ledger operation that cannot be done (the message says why)."""


class IdempotencyConflict(LedgerError):
    """The idempotency key was used by this client for a different request body."""


class StaleState(LedgerError):
    """The request is no longer in the state (or lease) the writer expected."""


@dataclass(frozen=True)
class Submission:
    """What :meth:`DeletionService.submit` acknowledges (the request is durable)."""

    request_id: str
    seq: int
    state: str
    received_at: float
    due_at: float
    replay: bool  # True: the idempotency key was seen before; this is the stored request

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def subjects_of(keys: Keys, request: DeletionRequest) -> dict[str, list[str]]:
    return {
        "users": sorted({keys.subject("user", u) for u in request.users}),
        "items": sorted({keys.subject("item", i) for i in request.items}),
        "pairs": sorted({keys.subject("pair", p) for p in request.pairs}),
    }


def fingerprint(keys: Keys, request: DeletionRequest, legal_ground: str) -> str:
    """Keyed hash of the request's canonical body (ids as text, order-free)."""
    body = {
        "pairs": sorted([str(u), str(i)] for u, i in request.pairs),
        "users": sorted(str(u) for u in request.users),
        "items": sorted(str(i) for i in request.items),
        "legal_ground": legal_ground,
    }
    return keys.keyed("request:" + canonical(body))


def _submission(row: Any, replay: bool) -> Submission:
    return Submission(row.id, row.seq, row.state, row.received_at, row.due_at, replay)


def submit(
    conn: Connection,
    keys: Keys,
    client: str,
    idempotency_key: str,
    request: DeletionRequest,
    legal_ground: str,
    *,
    now: float | None = None,
) -> Submission:
    """Record a request as RECEIVED (in the caller's transaction), or return the stored one."""
    if not client or not idempotency_key:
        raise ValueError("client and idempotency_key must be non-empty")
    if len(client) > 200 or len(idempotency_key) > 200:
        raise ValueError("client and idempotency_key must be at most 200 characters")
    if request.is_empty:
        raise ValueError("the deletion request names no pairs, users or items")
    if not legal_ground or not legal_ground.strip():
        raise ValueError("a legal ground is required (e.g. 'GDPR Art. 17(1)(b)')")
    fp = fingerprint(keys, request, legal_ground)
    r = db.requests
    db.lock(conn, "request")  # serialises submissions
    old = conn.execute(
        sa.select(r).where(r.c.client == client, r.c.idempotency_key == idempotency_key)
    ).first()
    if old is not None:
        if old.fingerprint != fp:
            raise IdempotencyConflict(
                f"idempotency key {idempotency_key!r} of client {client!r} was used for a "
                "different request"
            )
        return _submission(old, replay=True)
    seq = db.advance(conn, "request")
    now = time.time() if now is None else now
    rid = str(uuid.uuid4())
    conn.execute(
        sa.insert(r).values(
            id=rid,
            seq=seq,
            client=client,
            idempotency_key=idempotency_key,
            fingerprint=fp,
            subjects=canonical(subjects_of(keys, request)),
            legal_ground=legal_ground,
            state=State.RECEIVED.value,
            attempts=0,
            received_at=now,
            due_at=now + DUE_DAYS * DAY,
        )
    )
    hold = [{"kind": "user", "user_id": str(u)} for u in dict.fromkeys(request.users)]
    hold += [{"kind": "item", "item_id": str(i)} for i in dict.fromkeys(request.items)]
    hold += [
        {"kind": "pair", "user_id": str(u), "item_id": str(i)}
        for u, i in dict.fromkeys(request.pairs)
    ]
    conn.execute(sa.insert(db.erasure_hold), [{"request_id": rid, **h} for h in hold])
    append_event(conn, "received", rid, seq=seq, client_hash=keys.keyed("client:" + client))
    row = conn.execute(sa.select(r).where(r.c.id == rid)).one()
    return _submission(row, replay=False)


def move(
    conn: Connection,
    request_id: str,
    old: State,
    new: State,
    *,
    owner: str | None = None,
    event: dict[str, Any] | None = None,
    **fields: Any,
) -> None:
    """Move one request ``old -> new`` (checked), guarded on its state (and lease ``owner``)."""
    check_move(old, new)
    r = db.requests
    cond = [r.c.id == request_id, r.c.state == old.value]
    if owner is not None:
        cond.append(r.c.lease_owner == owner)
    done = conn.execute(sa.update(r).where(*cond).values(state=new.value, **fields)).rowcount
    if done != 1:
        raise StaleState(f"request {request_id} is no longer {old.value} (or its lease moved)")
    append_event(conn, new.value.lower(), request_id, **{"from": old.value, **(event or {})})


def delete_data(conn: Connection, keys: Keys, request_id: str) -> str:
    """The deletion step, in the caller's transaction: RECEIVED -> DATA_DELETED or REJECTED.

    Deletes the subject's rows from the store (moving them to the erasure hold, where they
    wait until the model has forgotten them), suppresses whole users and items, and records an
    event. Rejects (with the reason) a request whose subjects are on legal hold or unknown.
    Returns the new state; a request already past RECEIVED is left as it is.
    """
    db.lock(conn, "store")
    r, h, t = db.requests, db.erasure_hold, db.interactions
    row = conn.execute(sa.select(r).where(r.c.id == request_id)).first()
    if row is None:
        raise LedgerError(f"no request {request_id}")
    if row.state != State.RECEIVED.value:
        return row.state
    subjects = json.loads(row.subjects)
    every = subjects["users"] + subjects["items"] + subjects["pairs"]
    held = conn.execute(sa.select(db.legal_holds).where(db.legal_holds.c.subject.in_(every))).all()
    if held:
        reason = "legal hold: " + "; ".join(sorted({x.reason for x in held}))
        return _reject(conn, request_id, reason)
    hold = conn.execute(sa.select(h).where(h.c.request_id == request_id)).all()
    conds = []
    for x in hold:
        if x.kind == "user":
            conds.append(t.c.user_id == x.user_id)
        elif x.kind == "item":
            conds.append(t.c.item_id == x.item_id)
        elif x.kind == "pair":
            conds.append(sa.and_(t.c.user_id == x.user_id, t.c.item_id == x.item_id))
    rows = []
    for k in range(0, len(conds), 200):
        rows += conn.execute(sa.select(t).where(sa.or_(*conds[k : k + 200]))).all()
    rows = list({x.seq: x for x in rows}.values())
    if not rows:
        return _reject(conn, request_id, "unknown subject: no interactions in the store")
    conn.execute(
        sa.insert(h),
        [
            {
                "request_id": request_id,
                "kind": "row",
                "seq": x.seq,
                "user_id": x.user_id,
                "item_id": x.item_id,
                "value": x.value,
                "ts": x.ts,
            }
            for x in rows
        ],
    )
    seqs = [x.seq for x in rows]
    for k in range(0, len(seqs), 500):
        conn.execute(sa.delete(t).where(t.c.seq.in_(seqs[k : k + 500])))
    now = time.time()
    have = set(
        conn.execute(
            sa.select(db.suppression.c.subject).where(
                db.suppression.c.subject.in_(subjects["users"] + subjects["items"])
            )
        ).scalars()
    )
    new = [s for s in subjects["users"] + subjects["items"] if s not in have]
    if new:
        conn.execute(
            sa.insert(db.suppression),
            [{"subject": s, "request_id": request_id, "created_at": now} for s in new],
        )
    fault("delete.in_txn")
    move(
        conn,
        request_id,
        State.RECEIVED,
        State.DATA_DELETED,
        data_deleted_at=now,
        rows_deleted=len(rows),
        event={"rows_deleted": len(rows), "suppressed": len(new)},
    )
    return State.DATA_DELETED.value


def _reject(conn: Connection, request_id: str, reason: str) -> str:
    move(
        conn,
        request_id,
        State.RECEIVED,
        State.REJECTED,
        error=reason,
        completed_at=time.time(),
        event={"reason": reason},
    )
    conn.execute(sa.delete(db.erasure_hold).where(db.erasure_hold.c.request_id == request_id))
    return State.REJECTED.value


def extend_due(conn: Connection, request_id: str, days: float, reason: str) -> float:
    """Extend a request's due date (at most two further months in all), recording the reason."""
    r = db.requests
    row = conn.execute(sa.select(r).where(r.c.id == request_id)).first()
    if row is None:
        raise LedgerError(f"no request {request_id}")
    if not reason.strip():
        raise ValueError("an extension needs a reason")
    new_due = row.due_at + days * DAY
    if days <= 0 or new_due > row.received_at + (DUE_DAYS + MAX_EXTENSION_DAYS) * DAY:
        raise ValueError(f"extension must be positive and at most {MAX_EXTENSION_DAYS} days in all")
    conn.execute(
        sa.update(r).where(r.c.id == request_id).values(due_at=new_due, due_extension_reason=reason)
    )
    append_event(conn, "due_extended", request_id, days=days, reason=reason, due_at=new_due)
    return new_due


def add_legal_hold(conn: Connection, keys: Keys, kind: str, raw: object, reason: str) -> str:
    subject = keys.subject(kind, raw)
    conn.execute(
        sa.insert(db.legal_holds).values(subject=subject, reason=reason, created_at=time.time())
    )
    append_event(conn, "legal_hold", None, subject=subject, reason=reason)
    return subject


def retry_failed(conn: Connection, request_id: str) -> None:
    """Operator retry: FAILED -> DATA_DELETED with the attempt counter reset."""
    move(
        conn,
        request_id,
        State.FAILED,
        State.DATA_DELETED,
        attempts=0,
        error=None,
        lease_owner=None,
        lease_expires=None,
    )


def request_dict(row: Any) -> dict[str, Any]:
    """A ledger row as JSON-ready dict (keyed hashes only, no raw ids)."""
    out = dict(row._mapping)
    out["subjects"] = json.loads(out["subjects"])
    return out


__all__ = [
    "IdempotencyConflict",
    "LedgerError",
    "StaleState",
    "Submission",
    "delete_data",
    "extend_due",
    "move",
    "submit",
]
