"""``recforget train``: fit an ALS model, evaluate it on a holdout, save it."""

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
@click.option("--factors", default=64, show_default=True)
@click.option("--regularization", default=0.05, show_default=True)
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
@click.option("--iterations", default=15, show_default=True)
@click.option("--tol", type=float, default=None, help="Relative objective tolerance.")
@click.option(
    "--grad-tol",
    type=float,
    default=None,
    help="Stop when certified: every row's relative gradient is within this (e.g. 1e-2).",
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
    factors,
    regularization,
    feedback,
    alpha,
    weighting,
    biases,
    regularization_scaling,
    iterations,
    tol,
    grad_tol,
    solver,
    test_fraction,
    seed,
    as_json,
):
    """Train ALS on a data set, report held-out accuracy and save the model."""
    from recforget import ALS
    from recforget.data.split import random_holdout
    from recforget.evaluate import evaluate_ranking, evaluate_ratings

    data = load_data(dataset, data_path, fmt, threshold, duplicates)
    train_data, test = (
        random_holdout(data, test_fraction, random_state=seed)
        if test_fraction > 0
        else (data, None)
    )
    model = ALS(
        factors,
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
    start = time.perf_counter()
    model.fit(train_data)
    seconds = time.perf_counter() - start
    metrics = {}
    if test is not None:
        metrics = evaluate_ranking(model, train_data, test, ks=(10,))
        if feedback == "explicit":
            metrics.update(evaluate_ratings(model, test))
    model.save(out_dir)
    summary = {
        "model_dir": str(out_dir),
        "n_users": data.n_users,
        "n_items": data.n_items,
        "train_nnz": train_data.nnz,
        "seconds": seconds,
        "iterations": model.n_iter_,
        "stop_reason": model.stop_reason_,
        "loss": model.loss(),
        "metrics": metrics,
    }
    if as_json:
        emit_json(summary)
        return
    click.echo(
        f"trained ALS ({factors} factors, {feedback}) on {train_data.nnz} interactions "
        f"in {seconds:.2f}s, {model.n_iter_} sweeps (stopped by {model.stop_reason_})"
    )
    if metrics:
        echo_table(
            [{"metric": k, "value": float(v)} for k, v in metrics.items()], ["metric", "value"]
        )
    click.echo(f"saved to {out_dir}")
