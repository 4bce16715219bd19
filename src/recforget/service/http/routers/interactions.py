"""POST /v1/interactions: append to the platform's interaction store."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from recforget.data.errors import DataError
from recforget.service.http import deps
from recforget.service.http import schemas as s
from recforget.service.http.errors import ApiError
from recforget.service.http.tokens import Principal
from recforget.service.store import SuppressedSubjectError

router = APIRouter(prefix="/v1", tags=["interactions"])


@router.post(
    "/interactions",
    response_model=s.IngestAccepted,
    responses={
        401: {"model": s.Error},
        403: {"model": s.Error},
        409: {"model": s.Error, "description": "Rows of erased subjects: nothing was ingested"},
        413: {"model": s.Error},
        422: {"model": s.Error},
    },
    summary="Ingest interactions (pairs already stored are skipped)",
)
def ingest(
    body: s.InteractionsBody,
    who: Principal = Depends(deps.require("submit")),
    svc=Depends(deps.service),
) -> s.IngestAccepted:
    rows = [(x.user, x.item, x.value, x.timestamp) for x in body.interactions]
    try:
        got = svc.ingest(rows)
    except SuppressedSubjectError as exc:
        raise ApiError(
            409,
            f"{len(exc.rows)} interaction(s) belong to erased (suppressed) subjects; "
            "nothing was ingested",
            fields=[(f"body.interactions[{n}]", "erased subject") for n in exc.rows[:100]],
        ) from exc
    except DataError as exc:
        raise ApiError(422, str(exc), fields=[("body.interactions", str(exc))]) from exc
    return s.IngestAccepted(**got.__dict__)
