"""GET /v1/recommendations/{user}: top-k from the serving version held in memory.

The hot read path: the token check (a cached verification: one indexed read of the
revocation counter), the two indexed reads (the user's stored items; the suppression of the
user and the candidates), a dot product and a partial sort over the catalogue, well under a
millisecond in all. On SQLite the reads are calls into a local file that never wait for a
writer (WAL, ``query_only``), so the ``async`` route does it all on the event loop: a hop to
the thread pool costs about as much again (a second thread to wake, which must then win the
GIL from the loop), and more under load. On a database across a socket (PostgreSQL) each
read is a round trip, which must not hold the loop, so there the work runs in one hop to
the thread pool. The JSON is built directly; the schema documents its shape.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from recforget.service.http import deps, reads
from recforget.service.http import schemas as s
from recforget.service.http.errors import ApiError

router = APIRouter(prefix="/v1", tags=["recommendations"])


@router.get(
    "/recommendations/{user}",
    response_model=s.Recommendations,
    responses={
        401: {"model": s.Error},
        403: {"model": s.Error},
        404: {"model": s.Error, "description": "Unknown user, or one whose data was erased"},
        422: {"model": s.Error},
        503: {"model": s.Error},
    },
    summary="Top-k items for a user (never an erased user or item)",
)
async def recommend(
    request: Request,
    user: Annotated[str, Path(min_length=1, max_length=200)],
    k: Annotated[int, Query(ge=1, description="How many items")] = 10,
    token: str = Depends(deps.bearer),
) -> JSONResponse:
    state = request.app.state
    if state.reads_inline:
        return JSONResponse(_recommend(state, token, user, k))
    return JSONResponse(await run_in_threadpool(_recommend, state, token, user, k))


def _recommend(state, token: str, user: str, k: int) -> dict:
    deps.authorize(deps.authenticate(state, token), "read")
    if k > state.settings.max_k:
        raise ApiError(
            422, f"query.k: at most {state.settings.max_k}", fields=[("query.k", "too large")]
        )
    model = state.models.model
    if model is None:
        raise ApiError(503, "no model version is loaded yet")
    keys = state.service.keys
    me = keys.subject("user", user)
    u = model.user_index(user)
    with state.read_engine.connect() as conn:
        if u < 0:
            if reads.suppressed(conn, [me]):
                raise _forgotten()
            raise ApiError(
                404, "unknown user: the serving model has no such user", reason="unknown"
            )
        top, scores = model.recommend(u, k + 16, reads.user_items(conn, user))
        ids = [model.item_ids[t] for t in top.tolist()]
        hashes = {i: keys.subject("item", i) for i in ids}
        gone = reads.suppressed(conn, [me, *hashes.values()])  # one query for all
    if me in gone:
        raise _forgotten()
    out = []
    for item, score in zip(ids, scores.tolist(), strict=True):
        if hashes[item] in gone:
            continue
        out.append({"item": item, "score": score})
        if len(out) == k:
            break
    return {
        "user": user,
        "k": k,
        "version": model.version_id,
        "generation": model.generation,
        "items": out,
    }


def _forgotten() -> ApiError:
    return ApiError(
        404,
        "this user's data was erased on request: the service holds no recommendations for them",
        reason="forgotten",
    )
