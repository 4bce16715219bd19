"""``recforget demo``: the README's main job on MovieLens 100K."""

from __future__ import annotations

import click

from recforget.cli._common import emit_json, handle_errors


@click.command()
@click.option(
    "--dataset", type=click.Choice(["ml-100k", "ml-1m"]), default="ml-100k", show_default=True
)
@click.option("--delete", "scenario", default="interactions:0.01", show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "json_path", default=None, help="Also write the JSON result here.")
@handle_errors
def demo(dataset, scenario, seed, json_path):
    """Fetch MovieLens, train ALS, forget 1% of interactions, compare with retraining."""
    from recforget.cli.bench import print_result, run_from_options

    result = run_from_options(
        dataset=dataset,
        model="als",
        factors=64,
        iterations=200,
        tol=1e-4,  # recforget bench's default: one certificate for every row
        regularization=None,
        alpha=10.0,
        solver="cholesky",
        warm_sweeps=3,
        epochs=None,
        scenario=scenario,
        methods=None,
        threshold=None,
        test_fraction=0.2,
        seed=seed,
    )
    print_result(result)
    if json_path:
        emit_json(result, json_path)
    click.echo(
        "\ndeleted_score: mean score of the deleted pairs (the trace to remove); "
        "gap_closed: share of the original->retrain gap closed; residual: max relative "
        "row gradient of the retraining objective (certified when <= tol)."
    )
