"""``audit``: re-verify the service independently from its database and files.

Checks: the receipt and event chains and every receipt's Ed25519 signature; that each
completed request has exactly one receipt and each receipt's fingerprints and model sha256 match
the version it names; that the store holds no row of an erased subject and no erased pair; that
the serving version covers every completed request; and, for the serving version, every file's
sha256, the data it stands on (rebuilt from the store: its fingerprint must be the recorded
one) and its stationarity certificate, recomputed from scratch. Erased rows are not kept, so
older versions' certificates cannot be re-checked; their receipts' signatures and chain can.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from recforget.data.errors import DataError
from recforget.service import db, store, versions
from recforget.service.receipts import verify_chain
from recforget.service.states import State

if TYPE_CHECKING:
    from recforget.service.core import DeletionService


def audit(service: DeletionService, *, tol: float | None = None) -> dict[str, Any]:
    problems: list[str] = []
    checked: dict[str, Any] = {}
    keys = service.keys
    R, Q, V, H = db.receipts, db.requests, db.versions, db.erasure_hold
    with db.read(service.engine) as conn:
        problems += verify_chain(conn)
        checked["receipts"] = conn.execute(sa.select(sa.func.count()).select_from(R)).scalar_one()
        checked["events"] = conn.execute(
            sa.select(sa.func.count()).select_from(db.events)
        ).scalar_one()
        vrows = {v.id: v for v in conn.execute(sa.select(V))}
        by_request = {}
        for row in conn.execute(sa.select(R)):
            body = json.loads(row.body)
            by_request[row.request_id] = (row, body)
            va = vrows.get(body["version_after"])
            where = f"receipt {row.id}"
            if va is None:
                problems.append(f"{where}: names unknown version {body['version_after']}")
                continue
            if va.digest != body["model_sha256_after"]:
                problems.append(f"{where}: model sha256 differs from version {va.id}'s record")
            if va.data_fingerprint != body["data_fingerprint_after"]:
                problems.append(f"{where}: data fingerprint differs from version {va.id}'s")
            if not body.get("certified"):
                problems.append(f"{where}: the unlearner's certificate did not hold")
        completed = conn.execute(sa.select(Q).where(Q.c.state == State.COMPLETED.value)).all()
        for q in completed:
            got = by_request.get(q.id)
            if got is None or got[0].id != q.receipt_id:
                problems.append(f"request {q.id}: COMPLETED without its receipt")
        for rid in set(by_request) - {q.id for q in completed}:
            problems.append(f"receipt for request {rid}, which is not COMPLETED")
        held = conn.execute(
            sa.select(sa.func.count())
            .select_from(H.join(Q, Q.c.id == H.c.request_id))
            .where(Q.c.state.in_([State.COMPLETED.value, State.REJECTED.value]))
        ).scalar_one()
        if held:
            problems.append(f"{held} held row(s) of finished requests were not purged")
        # erased data absent from the store
        suppressed = set(conn.execute(sa.select(db.suppression.c.subject)).scalars())
        erased_pairs = set()
        for q in completed:
            erased_pairs.update(json.loads(q.subjects)["pairs"])
        rows = conn.execute(sa.select(db.interactions.c.user_id, db.interactions.c.item_id)).all()
        users = {u for u, _ in rows}
        items = {i for _, i in rows}
        bad = sum(keys.subject("user", u) in suppressed for u in users)
        bad += sum(keys.subject("item", i) in suppressed for i in items)
        if bad:
            problems.append(f"the store holds rows of {bad} erased subject(s)")
        if erased_pairs:
            n = sum(keys.subject("pair", (u, i)) in erased_pairs for u, i in rows)
            if n:
                problems.append(f"the store holds {n} erased pair(s)")
        checked["store_rows"] = len(rows)
        # the serving version
        s = conn.execute(sa.select(db.serving)).one()
        sv = vrows[s.version_id]
        if sv.status != "serving":
            problems.append(f"serving version {sv.id} has status {sv.status}")
        if sv.covered_count < len(completed) or sv.covered_seq < max(
            [q.seq for q in completed], default=0
        ):
            problems.append(f"serving version {sv.id} does not cover every completed request")
        checked["serving_version"] = sv.id
        try:
            meta, arrays = versions.read_version(
                service.versions_dir / sv.path, json.loads(sv.files)
            )
        except versions.VersionIntegrityError as exc:
            problems.append(str(exc))
        else:
            users_v, items_v = versions.vocabularies(arrays)
            try:
                data = store.version_data(conn, sv.watermark, users_v, items_v)
            except DataError as exc:
                problems.append(
                    f"serving version {sv.id}: the store does not rebuild its data ({exc})"
                )
                return {"ok": False, "problems": problems, "checked": checked}
            if data.fingerprint() != sv.data_fingerprint:
                problems.append(
                    f"serving version {sv.id}: the store does not rebuild its data "
                    "(fingerprint differs)"
                )
            model = versions.build_model(meta, arrays, data)
            if model.model_hash() != sv.model_hash:
                problems.append(f"serving version {sv.id}: model hash differs from its record")
            t = tol
            if t is None:
                t = model.grad_tol if model.grad_tol is not None else 1e-3
            cert = model.certify(tol=t)
            checked["certificate"] = {**cert["certificate"], "certified": cert["certified"]}
            if not cert["certified"]:
                problems.append(
                    f"serving version {sv.id}: certificate recomputed from its files and the "
                    f"store does not hold (max relative gradient "
                    f"{cert['certificate']['max_relative']:.3g} > {t})"
                )
    return {"ok": not problems, "problems": problems, "checked": checked}


__all__ = ["audit"]
