"""``recforget service serve`` (the HTTP API under uvicorn) and ``recforget service keys``."""

from __future__ import annotations

import click

from recforget.cli._common import emit_json
from recforget.cli.service import _open, home_option, service_errors


def _needs_http():
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:  # pragma: no cover - extra not installed
        raise click.ClickException(
            f"the HTTP API needs the optional extra: pip install 'recforget[http]' ({exc})"
        ) from exc


@click.command()
@home_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option(
    "--max-body",
    type=click.IntRange(1),
    default=1 << 20,
    show_default=True,
    help="Largest request body in bytes (enforced for chunked bodies too).",
)
@click.option(
    "--reload-poll",
    type=click.FloatRange(0.01),
    default=0.5,
    show_default=True,
    help="Seconds between checks for a new serving generation.",
)
@click.option(
    "--verify-data",
    is_flag=True,
    help="Before serving a new version, also rebuild its data from the store and check it.",
)
@click.option(
    "--heartbeat-stale",
    type=click.FloatRange(0.1),
    default=30.0,
    show_default=True,
    help="/readyz fails when the worker's last heartbeat is older than this (s).",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Server processes on the one port (each holds its own verified model).",
)
@click.option("--log-level", default="info", show_default=True)
@service_errors
def serve(
    home, host, port, max_body, reload_poll, verify_data, heartbeat_stale, workers, log_level
):
    """Serve the HTTP API and the operator console (uvicorn; never writes models)."""
    import logging

    _needs_http()
    import uvicorn

    from recforget.service.http import Settings, create_app
    from recforget.service.http.app import settings_to_environment

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    _open(home).close()  # a clear error now if HOME is not a service
    settings = Settings(
        home=home,
        max_body_bytes=max_body,
        reload_poll=reload_poll,
        verify_data=verify_data,
        heartbeat_stale=heartbeat_stale,
    )
    # uvicorn's access log prints raw paths (ids); the app writes its own, with templates
    if workers == 1:
        app = create_app(settings)
        uvicorn.run(app, host=host, port=port, access_log=False, log_level=log_level)
        return
    settings_to_environment(settings)  # each worker process builds its app from it
    uvicorn.run(
        "recforget.service.http.app:app_from_environment",
        factory=True,
        workers=workers,
        host=host,
        port=port,
        access_log=False,
        log_level=log_level,
    )


@click.group()
def keys() -> None:
    """API tokens for the HTTP API (stored hashed; shown once at creation)."""


@keys.command("create")
@home_option
@click.option(
    "--client", required=True, help="Who the token acts for (idempotency keys are per client)."
)
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice(["submit", "read", "admin"]),
    help="Repeatable: submit, read, admin (admin has every scope).",
)
@click.option("--note", default=None)
@click.option("--expires-days", type=click.FloatRange(0, min_open=True), default=None)
@click.option("--json", "as_json", is_flag=True)
@service_errors
def create(home, client, scopes, note, expires_days, as_json):
    """Create a token; prints it once (only its hash is stored)."""
    from recforget.service.http import tokens

    svc = _open(home)
    try:
        token_id, token = tokens.create(
            svc.engine, client, list(scopes), note=note, expires_days=expires_days
        )
    finally:
        svc.close()
    if as_json:
        emit_json({"id": token_id, "token": token, "client": client, "scopes": sorted(scopes)})
    else:
        click.echo(token)
        click.echo(f"token {token_id} for client {client!r}, scopes {','.join(scopes)}", err=True)


@keys.command("revoke")
@home_option
@click.argument("token_id")
@service_errors
def revoke(home, token_id):
    """Revoke a token by its id (or the token itself); it stops working at once."""
    from recforget.service.http import tokens

    svc = _open(home)
    try:
        tokens.revoke(svc.engine, token_id)
    finally:
        svc.close()
    click.echo(f"revoked {token_id[:15]}")


@keys.command("list")
@home_option
@service_errors
def list_(home):
    """Tokens (ids, clients, scopes, dates; never the secrets)."""
    from recforget.service.http import tokens

    svc = _open(home)
    try:
        emit_json(tokens.listing(svc.engine))
    finally:
        svc.close()


list_.name = "list"
