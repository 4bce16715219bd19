"""``recforget audit``: re-verify a deletion service from its database and files alone."""

from __future__ import annotations

import click

from recforget.cli._common import emit_json
from recforget.cli.service import _open, home_option, service_errors


@click.command()
@home_option
@click.option("--tol", type=float, default=None, help="Certificate tolerance (default: model's).")
@click.option("--json", "as_json", is_flag=True)
@service_errors
def audit(home, tol, as_json):
    """Verify the receipt chain, signatures, fingerprints and the serving model's certificate.

    Exits with status 1 when anything fails to verify.
    """
    report = _open(home).audit(tol=tol)
    if as_json:
        emit_json(report)
    else:
        for p in report["problems"]:
            click.echo(f"FAIL {p}")
        c = report["checked"]
        cert = c.get("certificate", {})
        click.echo(
            f"{'OK' if report['ok'] else 'FAILED'}: {c.get('receipts')} receipts, "
            f"{c.get('events')} events, serving version {c.get('serving_version')} "
            f"(max relative gradient {cert.get('max_relative', float('nan')):.3g})"
        )
    if not report["ok"]:
        raise SystemExit(1)
