"""``recforget forget``: apply a deletion request to a saved model; write the new model."""

from __future__ import annotations

from pathlib import Path

import click

from recforget.cli._common import emit_json, handle_errors, receipt_options


@click.command()
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("request_file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    required=True,
    help="Directory for the new model (must not be MODEL_DIR).",
)
@click.option(
    "--method",
    default="unlearn-als-selective",
    show_default=True,
    help="retrain | warmstart | unlearn-als | unlearn-als-selective (ALS); "
    "retrain | finetune | alteraser | influence (neural).",
)
@click.option(
    "--tol",
    type=float,
    default=None,
    help="Certificate tolerance (relative row gradient); default: the model's.",
)
@click.option(
    "--id-key-file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="File holding the key (hex) under which the model records the ids it forgot, e.g. "
    "the service's keys/hmac.key; default: $RECFORGET_ID_KEY. Without a key the saved model "
    "keeps only counts, and ids it forgot read as unknown after a reload.",
)
@receipt_options
@handle_errors
def forget(
    model_dir,
    request_file,
    out_dir,
    method,
    tol,
    id_key_file,
    ignore_unknown,
    receipt_path,
    as_json,
):
    """Make the model in MODEL_DIR forget REQUEST_FILE (.json or .csv); save to --out."""
    from recforget.data.forgotten import parse_key
    from recforget.models.registry import load_model
    from recforget.unlearn import DeletionRequest, forget

    if Path(out_dir).resolve() == Path(model_dir).resolve():
        raise click.UsageError("--out must differ from MODEL_DIR (the original is kept intact)")
    model = load_model(model_dir)
    request = DeletionRequest.read(request_file)
    options = {} if tol is None else {"tol": tol}
    if method in ("warmstart", "finetune"):
        options.pop("tol", None)
    id_key = None
    if id_key_file is not None:
        id_key = parse_key(Path(id_key_file).read_text(), source=str(id_key_file))
    result = forget(
        model,
        request,
        method,
        missing="ignore" if ignore_unknown else "error",
        id_key=id_key,
        **options,
    )
    result.model.save(out_dir)  # a prepared curvature is kept: the next request starts prepared
    receipt_file = Path(receipt_path) if receipt_path else Path(out_dir) / "receipt.json"
    emit_json(result.receipt, str(receipt_file))
    if as_json:
        emit_json(result.receipt)
        return
    r = result.receipt
    removed = r["removed"]
    click.echo(
        f"{method}: removed {removed['interactions']} interaction(s), {removed['users']} "
        f"user(s), {removed['items']} item(s) in {r['seconds']:.3f}s"
    )
    if r.get("noop"):
        click.echo("nothing to forget: the model is unchanged")
    elif "certificate" in r:
        c = r["certificate"]
        status = {True: "certified", False: "NOT certified", None: "no tolerance"}[
            r.get("certified")
        ]
        click.echo(
            f"stationarity: max relative residual {c['max_relative']:.3g} "
            f"(tol {c['tol']}) -> {status}"
        )
        if r.get("convergence"):
            click.echo(r["convergence"]["advice"])
    click.echo(f"model saved to {out_dir}, receipt {receipt_file}")
