"""The operator console under /console: server-rendered HTML, admin scope, no JavaScript.

A browser signs in once with an admin token (``/console/login`` sets an HttpOnly,
SameSite=Strict cookie scoped to /console); a bearer header works too. Pages: the queue by
state with due dates (overdue ones marked) and a chart of deletion-to-completion latency over
time, one request's timeline and receipt with its verification, and the model versions with
the one that serves. Pages refresh themselves with ``?refresh=SECONDS``.
"""

from __future__ import annotations

import html
import json
import time
from datetime import datetime, timezone
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from recforget.service.http import deps, reads, receipts_view, tokens
from recforget.service.http.errors import ApiError
from recforget.service.http.routers.deletions import UUID
from recforget.service.states import State

router = APIRouter(prefix="/console", tags=["console"], include_in_schema=False)
OPEN = [s.value for s in (State.RECEIVED, State.DATA_DELETED, State.BUILDING, State.STAGED)]
e = html.escape

CSS = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}
nav a{margin-right:1rem} table{border-collapse:collapse;margin:.5rem 0 1.5rem}
td,th{border:1px solid #ccc;padding:.25rem .5rem;font-size:.9rem;text-align:left}
th{background:#f3f3f3} .overdue{background:#fde2e2;font-weight:bold}
.ok{color:#11772b;font-weight:bold} .bad{color:#b00020;font-weight:bold}
.cards span{display:inline-block;border:1px solid #ccc;padding:.4rem .8rem;margin:.2rem}
pre{background:#f7f7f7;padding:.6rem;overflow:auto;max-height:30rem}
.serving{background:#e6f4ea}
"""


def _ts(t: float | None) -> str:
    if t is None:
        return "—"
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _page(title: str, body: str, refresh: int | None = None) -> HTMLResponse:
    meta = f'<meta http-equiv="refresh" content="{int(refresh)}">' if refresh else ""
    return HTMLResponse(
        f"<!doctype html><html lang=en><head><meta charset=utf-8>{meta}"
        f"<title>{e(title)} · recforget console</title><style>{CSS}</style></head><body>"
        '<nav><a href="/console">Queue</a><a href="/console/versions">Model versions</a>'
        '<a href="/docs">API</a><form method=post action="/console/logout" '
        'style="display:inline"><button>Sign out</button></form></nav>'
        f"<h1>{e(title)}</h1>{body}</body></html>"
    )


def _admin(request: Request) -> Response | None:
    """None if the caller is an admin; else the page to answer with."""
    creds = request.headers.get("authorization", "")
    token = creds[7:].strip() if creds.lower().startswith("bearer ") else None
    token = token or request.cookies.get(deps.COOKIE)
    if not token:
        return RedirectResponse("/console/login", status_code=303)
    with request.app.state.read_engine.connect() as conn:
        who = tokens.verify(conn, token)
    if who is None:
        return HTMLResponse(
            '<h1>401: invalid, revoked or expired token</h1><a href="/console/login">Sign in</a>',
            status_code=401,
        )
    if not who.allows("admin"):
        return HTMLResponse("<h1>403: the console needs the admin scope</h1>", status_code=403)
    return None


LOGIN = """<!doctype html><html lang=en><head><meta charset=utf-8><title>Sign in · recforget
console</title><style>{css}</style></head><body><h1>recforget console</h1>{msg}
<form method=post action="/console/login"><label>Admin API token
<input id=token name=token type=password size=70 autocomplete=off></label>
<button id=signin type=submit>Sign in</button></form></body></html>"""


@router.get("/login")
def login_form() -> HTMLResponse:
    return HTMLResponse(LOGIN.format(css=CSS, msg=""))


@router.post("/login")
async def login(request: Request) -> Response:
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    token = (form.get("token") or [""])[0].strip()
    with request.app.state.read_engine.connect() as conn:
        who = tokens.verify(conn, token) if token else None
    if who is None or not who.allows("admin"):
        msg = "invalid token" if who is None else "this token lacks the admin scope"
        page = LOGIN.format(css=CSS, msg=f"<p class=bad id=error>{e(msg)}</p>")
        return HTMLResponse(page, status_code=401 if who is None else 403)
    out = RedirectResponse("/console", status_code=303)
    out.set_cookie(
        deps.COOKIE, token, httponly=True, samesite="strict", path="/console", max_age=8 * 3600
    )
    return out


@router.post("/logout")
def logout() -> Response:
    out = RedirectResponse("/console/login", status_code=303)
    out.delete_cookie(deps.COOKIE, path="/console")
    return out


def _quantile(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(q * (len(v) - 1) + 0.5))]


def latency_svg(series: list[tuple[float, float]], width: int = 640, height: int = 220) -> str:
    """Inline SVG: deletion-to-completion seconds (y) against completion time (x)."""
    if not series:
        return "<p id=latency-chart>No completed requests yet.</p>"
    pad_l, pad_b, pad_t, pad_r = 56, 28, 12, 12
    xs, ys = [t for t, _ in series], [v for _, v in series]
    x0, x1 = min(xs), max(xs)
    y1 = max(ys) * 1.1 or 1.0
    span = (x1 - x0) or 1.0

    def X(t: float) -> float:
        return pad_l + (t - x0) / span * (width - pad_l - pad_r)

    def Y(v: float) -> float:
        return height - pad_b - v / y1 * (height - pad_b - pad_t)

    pts = " ".join(f"{X(t):.1f},{Y(v):.1f}" for t, v in series)
    dots = "".join(f'<circle cx="{X(t):.1f}" cy="{Y(v):.1f}" r="2.5"/>' for t, v in series)
    grid = ""
    for frac in (0, 0.5, 1):
        v = y1 * frac
        grid += (
            f'<line x1="{pad_l}" x2="{width - pad_r}" y1="{Y(v):.1f}" y2="{Y(v):.1f}" '
            f'stroke="#ddd"/><text x="{pad_l - 4}" y="{Y(v) + 4:.1f}" text-anchor="end" '
            f'font-size="11">{v:.3g} s</text>'
        )
    p50, p99 = _quantile(ys, 0.5), _quantile(ys, 0.99)
    return (
        f'<svg id=latency-chart role=img width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>Deletion-to-completion latency of the last {len(series)} completed requests"
        f"</title>{grid}"
        f'<polyline points="{pts}" fill="none" stroke="#4a78c2" stroke-width="1"/>'
        f'<g fill="#1d4f9c">{dots}</g>'
        f'<text x="{pad_l}" y="{height - 8}" font-size="11">{e(_ts(x0))}</text>'
        f'<text x="{width - pad_r}" y="{height - 8}" font-size="11" text-anchor="end">'
        f"{e(_ts(x1))}</text></svg>"
        f"<p>p50 {p50:.3f} s · p99 {p99:.3f} s over {len(ys)} requests</p>"
    )


def _row(r, now: float) -> str:
    overdue = r.state in [*OPEN, State.FAILED.value] and now > r.due_at
    cls = ' class="overdue"' if overdue else ""
    mark = " OVERDUE" if overdue else ""
    return (
        f'<tr id="req-{e(r.id)}" data-state="{e(r.state)}"{cls}>'
        f'<td><a href="/console/requests/{e(r.id)}">{e(r.id)}</a></td><td>{r.seq}</td>'
        f"<td class=state>{e(r.state)}</td><td>{e(r.client)}</td><td>{_ts(r.received_at)}</td>"
        f"<td>{_ts(r.due_at)}{mark}</td><td>{_ts(r.completed_at)}</td>"
        f"<td>{e(r.error or '')}</td></tr>"
    )


HEAD = (
    "<tr><th>Request</th><th>Seq</th><th>State</th><th>Client</th><th>Received</th>"
    "<th>Due</th><th>Completed</th><th>Error</th></tr>"
)


@router.get("", response_class=HTMLResponse)
def queue(
    request: Request,
    state: Annotated[str | None, Query(description="Only this state")] = None,
    refresh: Annotated[int | None, Query(ge=1, le=3600)] = None,
) -> Response:
    if (denied := _admin(request)) is not None:
        return denied
    if state is not None and state not in {s.value for s in State}:
        raise ApiError(422, f"query.state: not a state ({', '.join(s.value for s in State)})")
    svc = request.app.state.service
    q = svc.queue()
    now = time.time()
    with request.app.state.read_engine.connect() as conn:
        open_rows = reads.recent_requests(
            conn,
            states=[state] if state else [*OPEN, State.FAILED.value],
            limit=200,
            open_first=True,
        )
        recent = reads.recent_requests(conn, states=[state] if state else None, limit=100)
        series = reads.completion_series(conn)
        beat = reads.heartbeat(conn)
    m = request.app.state.models.model
    cards = "".join(
        f'<span id="count-{k}"><a href="/console?state={k}">{k}</a>: {v}</span>'
        for k, v in q["by_state"].items()
    )
    serving = (
        f"version {m.version_id} (generation {m.generation})" if m is not None else "none loaded"
    )
    hb = "never" if not beat["heartbeat_at"] else f"{now - beat['heartbeat_at']:.1f} s ago"
    body = (
        f"<div class=cards>{cards}</div><p>This server serves {serving}; worker heartbeat "
        f"{hb}.</p><h2>Open requests by due date</h2><table id=open>{HEAD}"
        + "".join(_row(r, now) for r in open_rows)
        + f"</table><h2>Deletion-to-completion latency</h2>{latency_svg(series)}"
        f"<h2>Latest requests</h2><table id=recent>{HEAD}"
        + "".join(_row(r, now) for r in recent)
        + "</table>"
    )
    return _page("Deletion queue", body, refresh)


@router.get("/requests/{request_id}", response_class=HTMLResponse)
def request_page(
    request: Request,
    request_id: Annotated[str, Path(pattern=UUID)],
    refresh: Annotated[int | None, Query(ge=1, le=3600)] = None,
) -> Response:
    if (denied := _admin(request)) is not None:
        return denied
    with request.app.state.read_engine.connect() as conn:
        r = reads.request_row(conn, request_id)
        if r is None:
            raise ApiError(404, f"no deletion request {request_id}")
        events = reads.events_of(conn, request_id)
        rc = reads.receipt_row(conn, r.receipt_id) if r.receipt_id else None
        problems = receipts_view.check(conn, rc) if rc is not None else None
    now = time.time()
    timeline = "".join(
        f"<tr><td>{_ts(ev['at'])}</td><td>{e(ev['kind'])}</td><td>"
        + e(
            ", ".join(
                f"{k}={v}"
                for k, v in ev.items()
                if k not in ("seq", "kind", "at", "prev", "request_id")
            )
        )
        + "</td></tr>"
        for ev in events
    )
    if rc is None:
        receipt = "<p id=receipt-status>No receipt yet (written when the request completes).</p>"
    else:
        status = (
            "<p id=receipt-status class=ok>Receipt verified: hash chain and Ed25519 signature "
            "check out.</p>"
            if not problems
            else "<p id=receipt-status class=bad>Receipt does NOT verify: "
            + e("; ".join(problems))
            + "</p>"
        )
        receipt = (
            f"{status}<p>Receipt {e(rc.id)} · hash <code>{e(rc.hash)}</code> · key "
            f"<code>{e(rc.key_id)}</code></p><pre id=receipt>"
            + e(json.dumps(json.loads(rc.body), indent=1, sort_keys=True))
            + "</pre>"
        )
    body = (
        f"<table id=summary>{HEAD}{_row(r, now)}</table><p>Legal ground: {e(r.legal_ground)}"
        f" · rows deleted: {r.rows_deleted if r.rows_deleted is not None else '—'}"
        f" · attempts: {r.attempts}"
        + (f" · due extended: {e(r.due_extension_reason)}" if r.due_extension_reason else "")
        + f"</p><h2>Timeline</h2><table id=timeline><tr><th>At</th><th>Event</th>"
        f"<th>Details</th></tr>{timeline}</table><h2>Receipt</h2>{receipt}"
    )
    return _page(f"Request {request_id}", body, refresh)


@router.get("/versions", response_class=HTMLResponse)
def versions_page(request: Request) -> Response:
    if (denied := _admin(request)) is not None:
        return denied
    with request.app.state.read_engine.connect() as conn:
        rows = reads.versions(conn)
        ptr = reads.serving_pointer(conn)
    m = request.app.state.models.model
    out = []
    for v in rows:
        cert = json.loads(v.certificate) if v.certificate else {}
        c = cert.get("certificate") or {}
        maxrel = c.get("max_relative")
        serving = ptr is not None and v.id == ptr[0]
        tags = ("SERVING " if serving else "") + (
            "(loaded here)" if m is not None and m.version_id == v.id else ""
        )
        out.append(
            f'<tr id="version-{v.id}"{" class=serving" if serving else ""}><td>{v.id}</td>'
            f"<td>{e(tags)}</td><td>{e(v.status)}</td><td>{e(v.method)}</td>"
            f"<td>{v.parent_id if v.parent_id is not None else '—'}</td>"
            f"<td>{v.covered_count}</td><td>{v.watermark}</td>"
            f"<td>{'—' if maxrel is None else f'{maxrel:.2e}'}</td>"
            f"<td><code>{e(v.digest[:16])}</code></td><td>{_ts(v.created_at)}</td></tr>"
        )
    body = (
        "<table id=versions><tr><th>Version</th><th>Serving</th><th>Status</th><th>Method</th>"
        "<th>Parent</th><th>Requests covered</th><th>Data watermark</th>"
        "<th>Certificate (max rel. gradient)</th><th>sha256</th><th>Created</th></tr>"
        + "".join(out)
        + "</table>"
    )
    if request.app.state.models.last_error:
        body += f"<p class=bad>Last refused load: {e(request.app.state.models.last_error)}</p>"
    return _page("Model versions", body)
