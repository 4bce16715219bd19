"""POST /v1/deletions (idempotent submission) and GET /v1/deletions/{request_id}."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Response

from recforget.service.core import NotFound
from recforget.service.http import deps, reads, receipts_view
from recforget.service.http import schemas as s
from recforget.service.http.errors import ApiError
from recforget.service.http.tokens import Principal
from recforget.service.ledger import IdempotencyConflict
from recforget.service.states import State
from recforget.unlearn.requests import DeletionRequest

router = APIRouter(prefix="/v1", tags=["deletions"])
UUID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
RequestId = Annotated[str, Path(pattern=UUID, description="The request id (a UUID).")]
ERRORS = {401: {"model": s.Error}, 403: {"model": s.Error}, 422: {"model": s.Error}}


def _accepted(sub) -> s.DeletionAccepted:
    # the acknowledgement is a function of the ledger row alone, so a replay returns it
    # byte for byte: the state it had when the deletion step ran (the step runs once)
    state = "REJECTED" if sub.state == State.REJECTED.value else "DATA_DELETED"
    return s.DeletionAccepted(
        request_id=sub.request_id,
        seq=sub.seq,
        state=state,
        received_at=sub.received_at,
        due_at=sub.due_at,
        status_url=f"/v1/deletions/{sub.request_id}",
    )


@router.post(
    "/deletions",
    status_code=202,
    response_model=s.DeletionAccepted,
    responses={
        **ERRORS,
        409: {"model": s.Error, "description": "The first request with this key is in progress"},
        413: {"model": s.Error},
    },
    summary="Submit a deletion request (202 once it is durably recorded)",
)
def submit(
    body: s.DeletionBody,
    response: Response,
    idempotency_key: Annotated[
        str,
        Header(
            min_length=1,
            max_length=200,
            description="Unique per request and client; a retry with the same key and body "
            "returns the stored response.",
        ),
    ],
    who: Principal = Depends(deps.require("submit")),
    svc=Depends(deps.service),
) -> s.DeletionAccepted:
    request = DeletionRequest(
        pairs=[(p.user, p.item) for p in body.pairs], users=body.users, items=body.items
    )
    if request.is_empty:
        raise ApiError(
            422,
            "body.users, body.items, body.pairs: the deletion request names no users, items "
            "or pairs",
            fields=[(f, "all three are empty") for f in ("body.users", "body.items", "body.pairs")],
        )
    try:
        sub = svc.submit(who.client, idempotency_key, request, body.legal_ground)
    except IdempotencyConflict as exc:
        raise ApiError(
            422,
            "Idempotency-Key was already used by this client for a different request body",
            fields=[("header Idempotency-Key", "reused with a different body")],
        ) from exc
    except ValueError as exc:
        raise ApiError(422, str(exc), fields=[("body", str(exc))]) from exc
    if sub.replay and sub.state == State.RECEIVED.value:
        raise ApiError(
            409,
            "a request with this Idempotency-Key is still in progress; retry shortly",
            fields=[("header Idempotency-Key", "in progress")],
            headers={"Retry-After": "1"},
        )
    if sub.replay:
        response.headers["Idempotent-Replayed"] = "true"
    response.headers["Location"] = f"/v1/deletions/{sub.request_id}"
    return _accepted(sub)


@router.get(
    "/deletions/{request_id}",
    response_model=s.DeletionStatus,
    responses={**ERRORS, 404: {"model": s.Error}},
    summary="A request's state, due date, and its receipt once completed",
)
def status(
    request_id: RequestId,
    who: Principal = Depends(deps.require("read")),
    svc=Depends(deps.service),
    reader=Depends(deps.reader),
) -> s.DeletionStatus:
    try:
        st = svc.status(request_id)
    except NotFound as exc:
        raise ApiError(404, f"no deletion request {request_id}") from exc
    if not who.allows("admin") and st["client"] != who.client:
        raise ApiError(404, f"no deletion request {request_id}")
    receipt = None
    if st.get("receipt_id"):
        with reader.connect() as conn:
            receipt = receipts_view.as_dict(conn, reads.receipt_row(conn, st["receipt_id"]))
    fields = {k: st.get(k) for k in s.DeletionStatus.model_fields if k not in ("receipt",)}
    fields["request_id"] = st["id"]
    return s.DeletionStatus(**{**fields, "receipt": receipt})
