"""``recforget service ...``: run the deletion pipeline locally (init, worker, submit, ...)."""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import click

from recforget.cli._common import data_options, emit_json, handle_errors, load_data

HOME_HELP = "Service directory (secrets, model versions, default SQLite database)."


def home_option(func: Callable) -> Callable:
    return click.option(
        "--home",
        envvar="RECFORGET_SERVICE_HOME",
        default="recforget-service",
        show_default=True,
        type=click.Path(file_okay=False),
        help=HOME_HELP + " Env: RECFORGET_SERVICE_HOME.",
    )(func)


def service_errors(func: Callable) -> Callable:
    """Service errors (ledger, lease, integrity) as a clean ``Error: ...`` and exit 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from recforget.service import LedgerError, ServiceError, VersionIntegrityError

        try:
            return func(*args, **kwargs)
        except (ServiceError, LedgerError, VersionIntegrityError, RuntimeError) as exc:
            raise click.ClickException(str(exc)) from exc

    return handle_errors(wrapper)


def _open(home: str):
    try:
        from recforget.service import DeletionService
    except ImportError as exc:  # pragma: no cover - extra not installed
        raise click.ClickException(
            f"the service needs the optional extra: pip install 'recforget[service]' ({exc})"
        ) from exc
    return DeletionService(home)


@click.group()
def service() -> None:
    """The deletion pipeline: request ledger, interaction store and serving model in step."""


@service.command()
@home_option
@click.option("--db", "url", default=None, help="Database URL (default: sqlite in --home).")
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False))
@data_options
@service_errors
def init(home, url, model_dir, dataset, data_path, fmt, threshold, duplicates):
    """Create the database and import MODEL_DIR (an ALS model) with its training data.

    The data imported into the interaction store is the model's own saved training data, or
    --dataset/--data when given (it must be the same interactions).
    """
    from recforget.models.als import ALS
    from recforget.service import DeletionService

    model = ALS.load(model_dir)
    data = None
    if dataset is not None or data_path is not None:
        data = load_data(dataset, data_path, fmt, threshold, duplicates)
    svc = DeletionService.init(home, model, url=url, data=data)
    s = svc.serving()
    click.echo(
        f"service at {home}: {model.seen_.nnz} interactions imported, version {s['id']} serving "
        f"(database {svc.url.split('@')[-1]})"
    )


@service.command()
@home_option
@click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True)
@click.option(
    "--window",
    type=click.FloatRange(0),
    default=0.2,
    show_default=True,
    help="Seconds the oldest pending request waits for others to join its batch.",
)
@click.option("--method", default="unlearn-als-selective", show_default=True)
@click.option("--tol", type=float, default=None, help="Certificate tolerance (default: model's).")
@click.option("--lease", type=click.FloatRange(0.1), default=30.0, show_default=True)
@click.option("--max-attempts", type=click.IntRange(1), default=5, show_default=True)
@click.option(
    "--idle-exit",
    type=click.FloatRange(0),
    default=None,
    help="Exit after this many idle seconds (default: run until interrupted).",
)
@click.option("--max-batches", type=click.IntRange(1), default=None)
@service_errors
def worker(home, batch_size, window, method, tol, lease, max_attempts, idle_exit, max_batches):
    """Run the worker: the only writer of models (batches requests, unlearns, switches)."""
    import logging

    from recforget.service import WorkerConfig

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    svc = _open(home)
    config = WorkerConfig(
        batch_size=batch_size,
        window=window,
        method=method,
        tol=tol,
        lease_seconds=lease,
        max_attempts=max_attempts,
    )
    try:
        n = svc.worker(config).run(max_batches=max_batches, idle_exit=idle_exit)
    except KeyboardInterrupt:
        n = None
    click.echo(f"worker stopped; {n if n is not None else 'some'} request(s) completed", err=True)


def _pair(text: str) -> tuple[str, str]:
    user, sep, item = text.partition(",")
    if not sep or not user or not item:
        raise click.BadParameter(f"a pair is USER,ITEM, got {text!r}", param_hint="--pair")
    return user, item


@service.command()
@home_option
@click.option("--client", required=True, help="Who submits (idempotency keys are per client).")
@click.option("--key", "idem_key", required=True, help="Idempotency key.")
@click.option("--user", "users", multiple=True, help="Erase a user (repeatable).")
@click.option("--item", "items", multiple=True, help="Erase an item (repeatable).")
@click.option("--pair", "pairs", multiple=True, help="Erase one interaction USER,ITEM.")
@click.option(
    "--file",
    "req_file",
    type=click.Path(exists=True, dir_okay=False),
    help="A request file (.json or .csv, as for `recforget forget`).",
)
@click.option("--ground", required=True, help="Legal ground, e.g. 'GDPR Art. 17(1)(b)'.")
@click.option(
    "--wait",
    type=click.FloatRange(0),
    default=None,
    help="Wait up to this many seconds for COMPLETED (a worker must run).",
)
@click.option("--json", "as_json", is_flag=True)
@service_errors
def submit(home, client, idem_key, users, items, pairs, req_file, ground, wait, as_json):
    """Submit a deletion request; prints its id once it is durably recorded."""
    from recforget import DeletionRequest

    svc = _open(home)
    if req_file:
        base = DeletionRequest.read(req_file)
        pairs_l = list(base.pairs) + [_pair(p) for p in pairs]
        request = DeletionRequest(
            pairs_l, list(base.users) + list(users), list(base.items) + list(items)
        )
    else:
        request = DeletionRequest([_pair(p) for p in pairs], users, items)
    sub = svc.submit(client, idem_key, request, ground)
    out: dict[str, Any] = sub.to_dict()
    if wait is not None:
        deadline = time.time() + wait
        while time.time() < deadline:
            st = svc.status(sub.request_id)
            if st["state"] in ("COMPLETED", "REJECTED", "FAILED"):
                break
            time.sleep(0.02)
        st = svc.status(sub.request_id)
        out["state"] = st["state"]
        out["seconds_to_state"] = (st["completed_at"] or time.time()) - st["received_at"]
        if "receipt" in st:
            out["receipt"] = st["receipt"]
    if as_json:
        emit_json(out)
    else:
        click.echo(f"{sub.request_id} {out['state']}" + (" (replay)" if sub.replay else ""))


@service.command()
@home_option
@click.argument("request_id", required=False)
@click.option("--json", "as_json", is_flag=True)
@service_errors
def status(home, request_id, as_json):
    """One request's state and receipt, or (no REQUEST_ID) the queue and serving version."""
    svc = _open(home)
    if request_id:
        out = svc.status(request_id)
    else:
        s = svc.serving()
        out = {
            "queue": svc.queue(),
            "serving": {
                k: s[k]
                for k in (
                    "id",
                    "generation",
                    "method",
                    "covered_count",
                    "covered_seq",
                    "watermark",
                    "digest",
                )
            },
        }
    if as_json or request_id:
        emit_json(out)
    else:
        q = out["queue"]["by_state"]
        click.echo(" ".join(f"{k}={v}" for k, v in q.items()))
        click.echo(
            f"serving version {out['serving']['id']} (generation "
            f"{out['serving']['generation']}, covers {out['serving']['covered_count']})"
        )


@service.command()
@home_option
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@service_errors
def ingest(home, path):
    """Append interactions from a CSV with a user,item[,value[,timestamp]] header."""
    import csv

    from recforget.data.errors import DataError

    rows = []
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"user", "item"} <= set(reader.fieldnames):
            raise DataError("header must name 'user' and 'item' columns", file=path, line=1)
        for line, rec in enumerate(reader, start=2):
            try:
                value = float(rec["value"]) if rec.get("value") not in (None, "") else 1.0
                ts = int(rec["timestamp"]) if rec.get("timestamp") not in (None, "") else None
            except ValueError as exc:
                raise DataError(str(exc), file=path, line=line) from exc
            rows.append((rec["user"], rec["item"], value, ts))
    from recforget.service import SuppressedSubjectError

    try:
        got = _open(home).ingest(rows)
    except SuppressedSubjectError as exc:
        lines = ", ".join(str(r + 2) for r in exc.rows[:10])
        raise DataError(
            f"{len(exc.rows)} row(s) belong to erased (suppressed) subjects, at line(s) {lines}; "
            "nothing was ingested",
            file=path,
        ) from exc
    click.echo(
        f"{got.inserted} inserted, {got.duplicates} already stored; watermark {got.watermark}"
    )


@service.command()
@home_option
@click.option("--tol", type=float, default=None)
@service_errors
def retrain(home, tol):
    """Full retrain from the store (suppression respected), registered and activated."""
    from recforget.service import WorkerConfig

    vid = _open(home).retrain(WorkerConfig(tol=tol))
    click.echo(f"retrained: version {vid} serving")


@service.command()
@home_option
@click.option("--receipts", is_flag=True, help="Append the receipts after the ledger.")
@click.option("--out", type=click.Path(dir_okay=False), default="-", show_default=True)
@service_errors
def export(home, receipts, out):
    """The ledger (keyed hashes only) as JSON lines."""
    svc = _open(home)
    fh = sys.stdout if out == "-" else open(out, "w")
    try:
        for row in svc.export(receipts=receipts):
            fh.write(json.dumps(row, sort_keys=True, default=str) + "\n")
    finally:
        if fh is not sys.stdout:
            fh.close()


# HTTP commands (serve, keys) live in their own module
from recforget.cli.service_http import keys, serve  # noqa: E402

service.add_command(serve)
service.add_command(keys)
