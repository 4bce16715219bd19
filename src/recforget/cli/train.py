"""``recforget train``: fit an ALS or neural model, evaluate it on a holdout, save it."""

from __future__ import annotations

import time

import click

from recforget.cli._common import data_options, echo_table, emit_json, handle_errors, load_data


@click.command()
@data_options
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    required=True,
    help="Directory to write the model to.",
)
@click.option(
    "--model",
    "model_name",
    type=click.Choice(["als", "gmf", "mlp", "neumf"]),
    default="als",
    show_default=True,
    help="ALS, or a neural recommender (needs the torch extra).",
)
@click.option(
    "--factors", type=click.IntRange(min=1), default=None, help="[default: ALS 64, NCF 32]"
)
@click.option("--regularization", default=0.05, show_default=True, help="ALS ridge.")
@click.option(
    "--feedback", type=click.Choice(["implicit", "explicit"]), default="implicit", show_default=True
)
@click.option("--alpha", default=10.0, show_default=True)
@click.option(
    "--weighting", type=click.Choice(["linear", "log", "bm25"]), default="linear", show_default=True
)
@click.option("--biases/--no-biases", default=False)
@click.option(
    "--regularization-scaling",
    type=click.Choice(["none", "frequency"]),
    default="none",
    show_default=True,
)
@click.option("--iterations", default=15, show_default=True, help="ALS sweeps (at most).")
@click.option("--epochs", type=click.IntRange(min=0), default=20, show_default=True, help="NCF.")
@click.option(
    "--prepare/--no-prepare",
    default=True,
    show_default=True,
    help="NCF: prepare AltEraser's curvature once and save it with the model.",
)
@click.option("--tol", type=float, default=None, help="Relative objective tolerance.")
@click.option(
    "--grad-tol",
    type=float,
    default=None,
    help="Stop when certified: every row's relative gradient is within this (e.g. 1e-4, "
    "recforget bench's default).",
)
@click.option(
    "--solver", type=click.Choice(["cholesky", "cg"]), default="cholesky", show_default=True
)
@click.option(
    "--test-fraction",
    default=0.2,
    show_default=True,
    help="Hold out this fraction of interactions for evaluation (0: none).",
)
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@handle_errors
def train(
    dataset,
    data_path,
    fmt,
    threshold,
    duplicates,
    out_dir,
    model_name,
    factors,
    regularization,
    feedback,
    alpha,
    weighting,
    biases,
    regularization_scaling,
    iterations,
    epochs,
    prepare,
    tol,
    grad_tol,
    solver,
    test_fraction,
    seed,
    as_json,
):
    """Train a model on a data set, report held-out accuracy and save the model."""
    from recforget.data.split import random_holdout
    from recforget.evaluate import evaluate_ranking, evaluate_ratings

    data = load_data(dataset, data_path, fmt, threshold, duplicates)
    train_data, test = (
        random_holdout(data, test_fraction, random_state=seed)
        if test_fraction > 0
        else (data, None)
    )
    if model_name == "als":
        from recforget import ALS

        model = ALS(
            factors or 64,
            regularization=regularization,
            feedback=feedback,
            alpha=alpha,
            weighting=weighting,
            biases=biases,
            regularization_scaling=regularization_scaling,
            iterations=iterations,
            tol=tol,
            grad_tol=grad_tol,
            solver=solver,
            random_state=seed,
            show_progress=not as_json,
        )
    else:
        try:
            from recforget.models.ncf import NCF
        except ImportError as exc:
            raise click.UsageError(
                f"--model {model_name} needs the torch extra: pip install 'recforget[torch]'"
            ) from exc
        model = NCF(model_name, factors or 32, epochs=epochs, random_state=seed)
    start = time.perf_counter()
    model.fit(train_data)
    seconds = time.perf_counter() - start
    metrics = {}
    if test is not None:
        metrics = evaluate_ranking(model, train_data, test, ks=(10,))
        if feedback == "explicit" and model_name == "als":
            metrics.update(evaluate_ratings(model, test))
    prepare_seconds = None
    if model_name != "als" and prepare:
        from recforget.unlearn.ncf import prepare as prepare_curvature

        t0 = time.perf_counter()
        prepare_curvature(model)
        prepare_seconds = time.perf_counter() - t0
    model.save(out_dir)  # with the curvature when prepared: every request starts prepared
    summary = {
        "model_dir": str(out_dir),
        "n_users": data.n_users,
        "n_items": data.n_items,
        "train_nnz": train_data.nnz,
        "seconds": seconds,
        "iterations": model.n_iter_,
        "stop_reason": getattr(model, "stop_reason_", "epochs"),
        "loss": model.loss(),
        "prepare_seconds": prepare_seconds,
        "metrics": metrics,
    }
    if as_json:
        emit_json(summary)
        return
    what = f"ALS ({model.factors} factors, {feedback})" if model_name == "als" else model_name
    unit = "sweeps" if model_name == "als" else "epochs"
    click.echo(
        f"trained {what} on {train_data.nnz} interactions in {seconds:.2f}s, "
        f"{model.n_iter_} {unit} (stopped by {summary['stop_reason']})"
    )
    if prepare_seconds is not None:
        click.echo(f"AltEraser's curvature prepared in {prepare_seconds:.2f}s (saved)")
    if metrics:
        echo_table(
            [{"metric": k, "value": float(v)} for k, v in metrics.items()], ["metric", "value"]
        )
    click.echo(f"saved to {out_dir}")
