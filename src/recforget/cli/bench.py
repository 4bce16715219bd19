"""``recforget bench``: forget-vs-retrain benchmark on a real data set, JSON + table.

``--seeds`` repeats the run per seed and adds a mean/std summary; ``--preset`` runs a fixed
protocol instead of one scenario; ``--report`` and ``--plots`` write Markdown and PNG files.
"""

from __future__ import annotations

from pathlib import Path

import click

from recforget.cli._common import echo_table, emit_json, handle_errors, stderr

DEFAULT_REGULARIZATION = {"ml-100k": 60.0, "ml-1m": 100.0}


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
        click.option(
            "--factors",
            type=click.IntRange(min=1),
            default=None,
            help="Latent dimension [default: ALS 64, neural models 32, as in benchmarks/].",
        ),
        click.option(
            "--threads",
            type=click.IntRange(min=1),
            default=1,
            show_default=True,
            help="Neural models: torch threads (the neural benchmark's setting).",
        ),
        click.option(
            "--iterations",
            default=200,
            show_default=True,
            help="ALS: most sweeps for the original fit and the retrain.",
        ),
        click.option(
            "--tol",
            default=1e-4,
            show_default=True,
            help="Stationarity tolerance shared by the original fit, the retrain and "
            "the certified methods (max relative row gradient); the default is "
            "unlearn-als-selective's, the tightest certified default (docs/bench.md).",
        ),
        click.option(
            "--regularization",
            type=float,
            default=None,
            help="ALS ridge weight; default per data set (ml-100k 60, ml-1m 100: the best "
            "held-out NDCG@10 of a scan; 0.05 overfits).",
        ),
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
        click.option(
            "--epochs", type=int, default=None, help="Neural models: epochs (default: the model's)."
        ),
        click.option(
            "--delete",
            "scenario",
            default="interactions:0.01",
            show_default=True,
            help="interactions:F | users:F[:random|active|inactive] | user:N | "
            "items:N | sensitive:N[:items_per_user] | stream:N[:size]",
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
        click.option(
            "--shards",
            type=click.IntRange(min=1),
            default=10,
            show_default=True,
            help="Partition baselines (--methods ...,sisa,receraser): number of shards.",
        ),
        click.option(
            "--partition",
            default=None,
            help="Partition baselines: user | item | interaction | balanced-user | "
            "balanced-item | balanced-interaction (default: sisa user, receraser balanced-user).",
        ),
        click.option(
            "--eval-users",
            type=click.IntRange(min=1),
            default=None,
            help="Judge every row's accuracy on the same seeded sample of this many test "
            "users (default: all of them).",
        ),
        click.option("--seed", default=0, show_default=True),
        click.option(
            "--seeds",
            default=None,
            help="Comma-separated seeds (e.g. 0,1,2): one run each plus a mean/std summary.",
        ),
        click.option(
            "--preset",
            type=click.Choice(["netflix-forget"]),
            default=None,
            help="Run a fixed protocol (ALS only; --delete and --test-fraction are ignored).",
        ),
        click.option(
            "--extras/--no-extras",
            default=True,
            show_default=True,
            help="Consistency with the retrained model and membership-inference attacks.",
        ),
        click.option(
            "--lira",
            type=click.IntRange(min=0),
            default=0,
            show_default=True,
            help="Shadow models (even, >= 4) of the calibrated likelihood-ratio attack on the "
            "original, the retrain, a second-seed retrain and every method (interactions: and "
            "users: scenarios; 0: off). It fits K + 1 extra models. See docs/privacy.md.",
        ),
        click.option(
            "--json", "json_path", default=None, help="Write the JSON result here ('-' for stdout)."
        ),
        click.option("--report", "report_path", default=None, help="Write a Markdown report."),
        click.option(
            "--plots", "plots_dir", default=None, help="Write PNG plots into this folder."
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
    extras=True,
    preset=None,
    quiet=False,
    threads=1,
    shards=10,
    partition=None,
    eval_users=None,
    lira=0,
    lira_plot=None,
):
    from recforget.evaluate.bench import run_bench

    if model == "als":
        params = dict(
            factors=factors or 64,
            iterations=iterations,
            grad_tol=tol,
            regularization=(
                DEFAULT_REGULARIZATION.get(dataset, 100.0)
                if regularization is None
                else regularization
            ),
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
        params = dict(factors=factors or 32, num_threads=threads)
        if epochs is not None:
            params["epochs"] = epochs
        options = {}
    for name in ("sisa", "receraser"):  # partition baselines
        options[name] = {"shards": shards, **({"partition": partition} if partition else {})}
    if preset is not None:
        from recforget.evaluate.presets import run_preset

        if model != "als":
            raise click.UsageError(f"--preset {preset} needs --model als")
        return run_preset(
            preset,
            dataset,
            seed=seed,
            methods=methods.split(",") if methods else None,
            model_params=params,
            method_options=options,
            threshold=threshold,
            log=None if quiet else stderr,
        )
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
        extras=extras,
        eval_users=eval_users,
        lira=lira,
        lira_plot=lira_plot,
        log=None if quiet else stderr,
    )


def print_result(result: dict) -> None:
    from recforget.evaluate import report
    from recforget.evaluate.bench import TABLE_COLUMNS, table_rows

    if "results" in result:
        for r in result["results"]:
            print_result(r)
        click.echo(f"\nsummary over seeds {result['seeds']} (mean ± std)")
        echo_table(*report.summary_rows(result["summary"]))
        return
    if "scenarios" in result:
        click.echo(
            f"\n{result['preset']}: {result['dataset']} (seed {result['seed']}), original AUC "
            f"{result['original']['auc']:.4f}"
        )
        echo_table(report.preset_rows(result), report.PRESET_COLUMNS)
        return
    click.echo(
        f"\n{result['dataset']} / {result['model']} / delete {result['scenario']} "
        f"(seed {result['seed']}): removed {result['request']}"
    )
    echo_table(table_rows(result), TABLE_COLUMNS)
    n_shadows = (result.get("lira") or {}).get("n_shadows")
    notes = []
    if result.get("compile_seconds") is not None:  # older result files have no such entry
        notes.append(f"kernels compiled in {result['compile_seconds']:.2f}s before any timing")
    ev = result.get("evaluation") or {}
    if ev.get("sampled"):
        notes.append(
            f"accuracy of every row on the same {ev['users']} of {ev['of']} test users "
            f"(seed {ev['seed']})"
        )
    if result["original"].get("prepare_seconds") is not None:
        notes.append(
            f"AltEraser's curvature prepared once in {result['original']['prepare_seconds']:.2f}s "
            "(ahead of the request, as deployed)"
        )
    click.echo("; ".join(notes))
    for title, rows, columns in (
        ("consistency with retrain", report.consistency_rows(result), report.CONSISTENCY_COLUMNS),
        ("membership inference (AUC)", report.attack_rows(result), report.ATTACK_COLUMNS),
        (
            "partition baselines (ensemble fit, forget, NDCG@10 before and after)",
            report.partition_rows(result),
            report.PARTITION_COLUMNS,
        ),
        ("stream checkpoints", report.stream_rows(result), report.STREAM_COLUMNS),
        (
            f"calibrated membership inference (LiRA, {n_shadows} shadows; 95% intervals)",
            report.lira_table(result),
            report.LIRA_COLUMNS,
        ),
    ):
        if rows:
            click.echo(f"\n{title}")
            echo_table(rows, columns)


def parse_seeds(text: str | None) -> list[int] | None:
    """``"0,1,2"`` -> ``[0, 1, 2]`` (``None`` for no text)."""
    if not text:
        return None
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError as exc:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of integers") from exc
    if not seeds:
        raise click.BadParameter("--seeds names no seed")
    return seeds


@click.command()
@bench_options
@handle_errors
def bench(json_path, report_path, plots_dir, seeds, **kwargs):
    """Train, delete a scenario, run unlearning methods, compare against retraining."""
    quiet = json_path == "-"
    seed = kwargs.pop("seed")
    seed_list = parse_seeds(seeds) or [seed]
    results = []
    for k, seed in enumerate(seed_list):
        if len(seed_list) > 1 and not quiet:
            stderr(f"--- seed {seed} ({k + 1}/{len(seed_list)})")
        lira_plot = None
        if plots_dir and kwargs.get("lira"):
            Path(plots_dir).mkdir(parents=True, exist_ok=True)
            lira_plot = Path(plots_dir) / f"lira_roc_seed{seed}.png"
        results.append(run_from_options(**kwargs, seed=seed, quiet=quiet, lira_plot=lira_plot))
    if len(results) == 1:
        result = results[0]
    else:
        from recforget.evaluate.report import aggregate

        result = {"seeds": seed_list, "results": results, "summary": aggregate(results)}
    if json_path:
        emit_json(result, json_path)
    if json_path != "-":
        print_result(result)
    if report_path:
        from recforget.evaluate.report import write_report

        write_report(result, report_path)
        stderr(f"report written to {report_path}")
    if plots_dir:
        from recforget.evaluate.plots import write_plots

        written = write_plots(result, plots_dir)
        stderr(f"{len(written)} plots written to {plots_dir}")
