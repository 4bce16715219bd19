"""The service core against a real database (SQLite file; PostgreSQL over a socket)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import sqlalchemy as sa

from recforget import DeletionRequest
from recforget.service import (
    DeletionService,
    IdempotencyConflict,
    LeaseLost,
    State,
    SuppressedSubjectError,
    VersionIntegrityError,
    WorkerConfig,
)
from recforget.service import db as sdb
from recforget.service.receipts import chain_hash, verify_signature

GROUND = "GDPR Art. 17(1)(b)"
FAST = WorkerConfig(window=0.0, poll=0.01)


@pytest.fixture
def svc(tmp_path, db_url, tiny_model):
    s = DeletionService.init(tmp_path / "home", tiny_model, url=db_url)
    yield s
    s.close()


def _drain(svc, config=FAST):
    w = svc.worker(config)
    n = w.run(idle_exit=0.05)
    return n


def _all_text(svc) -> str:
    """Everything the service wrote to its ledger, receipts, events, versions, suppression."""
    out = []
    with svc.engine.connect() as conn:
        for t in (sdb.requests, sdb.receipts, sdb.events, sdb.versions, sdb.suppression):
            out += [json.dumps([str(v) for v in row]) for row in conn.execute(sa.select(t))]
    return "\n".join(out)


def test_user_erasure_end_to_end(svc, tiny_model):
    sub = svc.submit("crm", "k-1", DeletionRequest(users=["u3"]), GROUND)
    assert sub.state == State.DATA_DELETED.value and not sub.replay
    assert sub.due_at - sub.received_at == pytest.approx(30 * 86400)
    assert _drain(svc) == 1
    st = svc.status(sub.request_id)
    assert st["state"] == "COMPLETED" and st["attempts"] == 1
    rc = st["receipt"]
    body = rc["receipt"]
    # the signature verifies with the published key, over the chain hash of the body
    key = svc.public_key()
    assert rc["key_id"] == key["key_id"]
    assert verify_signature(key["public_key"], rc["hash"], rc["signature"])
    with svc.engine.connect() as conn:
        text = conn.execute(sa.select(sdb.receipts.c.body)).scalar_one()
    assert chain_hash(body["prev_hash"], text) == rc["hash"]
    assert not verify_signature(key["public_key"], "0" * 64, rc["signature"])
    assert body["certified"] and body["certificate"]["max_relative"] <= 1e-3
    assert body["version_before"] == 1 and body["version_after"] == 2
    assert body["model_sha256_before"] != body["model_sha256_after"]
    expected = tiny_model.seen_.remove(users=["u3"]).data
    assert body["data_fingerprint_after"] == expected.fingerprint()
    counts = tiny_model.seen_.user_counts()
    assert body["rows_deleted"] == int(counts[tiny_model.users_.index(["u3"])[0]])
    # the serving model no longer knows the user, and stands certified on the remaining data
    info, model = svc.load_version()
    assert info["id"] == 2 and "u3" not in model.users_
    assert model.seen_.fingerprint() == expected.fingerprint()
    assert model.certify(tol=1e-3)["certified"]
    # the store holds none of it and refuses it back; other data is welcome
    with pytest.raises(SuppressedSubjectError, match="row"):
        svc.ingest([("u3", "i1", 1.0), ("u5", "i0", 1.0)])
    got = svc.ingest([("new-user", "i1", 1.0), ("u0", "i0", 1.0)])
    assert got.inserted + got.duplicates == 2
    # no raw id anywhere in what the service wrote
    text = _all_text(svc)
    leaked = sorted(set(re.findall(r"(?<![0-9a-z])u[0-9]+(?![0-9a-z])", text)))
    assert leaked == [], leaked
    report = svc.audit()
    assert report["ok"], report["problems"]


def test_idempotency_keys(svc):
    req = DeletionRequest(pairs=[("u1", "i2"), ("u4", "i4")])
    a = svc.submit("crm", "same", req, GROUND, apply=False)
    b = svc.submit("crm", "same", DeletionRequest(pairs=[("u4", "i4"), ("u1", "i2")]), GROUND)
    assert b.replay and b.request_id == a.request_id and b.seq == a.seq
    with pytest.raises(IdempotencyConflict, match="different request"):
        svc.submit("crm", "same", DeletionRequest(users=["u1"]), GROUND)
    other = svc.submit("other-client", "same", req, GROUND, apply=False)
    assert other.request_id != a.request_id
    assert len(svc.requests()) == 2
    with pytest.raises(ValueError, match="legal ground"):
        svc.submit("crm", "k", req, " ")
    with pytest.raises(ValueError, match="names no"):
        svc.submit("crm", "k", DeletionRequest(), GROUND)


def test_one_pass_serves_a_batch_and_chains_receipts(svc, tiny_model):
    data = tiny_model.seen_
    frame = data.to_frame()
    pairs = [tuple(x) for x in frame[["user", "item"]].to_numpy()[[0, 7, 30]]]
    ids = [
        svc.submit("crm", f"k{n}", DeletionRequest(pairs=[p]), GROUND).request_id
        for n, p in enumerate(pairs)
    ]
    ids.append(svc.submit("crm", "ku", DeletionRequest(users=["u9"]), GROUND).request_id)
    assert _drain(svc) == 4
    bodies = [svc.status(r)["receipt"]["receipt"] for r in ids]
    assert {b["batch"]["size"] for b in bodies} == {4}
    assert len({b["version_after"] for b in bodies}) == 1
    assert [b["receipt_seq"] for b in bodies] == [1, 2, 3, 4]
    assert bodies[1]["prev_hash"] == svc.status(ids[0])["receipt"]["hash"]
    expected = data.remove(pairs=[p for p in pairs if p[0] != "u9"], users=["u9"]).data
    assert bodies[0]["data_fingerprint_after"] == expected.fingerprint()
    assert svc.serving()["covered_count"] == 4
    assert svc.audit()["ok"]


def test_unknown_subject_and_legal_hold_are_rejected_with_the_reason(svc):
    a = svc.submit("crm", "k1", DeletionRequest(users=["nobody"]), GROUND)
    assert a.state == "REJECTED"
    assert "unknown subject" in svc.status(a.request_id)["error"]
    svc.add_legal_hold("user", "u2", "litigation 2026-17")
    b = svc.submit("crm", "k2", DeletionRequest(users=["u2"]), GROUND)
    assert b.state == "REJECTED"
    assert "litigation 2026-17" in svc.status(b.request_id)["error"]
    svc.ingest([("u2", "new-item", 1.0)])  # a held subject is not suppressed
    assert _drain(svc) == 0
    assert svc.audit()["ok"]


def test_a_damaged_version_is_never_loaded_or_served(svc):
    path = svc.versions_dir / svc.serving()["path"] / "arrays.npz"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(VersionIntegrityError, match=r"arrays\.npz has sha256"):
        svc.load_version()
    report = svc.audit()
    assert not report["ok"] and any("arrays.npz" in p for p in report["problems"])
    sub = svc.submit("crm", "k", DeletionRequest(users=["u1"]), GROUND)
    w = svc.worker(FAST)
    assert w.run(max_batches=1, idle_exit=0.05) == 0  # the batch fails, nothing activated
    st = svc.status(sub.request_id)
    assert st["state"] == "DATA_DELETED" and st["attempts"] == 0  # the claim rolled back
    assert svc.serving()["id"] == 1


def test_retrain_from_store_respects_suppression(svc, tiny_model):
    svc.submit("crm", "k", DeletionRequest(users=["u5"]), GROUND)
    svc.ingest([("fresh", "i1", 1.0), ("fresh", "i2", 1.0)])
    vid = svc.retrain(FAST)
    info, model = svc.load_version(vid)
    assert info["method"] == "retrain-from-store"
    assert "u5" not in model.users_ and "fresh" in model.users_
    assert svc.queue()["by_state"]["COMPLETED"] == 1
    assert model.certify(tol=1e-3)["certified"]
    assert svc.audit()["ok"]


def test_audit_detects_a_tampered_receipt(svc):
    svc.submit("crm", "k", DeletionRequest(users=["u1"]), GROUND)
    svc.submit("crm", "k2", DeletionRequest(users=["u2"]), GROUND)
    _drain(svc)
    assert svc.audit()["ok"]
    with svc.engine.begin() as conn:
        first = sdb.receipts.c.seq == 1
        body = json.loads(conn.execute(sa.select(sdb.receipts.c.body).where(first)).scalar_one())
        body["legal_ground"] = "none"
        conn.execute(sa.update(sdb.receipts).where(first).values(body=json.dumps(body)))
    problems = svc.audit()["problems"]
    assert any("receipt 1" in p and "hash" in p for p in problems)


def test_a_worker_past_its_lease_is_fenced_off(svc):
    svc.submit("crm", "k", DeletionRequest(users=["u1"]), GROUND)
    a = svc.worker(WorkerConfig(window=0.0, lease_seconds=0.3))
    assert a.acquire()
    b = svc.worker(WorkerConfig(window=0.0, lease_seconds=30))
    assert not b.acquire()  # held
    import time

    time.sleep(0.4)
    assert b.acquire() and b.token == a.token + 1
    with pytest.raises(LeaseLost):
        a.run_batch()
    assert b.run(idle_exit=0.05) == 1
    assert svc.queue()["by_state"]["COMPLETED"] == 1
    assert svc.audit()["ok"]


def test_due_date_extension_and_export(svc):
    sub = svc.submit("crm", "k", DeletionRequest(users=["u1"]), GROUND)
    due = svc.extend_due(sub.request_id, 30, "complex request (Art. 12(3))")
    assert due == pytest.approx(sub.due_at + 30 * 86400)
    with pytest.raises(ValueError, match="at most"):
        svc.extend_due(sub.request_id, 45, "again")
    _drain(svc)
    lines = list(svc.export(receipts=True))
    assert [x["type"] for x in lines] == ["request", "receipt"]
    assert lines[0]["due_extension_reason"].startswith("complex")
    assert not re.findall(r"(?<![0-9a-z])u[0-9]+(?![0-9a-z])", json.dumps(lines))


def test_versions_never_keep_a_copy_of_the_store(svc):
    names = sorted(p.name for p in (svc.versions_dir / svc.serving()["path"]).iterdir())
    assert names == ["arrays.npz", "model.json"]
    with np.load(svc.versions_dir / svc.serving()["path"] / "arrays.npz") as npz:
        assert not any(k.startswith("data_") for k in npz.files)


def test_errors_that_may_quote_ids_are_kept_out_of_the_ledger():
    from recforget.data.errors import DataError
    from recforget.service.worker import safe_error

    assert safe_error(DataError("duplicate interaction (user u7, item i3)")) == (
        "DataError (message withheld: it may name raw ids)"
    )
    assert "arrays.npz" in safe_error(VersionIntegrityError("version v: arrays.npz is missing"))


def test_readers_see_one_snapshot_and_do_not_block_writers(svc):
    t = sdb.interactions
    count = sa.select(sa.func.count()).select_from(t)
    with sdb.read(svc.engine) as conn:
        before = conn.execute(count).scalar_one()
        svc.ingest([("late-user", "i0", 1.0)])  # commits while the read transaction is open
        assert conn.execute(count).scalar_one() == before
    with sdb.read(svc.engine) as conn:
        assert conn.execute(count).scalar_one() == before + 1


def test_a_user_erased_while_another_request_holds_one_of_their_rows(svc, tiny_model):
    # the pair's request takes (u1, item) out of the store first, then the whole user is
    # unlearned in an earlier batch: the version forgot that row too, and says so
    item = tiny_model.seen_.to_frame().query("user == 'u1'")["item"].iloc[0]
    user_req = svc.submit("crm", "k-user", DeletionRequest(users=["u1"]), GROUND, apply=False)
    pair_req = svc.submit("crm", "k-pair", DeletionRequest(pairs=[("u1", item)]), GROUND)
    assert pair_req.state == "DATA_DELETED"
    w = svc.worker(WorkerConfig(window=0.0, poll=0.01, batch_size=1))
    assert w.run(max_batches=1, idle_exit=0.05) == 1
    assert svc.status(user_req.request_id)["state"] == "COMPLETED"
    assert svc.status(pair_req.request_id)["state"] == "DATA_DELETED"
    report = svc.audit()
    assert report["ok"], report["problems"]
    _, model = svc.load_version()
    assert "u1" not in model.users_
    assert _drain(svc) == 1
    assert svc.status(pair_req.request_id)["state"] == "COMPLETED"
    assert svc.audit()["ok"]
