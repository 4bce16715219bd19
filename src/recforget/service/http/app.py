"""``create_app(settings) -> FastAPI``: the HTTP API and operator console of the pipeline.

Nothing happens at import time. The app opens the service in its lifespan (startup): the
core's :class:`~recforget.service.DeletionService`, a read-only engine for the hot read paths,
and the model holder, which loads and verifies the serving version and then follows the
serving pointer. Every route only translates HTTP to the service's methods and back.
"""

from __future__ import annotations

import gc
import json
import logging
import os
from contextlib import asynccontextmanager
from dataclasses import asdict

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from recforget import __version__
from recforget.service.http import errors, tokens
from recforget.service.http.metrics import Metrics
from recforget.service.http.middleware import BodyLimit, Observe
from recforget.service.http.reads import read_engine
from recforget.service.http.serving import ModelHolder
from recforget.service.http.settings import Settings

log = logging.getLogger("recforget.service.http")

DESCRIPTION = """\
Erasure requests for a recommender: each request is recorded durably (202), its subjects' data
is deleted from the interaction store at once, and a worker makes the serving model forget it
(certified), then signs a hash-chained receipt. Authenticate with `Authorization: Bearer
rf_...` (`recforget service keys create`); scopes: submit, read, admin.
"""


def create_app(settings: Settings) -> FastAPI:
    """The FastAPI app over the service at ``settings.home`` (opened at startup)."""
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        from recforget.service import DeletionService

        svc = DeletionService(settings.home, settings.url)
        await run_in_threadpool(tokens.migrate, svc.engine)
        reader = read_engine(svc.url)
        holder = ModelHolder(
            svc, reader, poll=settings.reload_poll, verify_data=settings.verify_data
        )
        await run_in_threadpool(holder.refresh)
        if settings.gc_freeze:
            # what startup built lives as long as the process: keep the cyclic collector off
            # it, so a full collection under load scans only what came after (milliseconds,
            # not hundreds of them with the libraries' objects)
            gc.collect()
            gc.freeze()
        if settings.watch:
            holder.start()
        app.state.service, app.state.read_engine, app.state.models = svc, reader, holder
        # SQLite reads are local calls that never wait for a writer: the recommendation
        # route may make them on the event loop; a server's round trips go to the pool
        app.state.reads_inline = reader.dialect.name == "sqlite"
        try:
            yield
        finally:
            holder.stop()
            reader.dispose()
            svc.close()

    app = FastAPI(
        title="recforget deletion service",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.token_cache = tokens.TokenCache()
    errors.install(app)

    from recforget.service.http.routers import (
        console,
        deletions,
        health,
        interactions,
        receipts,
        recommendations,
    )

    for module in (deletions, receipts, recommendations, interactions, health, console):
        app.include_router(module.router)
    # outermost first: observe everything, including the 413s of the body limit
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(Observe, metrics=metrics)
    return app


SETTINGS_ENV = "RECFORGET_HTTP_SETTINGS"


def settings_to_environment(settings: Settings) -> None:
    """Put ``settings`` where :func:`app_from_environment` finds them (server workers)."""
    os.environ[SETTINGS_ENV] = json.dumps({**asdict(settings), "home": str(settings.home)})


def app_from_environment() -> FastAPI:
    """The app for one of several server processes (``recforget service serve --workers``).

    uvicorn starts each worker process from an import string, so the settings travel in the
    environment (:func:`settings_to_environment`). Each process holds its own verified model,
    follows the serving pointer and caches token checks on its own.
    """
    raw = os.environ.get(SETTINGS_ENV)
    if not raw:
        raise RuntimeError(
            f"{SETTINGS_ENV} is not set: start the server with `recforget service serve`"
        )
    return create_app(Settings(**json.loads(raw)))


__all__ = ["app_from_environment", "create_app", "settings_to_environment"]
