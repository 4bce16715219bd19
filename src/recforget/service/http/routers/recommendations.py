"""GET /v1/recommendations/{user}: top-k from the serving version held in memory."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from recforget.service.http import deps, reads
from recforget.service.http import schemas as s
from recforget.service.http.errors import ApiError
from recforget.service.http.tokens import Principal

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
def recommend(
    user: Annotated[str, Path(min_length=1, max_length=200)],
    k: Annotated[int, Query(ge=1, description="How many items")] = 10,
    who: Principal = Depends(deps.require("read")),
    svc=Depends(deps.service),
    reader=Depends(deps.reader),
    holder=Depends(deps.models),
    settings=Depends(deps.settings),
) -> s.Recommendations:
    if k > settings.max_k:
        raise ApiError(422, f"query.k: at most {settings.max_k}", fields=[("query.k", "too large")])
    model = holder.model
    if model is None:
        raise ApiError(503, "no model version is loaded yet")
    keys = svc.keys
    me = keys.subject("user", user)
    u = model.user_index(user)
    with reader.connect() as conn:
        if u < 0:
            if reads.suppressed(conn, [me]):
                raise _forgotten()
            raise ApiError(
                404, "unknown user: the serving model has no such user", reason="unknown"
            )
        top, scores = model.recommend(u, k + 16, reads.user_items(conn, user))
        ids = [str(x) for x in model.items.ids[top]]
        hashes = {i: keys.subject("item", i) for i in ids}
        gone = reads.suppressed(conn, [me, *hashes.values()])  # one query for all
    if me in gone:
        raise _forgotten()
    out = []
    for item, score in zip(ids, scores.tolist(), strict=True):
        if hashes[item] in gone:
            continue
        out.append(s.Recommendation(item=item, score=score))
        if len(out) == k:
            break
    return s.Recommendations(
        user=user, k=k, version=model.version_id, generation=model.generation, items=out
    )


def _forgotten() -> ApiError:
    return ApiError(
        404,
        "this user's data was erased on request: the service holds no recommendations for them",
        reason="forgotten",
    )
