"""FastAPI dependencies: the service, the read engine, the model holder, the token's scopes.

The ones that only hand out what the app holds are ``async`` (FastAPI runs a plain ``def``
dependency in its thread pool: a thread hop per dependency per request); the token check,
which reads the database, is a plain ``def``.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from recforget.service.http import tokens
from recforget.service.http.errors import ApiError

COOKIE = "recforget_console"
_bearer = HTTPBearer(auto_error=False, description="An API token: rf_<id>_<secret>")


async def service(request: Request):
    return request.app.state.service


async def reader(request: Request):
    return request.app.state.read_engine


async def models(request: Request):
    return request.app.state.models


async def settings(request: Request):
    return request.app.state.settings


async def bearer(creds: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> str:
    """The bearer token as sent (not yet verified); 401 without one."""
    token = creds.credentials if creds is not None else None  # never a cookie: no CSRF
    if not token:
        raise ApiError(
            401,
            "missing bearer token: send 'Authorization: Bearer rf_...' "
            "(create one with `recforget service keys create`)",
            fields=[("header Authorization", "required")],
            headers={"WWW-Authenticate": "Bearer"},
        )
    return token


def authenticate(state, token: str) -> tokens.Principal:
    """The token's principal (cached verification, see :class:`tokens.TokenCache`); 401."""
    with state.read_engine.connect() as conn:
        who = state.token_cache.verify(conn, token)
    if who is None:
        raise ApiError(
            401,
            "invalid, revoked or expired API token",
            fields=[("header Authorization", "not a valid token")],
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    return who


def authorize(who: tokens.Principal, scope: str) -> tokens.Principal:
    """``who`` if its token has ``scope`` (admin has every scope); 403 otherwise."""
    if not who.allows(scope):
        raise ApiError(
            403,
            f"this token lacks the '{scope}' scope (it has: {', '.join(sorted(who.scopes))})",
            headers={"WWW-Authenticate": f'Bearer error="insufficient_scope" scope="{scope}"'},
        )
    return who


def principal(request: Request, token: str = Depends(bearer)) -> tokens.Principal:
    """The token's principal; 401 without a token or with a bad one."""
    return authenticate(request.app.state, token)


def require(scope: str) -> Callable[..., tokens.Principal]:
    """A dependency: the principal, if its token has ``scope`` (admin has every scope)."""

    async def check(who: tokens.Principal = Depends(principal)) -> tokens.Principal:
        return authorize(who, scope)

    check.__name__ = f"require_{scope}"
    return check


__all__ = ["authenticate", "authorize", "bearer", "principal", "require", "service"]
