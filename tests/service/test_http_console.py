"""The operator console over real HTTP: sign-in, queue, overdue marks, receipt verification."""

# ruff: noqa: F811  (the fixtures come from _http_live)
from __future__ import annotations

import re

import sqlalchemy as sa
from _http_live import GROUND, drain, httpx, live  # noqa: F401


def _submit(c, key, user):
    r = c.post(
        "/v1/deletions",
        json={"users": [user], "legal_ground": GROUND},
        headers={"Idempotency-Key": key},
    )
    assert r.status_code == 202, r.text
    return r.json()["request_id"]


def test_console_needs_an_admin_and_signs_in_with_a_cookie(live):
    with httpx.Client(base_url=live.base) as c:
        r = c.get("/console")
        assert r.status_code == 303 and r.headers["location"] == "/console/login"
        assert "Admin API token" in c.get("/console/login").text
        bad = c.post("/console/login", data={"token": "rf_nope"})
        assert bad.status_code == 401 and "invalid token" in bad.text
        weak = c.post("/console/login", data={"token": live.tokens["crm"]})
        assert weak.status_code == 403 and "admin scope" in weak.text
        ok = c.post("/console/login", data={"token": live.tokens["admin"]})
        assert ok.status_code == 303 and ok.headers["location"] == "/console"
        cookie = ok.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/console" in cookie
        assert c.get("/console").status_code == 200  # the cookie is sent back
        assert c.get("/v1/deletions/00000000-0000-4000-8000-000000000000").status_code == 401
        out = c.post("/console/logout")
        assert out.status_code == 303
        assert c.get("/console").status_code == 303
    with live.client("crm") as c:
        assert c.get("/console").status_code == 403
        assert c.get("/console/versions").status_code == 403
    with live.client("revoked") as c:
        assert c.get("/console").status_code == 401


def test_queue_timeline_receipt_and_versions_pages(live):
    with live.client("admin") as c:
        done = _submit(c, "console-1", "u12")
        assert drain(live) >= 1
        late = _submit(c, "console-2", "u13")  # no worker runs: it stays open
        svc = live.service()
        try:
            # make the second one overdue (its due date in the past), without touching the first
            from recforget.service import db as sdb

            with svc.engine.begin() as conn:
                conn.execute(
                    sa.update(sdb.requests).where(sdb.requests.c.id == late).values(due_at=1.0)
                )
        finally:
            svc.close()
        page = c.get("/console")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        html = page.text
        row = re.search(rf'<tr id="req-{done}" data-state="(\w+)"', html)
        assert row and row.group(1) == "COMPLETED"
        state_of_late = re.search(rf'<tr id="req-{late}" data-state="(\w+)"([^>]*)>', html)
        assert state_of_late.group(1) == "DATA_DELETED"
        assert 'class="overdue"' in state_of_late.group(2) and "OVERDUE" in html
        assert html.count('class="overdue"') == 2  # in the open table and the latest one
        assert "<svg id=latency-chart" in html and "<circle" in html
        assert 'id="count-COMPLETED"' in html
        assert not re.search(r"(?<![0-9a-z])u1[23](?![0-9a-z])", html)  # no raw ids shown
        detail = c.get(f"/console/requests/{done}").text
        for kind in ("received", "data_deleted", "building", "staged", "completed"):
            assert f"<td>{kind}</td>" in detail, kind
        assert "Receipt verified" in detail and 'id="receipt-status" class="ok"' not in detail
        assert "id=receipt-status class=ok" in detail
        versions = c.get("/console/versions").text
        assert re.search(r'<tr id="version-\d+" class=serving><td>\d+</td><td>SERVING', versions)
        assert "(loaded here)" in versions
        assert c.get("/console/requests/not-a-uuid").status_code == 422
        assert c.get("/console?state=NOPE").status_code == 422
        assert c.get("/console?refresh=2").text.count('http-equiv="refresh" content="2"') == 1
    drain(live)


def test_a_tampered_receipt_shows_as_not_verified(live):
    from recforget.service import db as sdb

    with live.client("admin") as c:
        rid = _submit(c, "console-tamper", "u14")
        drain(live)
        st = c.get(f"/v1/deletions/{rid}").json()
        assert st["state"] == "COMPLETED" and st["receipt"]["verified"]
        svc = live.service()
        try:
            R = sdb.receipts
            with svc.engine.begin() as conn:
                body = conn.execute(sa.select(R.c.body).where(R.c.request_id == rid)).scalar()
                forged = body.replace(GROUND, "none given")
                conn.execute(sa.update(R).where(R.c.request_id == rid).values(body=forged))
            detail = c.get(f"/console/requests/{rid}").text
            assert "Receipt does NOT verify" in detail and "hash does not match" in detail
            assert c.get(f"/v1/deletions/{rid}").json()["receipt"]["verified"] is False
        finally:
            with svc.engine.begin() as conn:  # put it back for the other tests of the module
                conn.execute(sa.update(R).where(R.c.request_id == rid).values(body=body))
            svc.close()
        assert c.get(f"/v1/deletions/{rid}").json()["receipt"]["verified"] is True
