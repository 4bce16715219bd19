"""The platform's interaction store: ingest with sequence numbers, suppression, reconstruction.

Every row gets an ingest sequence number in commit order (ingest holds the ``store`` lock).
A model version records the sequence it was trained to (its watermark); the data it stands on
is then always "rows up to the watermark that are still in the store", plus the rows that
pending requests took out of the store but the version has not yet forgotten (they wait in
``erasure_hold`` until the request completes). Ingest refuses rows of suppressed subjects.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from recforget.data.errors import DataError
from recforget.data.interactions import Interactions
from recforget.data.vocab import Vocabulary
from recforget.service import db
from recforget.service.receipts import Keys, append_event
from recforget.service.states import State


class SuppressedSubjectError(DataError):
    """Ingest refused: rows of subjects whose data was erased (nothing was written)."""

    def __init__(self, rows: list[int]) -> None:
        shown = ", ".join(str(r) for r in rows[:10]) + (" ..." if len(rows) > 10 else "")
        super().__init__(
            f"{len(rows)} row(s) belong to erased (suppressed) subjects and were refused: "
            f"row(s) {shown}; nothing was ingested"
        )
        self.rows = rows


@dataclass(frozen=True)
class IngestResult:
    inserted: int
    duplicates: int
    first_seq: int
    watermark: int


def _clean_rows(rows: Iterable[Sequence[object]]) -> list[tuple[str, str, float, int | None]]:
    out = []
    for n, row in enumerate(rows):
        if len(row) not in (2, 3, 4):
            raise DataError(f"row {n}: expected (user, item[, value[, timestamp]]), got {row!r}")
        user, item = row[0], row[1]
        if user is None or item is None or str(user) == "" or str(item) == "":
            raise DataError(f"row {n}: missing user or item id")
        try:
            value = 1.0 if len(row) < 3 or row[2] is None else float(row[2])  # type: ignore[arg-type]
        except (TypeError, ValueError) as exc:
            raise DataError(f"row {n}: value {row[2]!r} is not a number", column="value") from exc
        if not np.isfinite(value):
            raise DataError(f"row {n}: value {value!r} is not finite", column="value")
        ts = None if len(row) < 4 or row[3] is None else int(row[3])  # type: ignore[arg-type]
        out.append((str(_plain(user)), str(_plain(item)), value, ts))
    return out


def _plain(x: object) -> object:
    return x.item() if isinstance(x, np.generic) else x


def suppressed(conn: Connection, subjects: Iterable[str]) -> set[str]:
    subjects = list(set(subjects))
    found: set[str] = set()
    for k in range(0, len(subjects), 500):
        chunk = subjects[k : k + 500]
        found.update(
            conn.execute(
                sa.select(db.suppression.c.subject).where(db.suppression.c.subject.in_(chunk))
            ).scalars()
        )
    return found


def ingest(conn: Connection, keys: Keys, rows: Iterable[Sequence[object]]) -> IngestResult:
    """Append interactions (in the caller's transaction). Pairs already stored are skipped.

    Raises :class:`SuppressedSubjectError` (and writes nothing) if any row is of an erased user
    or item.
    """
    clean = _clean_rows(rows)
    db.lock(conn, "store")
    users = {u for u, _, _, _ in clean}
    items = {i for _, i, _, _ in clean}
    hu = {u: keys.subject("user", u) for u in users}
    hi = {i: keys.subject("item", i) for i in items}
    gone = suppressed(conn, list(hu.values()) + list(hi.values()))
    if gone:
        bad = [n for n, (u, i, _, _) in enumerate(clean) if hu[u] in gone or hi[i] in gone]
        raise SuppressedSubjectError(bad)
    start = db.lock(conn, "ingest")
    if not clean:
        return IngestResult(0, 0, start + 1, start)
    insert = _insert_ignore(conn)
    values = [
        {"seq": start + 1 + n, "user_id": u, "item_id": i, "value": v, "ts": t}
        for n, (u, i, v, t) in enumerate(clean)
    ]
    for k in range(0, len(values), 20000):
        conn.execute(insert, values[k : k + 20000])
    end = start + len(values)
    conn.execute(sa.update(db.counters).where(db.counters.c.name == "ingest").values(value=end))
    inserted = conn.execute(
        sa.select(sa.func.count()).where(db.interactions.c.seq.between(start + 1, end))
    ).scalar_one()
    append_event(conn, "ingest", rows=len(values), inserted=int(inserted), watermark=end)
    return IngestResult(int(inserted), len(values) - int(inserted), start + 1, end)


def _insert_ignore(conn: Connection):
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(db.interactions).on_conflict_do_nothing(index_elements=["user_id", "item_id"])


def watermark(conn: Connection) -> int:
    return int(
        conn.execute(
            sa.select(db.counters.c.value).where(db.counters.c.name == "ingest")
        ).scalar_one()
    )


def _frame(rows: list) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user", "item", "rating"])


def store_frame(conn: Connection, upto: int) -> pd.DataFrame:
    """The rows now in the store with sequence up to ``upto`` (raw ids as text)."""
    t = db.interactions
    rows = conn.execute(
        sa.select(t.c.user_id, t.c.item_id, t.c.value).where(t.c.seq <= upto).order_by(t.c.seq)
    ).all()
    return _frame(rows)


def held_frame(conn: Connection, upto: int) -> pd.DataFrame:
    """Rows taken out of the store by requests not yet completed, with sequence <= ``upto``."""
    h, r = db.erasure_hold, db.requests
    rows = conn.execute(
        sa.select(h.c.user_id, h.c.item_id, h.c.value)
        .join(r, r.c.id == h.c.request_id)
        .where(h.c.kind == "row", h.c.seq <= upto)
        .where(r.c.state.not_in([State.COMPLETED.value, State.REJECTED.value]))
        .order_by(h.c.seq)
    ).all()
    return _frame(rows)


def as_vocab_ids(values: Iterable[str], vocab: Vocabulary) -> np.ndarray:
    """Stored (text) ids in the vocabulary's own type."""
    values = list(values)
    if vocab.is_integer:
        return np.asarray([int(v) for v in values], dtype=np.int64)
    return np.asarray(values, dtype=object)


def version_data(conn: Connection, upto: int, users: Vocabulary, items: Vocabulary) -> Interactions:
    """The data a version with watermark ``upto`` and these vocabularies stands on now.

    Held rows of users or items the version no longer has are left out: a user (or item)
    leaves a model's vocabulary only when a whole-user (item) deletion was unlearned, which
    forgot every row of theirs, including rows another pending request still holds.
    """
    held = held_frame(conn, upto)
    if len(held):
        known_u = set(as_vocab_text(users))
        known_i = set(as_vocab_text(items))
        held = held[held["user"].isin(known_u) & held["item"].isin(known_i)]
    frame = pd.concat([store_frame(conn, upto), held], ignore_index=True)
    return frame_data(frame, users, items, source="the interaction store")


def as_vocab_text(vocab: Vocabulary) -> list[str]:
    """A vocabulary's ids as the store writes them (text)."""
    return [str(_plain(x)) for x in vocab.ids]


def frame_data(
    frame: pd.DataFrame,
    users: Vocabulary | None = None,
    items: Vocabulary | None = None,
    source: str | None = None,
) -> Interactions:
    frame = frame.copy()
    if users is not None:
        frame["user"] = as_vocab_ids(frame["user"], users)
        frame["item"] = as_vocab_ids(frame["item"], items)  # type: ignore[arg-type]
    else:
        for col in ("user", "item"):
            as_int = pd.to_numeric(frame[col], errors="coerce")
            if as_int.notna().all() and (as_int.astype(str) == frame[col]).all():
                frame[col] = as_int.astype(np.int64)
    return Interactions.from_frame(frame, users=users, items=items, source=source)


__all__ = ["IngestResult", "SuppressedSubjectError", "ingest", "version_data"]
