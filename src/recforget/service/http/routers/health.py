"""GET /healthz (liveness), GET /readyz (database, model, worker), GET /metrics."""

from __future__ import annotations

import time

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from recforget.service.http import deps, reads
from recforget.service.http import schemas as s
from recforget.service.http.tokens import Principal

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=s.Health, summary="Liveness: the process answers")
def healthz() -> s.Health:
    return s.Health(status="ok")


@router.get(
    "/readyz",
    response_model=s.Ready,
    responses={503: {"model": s.Ready}},
    summary="Readiness: database reachable, a verified model loaded, a live worker",
)
def readyz(request: Request) -> JSONResponse:
    st = request.app.state
    checks: dict[str, s.Check] = {}
    beat = None
    try:
        with st.read_engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
            ptr = reads.serving_pointer(conn)
            beat = reads.heartbeat(conn)
        checks["database"] = s.Check(ok=True, detail="reachable")
    except Exception as exc:  # any driver error: not ready
        checks["database"] = s.Check(ok=False, detail=f"unreachable ({type(exc).__name__})")
        ptr = None
    m = st.models.model
    if m is None:
        checks["model"] = s.Check(ok=False, detail=st.models.last_error or "no model loaded")
    else:
        detail = f"version {m.version_id} (generation {m.generation}) loaded and verified"
        if ptr is not None and ptr[0] != m.version_id:
            detail += f"; serving pointer is at version {ptr[0]}, not yet loaded"
            if st.models.last_error:
                detail += f" (refused: {st.models.last_error})"
        checks["model"] = s.Check(ok=True, detail=detail)
    stale = st.settings.heartbeat_stale
    if beat is None or beat["heartbeat_at"] is None:
        checks["worker"] = s.Check(ok=False, detail="no worker heartbeat yet")
    else:
        age = time.time() - beat["heartbeat_at"]
        checks["worker"] = s.Check(
            ok=age <= stale, detail=f"last heartbeat {age:.1f} s ago (stale after {stale:g} s)"
        )
    ready = all(c.ok for c in checks.values())
    return JSONResponse(
        s.Ready(ready=ready, checks=checks).model_dump(), status_code=200 if ready else 503
    )


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}, 401: {"model": s.Error}},
    summary="Prometheus metrics (read scope)",
)
def metrics(request: Request, _who: Principal = Depends(deps.require("read"))) -> Response:
    st = request.app.state
    with st.read_engine.connect() as conn:
        data = st.metrics.render(st.service, st.models, conn)
    return Response(data, media_type="text/plain; version=0.0.4; charset=utf-8")
