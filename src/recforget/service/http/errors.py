"""Error responses: one JSON shape (``{"error", "fields"}``) for every 4xx and 5xx.

Validation messages name the field (``body.users[0]``, ``query.k``, ``header
Idempotency-Key``) and never echo the submitted value, so no raw id ends up in a log line that
quotes a response.
"""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("recforget.service.http")


class ApiError(Exception):
    """An error response: status, message, and the fields at fault."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        fields: list[tuple[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message = status, message
        self.fields = fields or []
        self.headers = headers
        self.reason = reason


_TAGS = re.compile(r"^(constrained-str|str|int|float|bool|function-[a-z]+\[.*\])$")


def field_name(loc: tuple | list) -> str:
    """``("body", "users", 0)`` -> ``body.users[0]``; headers as ``header Name``."""
    loc = [p for p in loc if not (isinstance(p, str) and _TAGS.match(p))]  # union members
    if loc and loc[0] == "header" and len(loc) > 1:
        return "header " + "-".join(w.capitalize() for w in str(loc[1]).split("-"))
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "body"


def body(message: str, fields: list[tuple[str, str]] | None = None, reason: str | None = None):
    out: dict = {"error": message, "fields": [{"field": f, "message": m} for f, m in fields or []]}
    if reason is not None:
        out["reason"] = reason
    return out


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(
            body(exc.message, exc.fields, exc.reason), status_code=exc.status, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        merged: dict[str, list[str]] = {}
        for err in exc.errors():
            loc = err.get("loc", ("body",))
            if err.get("type") == "json_invalid":
                loc = ("body",)
            msg = str(err.get("msg", "invalid"))
            if err.get("type") == "extra_forbidden":
                msg = "unknown field"
            msgs = merged.setdefault(field_name(loc), [])
            if msg not in msgs:
                msgs.append(msg)
        fields = [(f, " or ".join(m)) for f, m in merged.items()]
        text = "; ".join(f"{f}: {m}" for f, m in fields) or "invalid request"
        return JSONResponse(body(text, fields), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(body(str(exc.detail)), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _crash(_request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error: %s", type(exc).__name__, exc_info=exc)
        return JSONResponse(body(f"internal error ({type(exc).__name__})"), status_code=500)


__all__ = ["ApiError", "install"]
