"""GET /v1/receipts/{receipt_id} and GET /v1/public-key."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from recforget.service.http import deps, reads, receipts_view
from recforget.service.http import schemas as s
from recforget.service.http.errors import ApiError
from recforget.service.http.routers.deletions import ERRORS, RequestId
from recforget.service.http.tokens import Principal

router = APIRouter(prefix="/v1", tags=["receipts"])


@router.get(
    "/receipts/{receipt_id}",
    response_model=s.Receipt,
    responses={**ERRORS, 404: {"model": s.Error}},
    summary="A signed receipt, with the server's verification of its hash and signature",
)
def receipt(
    receipt_id: RequestId,
    who: Principal = Depends(deps.require("read")),
    reader=Depends(deps.reader),
) -> s.Receipt:
    with reader.connect() as conn:
        row = reads.receipt_row(conn, receipt_id)
        owner = None if row is None else reads.request_row(conn, row.request_id)
        if row is None or (not who.allows("admin") and owner.client != who.client):
            raise ApiError(404, f"no receipt {receipt_id}")
        return s.Receipt(**receipts_view.as_dict(conn, row))


@router.get(
    "/public-key",
    response_model=s.PublicKey,
    summary="The Ed25519 key that signs receipts (no token needed)",
)
def public_key(svc=Depends(deps.service)) -> s.PublicKey:
    return s.PublicKey(**svc.public_key())
