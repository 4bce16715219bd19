"""``recforget bench``: forget-vs-retrain benchmark on a real data set, JSON + table."""

from __future__ import annotations

import click

from recforget.cli._common import echo_table, emit_json, handle_errors, stderr


def bench_options(func):
    options = [
        click.option(
            "--dataset",
            type=click.Choice(["ml-100k", "ml-1m"]),
            default="ml-100k",
            show_default=True,
        ),
        click.option(
            "--model",
            type=click.Choice(["als", "gmf", "mlp", "neumf"]),
            default="als",
            show_default=True,
        ),
        click.option("--factors", default=64, show_default=True),
        click.option(
            "--iterations",
            default=100,
            show_default=True,
            help="ALS: most sweeps for the original fit and the retrain.",
        ),
        click.option(
            "--tol",
            default=1e-3,
            show_default=True,
            help="Stationarity tolerance shared by the original fit, the retrain and "
            "the certified methods (max relative row gradient).",
        ),
        click.option("--regularization", default=0.05, show_default=True),
        click.option("--alpha", default=10.0, show_default=True),
        click.option(
            "--solver", type=click.Choice(["cholesky", "cg"]), default="cholesky", show_default=True
        ),
        click.option(
            "--warm-sweeps",
            default=3,
            show_default=True,
            help="Sweeps of the fixed 'warmstart' baseline.",
        ),
        click.option("--epochs", default=20, show_default=True, help="Neural models: epochs."),
        click.option(
            "--delete",
            "scenario",
            default="interactions:0.01",
            show_default=True,
            help="interactions:F | users:F[:random|active|inactive] | user:N | "
            "items:N | sensitive:N",
        ),
        click.option(
            "--methods", default=None, help="Comma-separated methods (default: all for the model)."
        ),
        click.option(
            "--threshold",
            type=float,
            default=None,
            help="Keep ratings >= threshold as positives (default: every rating).",
        ),
        click.option("--test-fraction", default=0.2, show_default=True),
        click.option("--seed", default=0, show_default=True),
        click.option(
            "--json", "json_path", default=None, help="Write the JSON result here ('-' for stdout)."
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def run_from_options(
    dataset,
    model,
    factors,
    iterations,
    tol,
    regularization,
    alpha,
    solver,
    warm_sweeps,
    epochs,
    scenario,
    methods,
    threshold,
    test_fraction,
    seed,
    quiet=False,
):
    from recforget.evaluate.bench import run_bench

    if model == "als":
        params = dict(
            factors=factors,
            iterations=iterations,
            grad_tol=tol,
            regularization=regularization,
            alpha=alpha,
            solver=solver,
        )
        options = {
            "warmstart": {"sweeps": warm_sweeps},
            "retrain": {},
            "unlearn-als": {},
            "unlearn-als-selective": {},
        }
    else:
        params = dict(factors=factors, epochs=epochs)
        options = {}
    return run_bench(
        dataset,
        model=model,
        scenario=scenario,
        methods=methods.split(",") if methods else None,
        seed=seed,
        test_fraction=test_fraction,
        threshold=threshold,
        model_params=params,
        method_options=options,
        log=None if quiet else stderr,
    )


def print_result(result: dict) -> None:
    from recforget.evaluate.bench import TABLE_COLUMNS, table_rows

    click.echo(
        f"\n{result['dataset']} / {result['model']} / delete {result['scenario']} "
        f"(seed {result['seed']}): removed {result['request']}"
    )
    echo_table(table_rows(result), TABLE_COLUMNS)


@click.command()
@bench_options
@handle_errors
def bench(json_path, **kwargs):
    """Train, delete a scenario, run unlearning methods, compare against retraining."""
    result = run_from_options(**kwargs, quiet=json_path == "-")
    if json_path:
        emit_json(result, json_path)
    if json_path != "-":
        print_result(result)
