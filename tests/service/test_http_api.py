"""The HTTP API over real HTTP on loopback (uvicorn in a subprocess), SQLite and PostgreSQL."""

# ruff: noqa: F811  (the fixtures come from _http_live)

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import threading

import pytest
import sqlalchemy as sa
from _http_live import (  # noqa: F401
    CLI,
    GROUND,
    SQLITE_THEN_SLOW_PG,
    drain,
    fresh_live,
    httpx,
    live,
    wait_for,
)

RAW_USER = re.compile(r"(?<![0-9a-z])u[0-9]+(?![0-9a-z])")
UUID0 = "00000000-0000-4000-8000-000000000000"


def deletion(c, key, users=(), pairs=(), items=(), ground=GROUND):
    body = {"users": list(users), "items": list(items), "legal_ground": ground}
    body["pairs"] = [{"user": u, "item": i} for u, i in pairs]
    return c.post("/v1/deletions", json=body, headers={"Idempotency-Key": key})


def test_health_docs_and_public_key(live):
    with live.client() as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        docs = c.get("/docs")
        assert docs.status_code == 200 and "swagger" in docs.text.lower()
        paths = set(c.get("/openapi.json").json()["paths"])
        assert {
            "/v1/deletions",
            "/v1/deletions/{request_id}",
            "/v1/receipts/{receipt_id}",
            "/v1/public-key",
            "/v1/recommendations/{user}",
            "/v1/interactions",
            "/healthz",
            "/readyz",
            "/metrics",
        } <= paths
        svc = live.service()
        try:
            assert c.get("/v1/public-key").json() == svc.public_key()
        finally:
            svc.close()


PROTECTED = [
    ("POST", "/v1/deletions", "submit"),
    ("GET", f"/v1/deletions/{UUID0}", "read"),
    ("GET", f"/v1/receipts/{UUID0}", "read"),
    ("GET", "/v1/recommendations/u1", "read"),
    ("POST", "/v1/interactions", "submit"),
    ("GET", "/metrics", "read"),
]


def test_every_protected_endpoint_needs_a_token_with_its_scope(live):
    body = {"users": ["u1"], "legal_ground": GROUND}
    for method, path, scope in PROTECTED:
        kw = {}
        if method == "POST":
            kw = {"json": body, "headers": {"Idempotency-Key": "auth-probe"}}
        with live.client() as c:
            r = c.request(method, path, **kw)
            assert r.status_code == 401, (path, r.text)
            assert r.headers["www-authenticate"].startswith("Bearer")
            assert "bearer token" in r.json()["error"]
            for bad in ("nonsense", live.tokens["admin"][:-2] + "xx", live.tokens["revoked"]):
                h = {**kw.get("headers", {}), "Authorization": f"Bearer {bad}"}
                r = c.request(method, path, **{**kw, "headers": h})
                assert r.status_code == 401, (path, bad[:8], r.text)
                assert "invalid, revoked or expired" in r.json()["error"]
        wrong = "reader" if scope == "submit" else "submitter"
        with live.client(wrong) as c:
            r = c.request(method, path, **kw)
            assert r.status_code == 403, (path, r.text)
            assert f"'{scope}' scope" in r.json()["error"]
    # nothing was submitted by any of the refused calls
    with live.client("admin") as c:
        metrics = c.get("/metrics").text
    assert 'recforget_deletion_requests{state="RECEIVED"} 0.0' in metrics


@pytest.mark.parametrize("live", SQLITE_THEN_SLOW_PG, indirect=True)
def test_tokens_created_and_revoked_by_the_cli(live):
    from recforget.service.http import tokens

    env = {**os.environ, "RECFORGET_SERVICE_HOME": ""}
    home = ["--home", str(live.home)]
    made = subprocess.run(
        [*CLI, "service", "keys", "create", *home, "--client", "cli", "--scope", "read", "--json"],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    new = json.loads(made.stdout)
    assert new["scopes"] == ["read"] and new["token"].startswith(f"rf_{new['id']}_")
    auth = {"Authorization": f"Bearer {new['token']}"}
    with httpx.Client(base_url=live.base, headers=auth) as c:
        assert c.get(f"/v1/deletions/{UUID0}").status_code == 404  # valid token: not found
        assert c.post("/v1/interactions", json={"interactions": []}).status_code == 403
        subprocess.run(
            [*CLI, "service", "keys", "revoke", *home, new["id"]],
            check=True,
            capture_output=True,
            env=env,
        )
        assert c.get(f"/v1/deletions/{UUID0}").status_code == 401  # at once
    svc = live.service()
    try:
        listed = json.dumps(tokens.listing(svc.engine))
        rows = {r["id"]: r for r in tokens.listing(svc.engine)}
        with svc.engine.connect() as conn:
            stored = conn.execute(sa.select(tokens.api_tokens.c.secret_sha256)).scalars().all()
    finally:
        svc.close()
    assert rows[new["id"]]["revoked_at"] is not None and rows[new["id"]]["client"] == "cli"
    secret = new["token"].split("_", 2)[2]
    assert secret not in listed and "secret" not in listed  # only its hash is stored
    assert hashlib.sha256(secret.encode()).hexdigest() in stored
    assert not any(secret in x for x in stored)


def test_deletion_end_to_end_over_http(live):
    from recforget.service.receipts import canonical, chain_hash, verify_signature

    with live.client("crm") as c:
        before = c.get("/v1/recommendations/u3", params={"k": 5})
        assert before.status_code == 200 and len(before.json()["items"]) == 5
        r = deletion(c, "e2e-1", users=["u3"])
        assert r.status_code == 202, r.text
        ack = r.json()
        assert ack["state"] == "DATA_DELETED" and r.headers["location"] == ack["status_url"]
        assert ack["due_at"] - ack["received_at"] == pytest.approx(30 * 86400)
        st = c.get(ack["status_url"]).json()
        assert st["state"] == "DATA_DELETED" and st["receipt"] is None and not st["overdue"]
        # erased from the store at once: no recommendations, and ingest refuses the user
        gone = c.get("/v1/recommendations/u3")
        assert gone.status_code == 404 and gone.json()["reason"] == "forgotten"
        assert "erased" in gone.json()["error"]
        back = c.post(
            "/v1/interactions",
            json={"interactions": [{"user": "u5", "item": "i1"}, {"user": "u3", "item": "i2"}]},
        )
        assert back.status_code == 409
        assert [f["field"] for f in back.json()["fields"]] == ["body.interactions[1]"]
        assert drain(live) >= 1
        st = c.get(ack["status_url"]).json()
        assert st["state"] == "COMPLETED" and st["receipt"]["verified"]
        rc = c.get(f"/v1/receipts/{st['receipt_id']}").json()
        assert rc == st["receipt"]
        # anyone can check it with the published key
        key = c.get("/v1/public-key").json()
        body = rc["receipt"]
        assert chain_hash(body["prev_hash"], canonical(body)) == rc["hash"]
        assert verify_signature(key["public_key"], rc["hash"], rc["signature"])
        assert body["request_id"] == ack["request_id"] and body["certified"]
        # the server notices the new generation, verifies it and serves it
        now = wait_for(
            lambda: (x := c.get("/v1/recommendations/u4").json())["version"] > 1 and x,
            what="the new version to be served",
        )
        assert now["version"] == body["version_after"]
        assert c.get("/v1/recommendations/u3").json()["reason"] == "forgotten"
        ok = c.post("/v1/interactions", json={"interactions": [{"user": "n1", "item": "i1"}]})
        assert ok.status_code == 200 and ok.json()["inserted"] == 1
    # other clients do not see this client's requests or receipts; an admin does
    with live.client("submitter") as c2, live.client("admin") as adm:
        other = live.client("reader")  # same client "crm": sees it
        assert other.get(ack["status_url"]).status_code == 200
        other.close()
        assert adm.get(ack["status_url"]).status_code == 200
        assert adm.get(f"/v1/receipts/{rc['receipt_id']}").status_code == 200
        assert c2.get("/healthz").status_code == 200
    with httpx.Client(base_url=live.base, headers={"Authorization": "Bearer x"}) as anon:
        assert anon.get(ack["status_url"]).status_code == 401


def test_idempotency_keys(live):
    with live.client("crm") as c:
        a = deletion(c, "idem-1", pairs=[("u6", "i0"), ("u6", "i1")])
        assert a.status_code == 202 and "idempotent-replayed" not in a.headers
        b = deletion(c, "idem-1", pairs=[("u6", "i1"), ("u6", "i0")])  # same body, reordered
        assert b.status_code == 202 and b.headers["idempotent-replayed"] == "true"
        assert b.content == a.content
        c3 = deletion(c, "idem-1", users=["u6"])
        assert c3.status_code == 422
        assert c3.json()["fields"][0]["field"] == "header Idempotency-Key"
        assert "different request body" in c3.json()["error"]
        missing = c.post("/v1/deletions", json={"users": ["u6"], "legal_ground": GROUND})
        assert missing.status_code == 422 and "header Idempotency-Key" in missing.json()["error"]
    with live.client("submitter") as other:  # another client's key space
        d = deletion(other, "idem-1", pairs=[("u6", "i0"), ("u6", "i1")])
        assert d.status_code == 202 and d.json()["request_id"] != a.json()["request_id"]
    drain(live)
    with live.client("crm") as c:  # still the stored acknowledgement after completion
        again = deletion(c, "idem-1", pairs=[("u6", "i0"), ("u6", "i1")])
        assert again.status_code == 202 and again.content == a.content


def test_a_retry_while_the_first_is_in_progress_is_409(fresh_live):
    live = fresh_live(env={"RECFORGET_FAULTS": "submit.after_commit=sleep:2"})
    first: dict = {}

    def submit_first():
        with live.client("crm") as c:
            first["r"] = deletion(c, "slow", users=["u7"])

    t = threading.Thread(target=submit_first)
    t.start()
    svc = live.service()
    try:
        wait_for(lambda: svc.find("crm", "slow"), what="the first request's commit")
    finally:
        svc.close()
    with live.client("crm") as c:
        r = deletion(c, "slow", users=["u7"])
        assert r.status_code == 409, r.text
        assert r.headers["retry-after"] == "1" and "in progress" in r.json()["error"]
        assert deletion(c, "slow", users=["u8"]).status_code == 422  # other body: still 422
        t.join(30)
        assert first["r"].status_code == 202
        replay = deletion(c, "slow", users=["u7"])
        assert replay.status_code == 202 and replay.content == first["r"].content


BAD = [
    ({"users": ["u1"]}, "body.legal_ground"),
    ({"users": ["u1"], "legal_ground": "  "}, "body.legal_ground"),
    ({"users": [True], "legal_ground": GROUND}, "body.users[0]"),
    ({"users": [1.5], "legal_ground": GROUND}, "body.users[0]"),
    ({"users": [""], "legal_ground": GROUND}, "body.users[0]"),
    ({"pairs": [{"user": "u1"}], "legal_ground": GROUND}, "body.pairs[0].item"),
    ({"pairs": [["u1", "i1"]], "legal_ground": GROUND}, "body.pairs[0]"),
    ({"users": "u1", "legal_ground": GROUND}, "body.users"),
    ({"userz": ["u1"], "legal_ground": GROUND}, "body.userz"),
    ({"legal_ground": GROUND}, "body.users"),
    ({"users": [f"x{n}" for n in range(1001)], "legal_ground": GROUND}, "body.users"),
]


def test_every_bad_input_is_a_4xx_naming_the_field(live):
    with live.client("admin") as c:
        for n, (body, field) in enumerate(BAD):
            r = c.post("/v1/deletions", json=body, headers={"Idempotency-Key": f"bad-{n}"})
            assert r.status_code == 422, (body, r.text)
            assert field in r.json()["error"], (field, r.json())
            assert field in [f["field"] for f in r.json()["fields"]]
        r = c.post(
            "/v1/deletions",
            content=b'{"users": [',
            headers={"Idempotency-Key": "bad-json", "Content-Type": "application/json"},
        )
        assert r.status_code == 422 and r.json()["fields"][0]["field"] == "body"
        long_key = deletion(c, "k" * 201, users=["u1"])
        assert long_key.status_code == 422 and "header Idempotency-Key" in long_key.text
        for params, field in (({"k": 0}, "query.k"), ({"k": "ten"}, "query.k")):
            r = c.get("/v1/recommendations/u1", params=params)
            assert r.status_code == 422 and field in r.json()["error"]
        r = c.get("/v1/recommendations/u1", params={"k": 5000})
        assert r.status_code == 422 and "query.k" in r.json()["error"]
        r = c.get("/v1/recommendations/nobody-at-all")
        assert r.status_code == 404 and r.json()["reason"] == "unknown"
        for path in ("/v1/deletions/not-a-uuid", "/v1/receipts/not-a-uuid"):
            r = c.get(path)
            assert r.status_code == 422 and "path." in r.json()["error"]
        assert c.get(f"/v1/deletions/{UUID0}").status_code == 404
        assert c.get(f"/v1/receipts/{UUID0}").status_code == 404
        for body, field in (
            ({"interactions": []}, "body.interactions"),
            ({"interactions": [{"user": "u1"}]}, "body.interactions[0].item"),
            ({"interactions": [{"user": "u1", "item": "i1", "value": "x"}]}, "value"),
            ({"rows": []}, "body.interactions"),
        ):
            r = c.post("/v1/interactions", json=body)
            assert r.status_code == 422 and field in r.json()["error"], (body, r.text)
        nan = c.post(
            "/v1/interactions",
            content=b'{"interactions": [{"user": "u1", "item": "i1", "value": NaN}]}',
            headers={"Content-Type": "application/json"},
        )
        assert nan.status_code == 422 and "body.interactions[0].value" in nan.json()["error"]
        assert c.get("/no/such/route").status_code == 404
        assert c.delete("/v1/deletions").status_code == 405


def test_body_limit_holds_with_and_without_content_length(live):
    big = json.dumps({"users": ["x" * 100] * 1000, "legal_ground": GROUND}).encode()
    assert len(big) > 65536
    with live.client("admin") as c:
        r = c.post(
            "/v1/deletions",
            content=big,
            headers={"Idempotency-Key": "big-1", "Content-Type": "application/json"},
        )
        assert r.status_code == 413 and r.json()["fields"][0]["field"] == "body"

    def chunks():
        for k in range(0, len(big), 4096):
            yield big[k : k + 4096]

    with live.client("admin") as c:
        r = c.post(
            "/v1/deletions",
            content=chunks(),
            headers={"Idempotency-Key": "big-2", "Content-Type": "application/json"},
        )
        assert r.request.headers.get("transfer-encoding") == "chunked"
        assert "content-length" not in r.request.headers
        assert r.status_code == 413 and "larger than 65536 bytes" in r.json()["error"]
    with live.client("admin") as c:  # a small chunked body is fine
        small = json.dumps({"users": ["u9"], "legal_ground": GROUND}).encode()
        r = c.post(
            "/v1/deletions",
            content=iter([small[:10], small[10:]]),
            headers={"Idempotency-Key": "small-chunked", "Content-Type": "application/json"},
        )
        assert r.status_code == 202, r.text
    svc = live.service()
    try:
        assert svc.find("ops", "big-1") is None and svc.find("ops", "big-2") is None
    finally:
        svc.close()


def test_readyz_metrics_and_no_raw_ids(live):
    with live.client("admin") as c:
        assert c.get("/v1/recommendations/u20").status_code == 200
        deletion(c, "metrics-1", users=["u10"])
        ready = c.get("/readyz")
        body = ready.json()
        assert body["checks"]["database"]["ok"] and body["checks"]["model"]["ok"]
        svc = live.service()
        w = svc.worker()
        w.release()  # no-op: not held
        assert w.acquire()  # a live worker's heartbeat
        try:
            r = c.get("/readyz")
            assert r.status_code == 200 and r.json()["ready"], r.text
        finally:
            w.release()
            svc.close()
        drain(live)
        text = c.get("/metrics").text
    for name in (
        "recforget_deletion_requests",
        "recforget_queue_depth",
        "recforget_oldest_pending_age_seconds",
        "recforget_earliest_due_in_seconds",
        "recforget_oldest_pending_due_fraction",
        "recforget_batch_build_seconds_count",
        "recforget_batch_size_count",
        "recforget_deletion_completion_seconds_count",
        "recforget_http_requests_total",
        "recforget_serving_generation",
        "recforget_worker_heartbeat_age_seconds",
    ):
        assert name in text, name
    completed = re.search(r'recforget_deletion_requests\{state="COMPLETED"\} (\S+)', text)
    assert float(completed.group(1)) >= 1
    assert re.search(r"recforget_batch_build_seconds_count (\S+)", text).group(1) != "0.0"
    assert 'route="/v1/recommendations/{user}"' in text
    assert not RAW_USER.findall(text)
    # nothing the server logged names a raw user id (paths are logged as templates)
    log = live.log_text()
    assert "GET /v1/recommendations/{user} 200" in log
    assert not RAW_USER.findall(log), RAW_USER.findall(log)[:5]


@pytest.mark.parametrize("fresh_live", SQLITE_THEN_SLOW_PG, indirect=True)
def test_a_damaged_new_version_is_refused_and_the_old_one_keeps_serving(fresh_live):
    import sqlalchemy as sa

    from recforget.service import db as sdb
    from recforget.service.http.reads import read_engine

    live = fresh_live()
    with live.client("admin") as c:
        assert c.get("/v1/recommendations/u2").json()["version"] == 1
        assert deletion(c, "dmg", users=["u11"]).status_code == 202
        svc = live.service()
        errors: list = []

        def run_worker():
            os.environ["RECFORGET_FAULTS"] = "complete.after_switch=sleep:1.5"
            try:
                drain(live)
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)
            finally:
                os.environ.pop("RECFORGET_FAULTS", None)

        t = threading.Thread(target=run_worker)
        t.start()
        try:
            V = sdb.versions

            reader = read_engine(live.url)  # sees commits while the worker holds the lock

            def staged_path():
                with reader.connect() as conn:
                    return conn.execute(sa.select(V.c.path).where(V.c.status == "staged")).scalar()

            staged = wait_for(staged_path, what="the staged version")
            path = svc.versions_dir / staged / "arrays.npz"
            raw = bytearray(path.read_bytes())
            raw[len(raw) // 2] ^= 0xFF
            path.write_bytes(bytes(raw))
            t.join(30)
        finally:
            svc.close()
            reader.dispose()
        assert not errors
        ready = wait_for(
            lambda: "refused" in (x := c.get("/readyz").json())["checks"]["model"]["detail"] and x,
            what="the refused load",
        )
        assert "sha256" in ready["checks"]["model"]["detail"]
        r = c.get("/v1/recommendations/u2")
        assert r.status_code == 200 and r.json()["version"] == 1  # the old one still serves
        assert "recforget_model_load_failures_total 1.0" in c.get("/metrics").text
        assert "model load refused" in live.log_text()
