"""FastAPI dependencies: the service, the read engine, the model holder, the token's scopes."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from recforget.service.http import tokens
from recforget.service.http.errors import ApiError

COOKIE = "recforget_console"
_bearer = HTTPBearer(auto_error=False, description="An API token: rf_<id>_<secret>")


def service(request: Request):
    return request.app.state.service


def reader(request: Request):
    return request.app.state.read_engine


def models(request: Request):
    return request.app.state.models


def settings(request: Request):
    return request.app.state.settings


def principal(
    request: Request, creds: HTTPAuthorizationCredentials | None = Depends(_bearer)
) -> tokens.Principal:
    """The token's principal; 401 without a token or with a bad one."""
    token = creds.credentials if creds is not None else None  # never a cookie: no CSRF
    if not token:
        raise ApiError(
            401,
            "missing bearer token: send 'Authorization: Bearer rf_...' "
            "(create one with `recforget service keys create`)",
            fields=[("header Authorization", "required")],
            headers={"WWW-Authenticate": "Bearer"},
        )
    with request.app.state.read_engine.connect() as conn:
        who = tokens.verify(conn, token)
    if who is None:
        raise ApiError(
            401,
            "invalid, revoked or expired API token",
            fields=[("header Authorization", "not a valid token")],
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    return who


def require(scope: str) -> Callable[..., tokens.Principal]:
    """A dependency: the principal, if its token has ``scope`` (admin has every scope)."""

    def check(who: tokens.Principal = Depends(principal)) -> tokens.Principal:
        if not who.allows(scope):
            raise ApiError(
                403,
                f"this token lacks the '{scope}' scope (it has: {', '.join(sorted(who.scopes))})",
                headers={"WWW-Authenticate": f'Bearer error="insufficient_scope" scope="{scope}"'},
            )
        return who

    check.__name__ = f"require_{scope}"
    return check


__all__ = ["principal", "require", "service"]
