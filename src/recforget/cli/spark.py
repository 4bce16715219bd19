"""``recforget spark``: fit and forget on Spark, on Parquet interactions and MLlib ALSModels."""

from __future__ import annotations

from pathlib import Path

import click

from recforget.cli._common import emit_json, handle_errors, receipt_options


def _common(func):
    options = [
        click.option(
            "--master",
            default="local[2]",
            show_default=True,
            help="Spark master URL, passed to SparkSession.builder.master.",
        ),
        click.option("--user-col", default="user", show_default=True),
        click.option("--item-col", default="item", show_default=True),
        click.option("--rating-col", default="rating", show_default=True),
        click.option(
            "--n-blocks",
            type=int,
            default=None,
            help="Rating blocks per side (default: Spark's default parallelism).",
        ),
        click.option(
            "--reg-param",
            type=float,
            default=0.1,
            show_default=True,
            help="MLlib regParam (scaled by each row's rating count).",
        ),
        click.option("--implicit-prefs", is_flag=True, help="MLlib implicitPrefs."),
        click.option("--alpha", type=float, default=1.0, show_default=True, help="MLlib alpha."),
        click.option(
            "--checkpoint-dir",
            type=click.Path(file_okay=False),
            default=None,
            help="Per-sweep factor state (Parquet); a rerun resumes from it.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _progress(info: dict) -> None:
    extra = ""
    if info.get("max_relative") is not None:
        extra = f", residual {info['max_relative']:.3g}"
    if info.get("rows_solved") is not None:
        extra += f", {info['rows_solved']} rows re-solved"
    side = f" ({info['side']})" if info.get("side") else ""
    click.echo(f"sweep {info['sweep']}{side}: {info['seconds']:.2f}s{extra}", err=True)


def _read(spark, path, user_col, item_col, rating_col):
    from recforget.spark import SparkInteractions

    df = spark.read.parquet(str(path))
    return SparkInteractions.from_frame(df, user_col, item_col, rating_col).persist()


@click.group()
def spark() -> None:
    """ALS fit and Unlearn-ALS on Apache Spark (needs the [spark] extra and a JVM)."""


@spark.command()
@click.argument("interactions", type=click.Path(exists=True))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    required=True,
    help="ALSModel directory to write (MLlib's format).",
)
@click.option("--rank", type=int, default=10, show_default=True)
@click.option("--max-iter", type=int, default=10, show_default=True)
@click.option("--tol", type=float, default=None, help="Stop when the certificate holds.")
@click.option("--seed", type=int, default=0, show_default=True)
@_common
@handle_errors
def fit(
    interactions,
    out_dir,
    rank,
    max_iter,
    tol,
    seed,
    master,
    user_col,
    item_col,
    rating_col,
    n_blocks,
    reg_param,
    implicit_prefs,
    alpha,
    checkpoint_dir,
):
    """Fit ALS with MLlib's objective on INTERACTIONS (Parquet); write an ALSModel."""
    from recforget.spark import SparkALS, local_session
    from recforget.spark.interop import spark_params

    session = local_session(master)
    data = _read(session, interactions, user_col, item_col, rating_col)
    params = spark_params(reg_param=reg_param, implicit_prefs=implicit_prefs, alpha=alpha)
    model = SparkALS(
        rank,
        n_blocks=n_blocks,
        order="items-first",
        checkpoint_dir=checkpoint_dir,
        progress=_progress,
        iterations=max_iter,
        grad_tol=tol,
        random_state=seed,
        **params,
    ).fit(data)
    model.to_spark(out_dir, overwrite=True)
    click.echo(f"{model.n_iter_} sweep(s), stop: {model.stop_reason_}; model saved to {out_dir}")


@spark.command()
@click.argument("interactions", type=click.Path(exists=True))
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("request_file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    required=True,
    help="ALSModel directory for the new model (must not be MODEL_DIR).",
)
@click.option(
    "--out-data",
    type=click.Path(file_okay=False),
    default=None,
    help="Write the remaining interactions here (Parquet).",
)
@click.option(
    "--method",
    type=click.Choice(["unlearn-als", "unlearn-als-selective", "retrain"]),
    default="unlearn-als",
    show_default=True,
)
@click.option(
    "--tol",
    type=float,
    default=1e-3,
    show_default=True,
    help="Certificate tolerance (relative row gradient).",
)
@receipt_options
@_common
@handle_errors
def forget(
    interactions,
    model_dir,
    request_file,
    out_dir,
    out_data,
    method,
    tol,
    ignore_unknown,
    receipt_path,
    as_json,
    master,
    user_col,
    item_col,
    rating_col,
    n_blocks,
    reg_param,
    implicit_prefs,
    alpha,
    checkpoint_dir,
):
    """Make the ALSModel in MODEL_DIR, trained on INTERACTIONS, forget REQUEST_FILE."""
    from recforget.spark import SparkALS, local_session
    from recforget.spark.unlearn import forget as spark_forget
    from recforget.unlearn import DeletionRequest

    if Path(out_dir).resolve() == Path(model_dir).resolve():
        raise click.UsageError("--out must differ from MODEL_DIR (the original is kept intact)")
    request = DeletionRequest.read(request_file)
    session = local_session(master)
    data = _read(session, interactions, user_col, item_col, rating_col)
    model = SparkALS.from_spark(
        model_dir,
        data,
        reg_param=reg_param,
        implicit_prefs=implicit_prefs,
        alpha=alpha,
        n_blocks=n_blocks,
        checkpoint_dir=checkpoint_dir,
        progress=_progress,
    )
    result = spark_forget(
        model, request, method, missing="ignore" if ignore_unknown else "error", tol=tol
    )
    result.model.to_spark(out_dir, overwrite=True)
    if out_data:
        result.data.frame.select(
            result.data.frame["user"].alias(user_col),
            result.data.frame["item"].alias(item_col),
            result.data.frame["value"].alias(rating_col),
        ).write.mode("overwrite").parquet(out_data)
    receipt_file = Path(receipt_path) if receipt_path else Path(out_dir) / "receipt.json"
    emit_json(result.receipt, str(receipt_file))
    if as_json:
        emit_json(result.receipt)
        return
    r = result.receipt
    removed = r["removed"]
    click.echo(
        f"{method} on Spark: removed {removed['interactions']} interaction(s), "
        f"{removed['users']} user(s), {removed['items']} item(s) in {r['seconds']:.2f}s, "
        f"{r['sweeps']} sweep(s)"
    )
    if "certificate" in r:
        c = r["certificate"]
        status = "certified" if r.get("certified") else "NOT certified"
        click.echo(
            f"stationarity: max relative residual {c['max_relative']:.3g} "
            f"(tol {c['tol']}) -> {status}"
        )
    click.echo(f"model saved to {out_dir}, receipt {receipt_file}")
