"""Calibrated membership inference (LiRA) on the original, two retrains and the unlearners.

Loads a data set (every rating an implicit positive), holds out 20% at random (seeded), trains
the original model, draws a seeded deletion request from a scenario and builds:

* ``original``: the untouched model;
* ``retrain``: the oracle, ``recforget.forget(original, request, "retrain")`` (same seed);
* ``retrain-seed2``: ``clone(original)`` with another seed fitted on the remaining data, the
  spread between two equally valid retrains;
* every method (ALS: ``unlearn-als``, ``unlearn-als-selective``; NCF: ``alteraser``), through
  :func:`recforget.forget`; ``--method 'unlearn-als tol=0.001'`` passes options (values read
  as JSON) and labels the row with the whole spec.

Then the attack on each model (shadows are trained once and shared):

* ``interactions:`` scenarios: interaction-level LiRA
  (:func:`recforget.evaluate.lira.lira_rows`) on the deleted pairs (members) against as many
  held-out positives of the same users, drawn user by user in the members' counts
  (non-members, :func:`~recforget.evaluate.lira.matched_non_members`);
* ``users:`` scenarios: as many random users as are deleted are held out of the data before
  the split (non-members), and user-level LiRA
  (:func:`recforget.evaluate.lira.user_lira_rows`) runs on the deleted users against them,
  with the MIARS statistic (variants ``online``, ``offline``, ``score``) and, for ALS, the
  fold-in statistic as well (``fold-in online``, ...).

    python benchmarks/lira.py --dataset ml-1m --model als --scenario interactions:0.01 \\
        [--shadows 16] [--tol 1e-4] [--seed 0] [--json out.json] [--plot out.png]

BLAS and torch run on one thread. The JSON fields are documented in docs/privacy.md; a table
is printed to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


ALS_METHODS = ("unlearn-als", "unlearn-als-selective")
NCF_METHODS = ("alteraser",)
ALS_REGULARIZATION = {"ml-100k": 60.0, "ml-1m": 100.0}  # the bench's defaults


def build_model(args: argparse.Namespace):
    if args.model == "als":
        from recforget.models.als import ALS

        return ALS(
            64,
            regularization=ALS_REGULARIZATION.get(args.dataset, 100.0),
            alpha=10.0,
            iterations=200,
            grad_tol=args.tol,
            random_state=args.seed,
        )
    from recforget.models.ncf import NCF

    params = {"num_threads": args.threads, **json.loads(args.model_params)}
    return NCF(args.model, random_state=args.seed, **params)


def run(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    from recforget.data.split import random_holdout
    from recforget.evaluate.bench import prepare_data
    from recforget.evaluate.lira_bench import check_scenario, run_lira
    from recforget.evaluate.scenarios import Scenario, make_request
    from recforget.unlearn import forget

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    scenario = Scenario.parse(args.scenario)
    try:
        check_scenario(scenario.kind)
    except ValueError as exc:
        raise SystemExit(str(exc)) from exc
    name, data = prepare_data(args.dataset)
    full = data
    reserved: list[object] = []
    if scenario.kind != "interactions":  # non-member users: held out before anything is fitted
        probe = make_request(data, args.scenario, random_state=args.seed + 3)
        reserved = list(probe.users)
        data = data.drop_users(reserved)
    train, test = random_holdout(data, 0.2, random_state=args.seed)
    original = build_model(args)
    start = time.perf_counter()
    original.fit(train)
    fit_seconds = time.perf_counter() - start
    log(f"{name}: {train.nnz} training pairs; original fitted in {fit_seconds:.1f}s")
    request = make_request(train, args.scenario, random_state=args.seed + 1)

    models: dict[str, Any] = {}
    timing: dict[str, Any] = {"original": {"seconds": fit_seconds}}
    result = forget(original, request, "retrain")
    models["retrain"] = result.model
    timing["retrain"] = {"seconds": result.receipt["seconds"]}
    methods = args.method or (ALS_METHODS if args.model == "als" else NCF_METHODS)
    for spec in methods:
        method, options = parse_method(spec)
        r = forget(original, request, method, **options)
        models[spec] = r.model
        timing[spec] = {
            "seconds": r.receipt["seconds"],
            "certified": r.receipt.get("certified"),
            "residual": r.receipt.get("certificate", {}).get("max_relative"),
            "sweeps": r.receipt.get("sweeps"),
        }
        log(f"  {spec}: {r.receipt['seconds']:.2f}s")

    attack, curves = run_lira(
        original,
        models,
        request,
        train=train,
        test=test,
        histories=full,
        non_member_users=reserved,
        remaining=result.data,
        n_shadows=args.shadows,
        seed=args.seed,
        transform=args.transform,
        variance=args.variance,
        n_bootstrap=args.bootstrap,
        log=log,
    )
    timing["retrain-seed2"] = {"seconds": attack.pop("timing")["retrain-seed2"]}
    out = {
        "dataset": name,
        "model": args.model,
        "scenario": str(scenario),
        "seed": args.seed,
        "params": _jsonable(original.get_params()),
        "threads": 1,
        "n_train": train.nnz,
        **attack,
        "timing": timing,
    }
    return out, curves


def parse_method(spec: str) -> tuple[str, dict[str, Any]]:
    """``"unlearn-als tol=0.001"`` -> ``("unlearn-als", {"tol": 0.001})`` (values read as JSON)."""
    name, *opts = spec.split()
    options: dict[str, Any] = {}
    for opt in opts:
        key, _, value = opt.partition("=")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return name, options


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in params.items()}


def table(out: dict[str, Any]) -> str:
    from recforget.evaluate.lira_bench import HEADLINE

    lines = [
        f"{out['dataset']} {out['model']} {out['scenario']}: {out['n_members']} members, "
        f"{out['n_non_members']} non-members, {out['n_shadows']} shadows "
        f"({out['shadow_seconds']:.0f}s), transform {out['transform']}",
        f"{'model':24} {'variant':8} " + " ".join(f"{m + ' [95% CI]':>28}" for m in HEADLINE),
    ]
    for label, row in out["rows"].items():
        for variant, m in row.items():
            cells: list[str] = []
            for k in HEADLINE:
                ci = m[f"{k}_ci"]
                text = f"{m[k]:.4f}" + (f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "")
                cells.append(f"{text:>28}")
            lines.append(f"{label:24} {variant:8} " + " ".join(cells))
    sep = out["verdict"]["separates"]
    lines.append("original vs retrain intervals separate: " + json.dumps(sep))
    return "\n".join(lines)


def markdown(out: dict[str, Any]) -> str:
    """The run as a Markdown table: one row per model and attack variant."""

    def cell(m: dict[str, Any], key: str) -> str:
        ci = m[f"{key}_ci"]
        return f"{m[key]:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{m[key]:.3f}"

    head = (
        f"**{out['dataset']} {out['model']} {out['scenario']}**: {out['n_members']} members, "
        f"{out['n_non_members']} non-members, {out['n_shadows']} shadows "
        f"({out['shadow_seconds']:.0f} s), `φ` = {out['transform']}\n\n"
        "| model | attack | AUC [95% CI] | TPR@0.1%FPR [95% CI] | TPR@1%FPR [95% CI] |\n"
        "|---|---|---|---|---|"
    )
    lines = [head]
    for label, row in out["rows"].items():
        for variant, m in row.items():
            lines.append(
                f"| {label} | {variant} | {cell(m, 'auc')} | {cell(m, 'tpr@0.1%fpr')} | "
                f"{cell(m, 'tpr@1%fpr')} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="ml-100k", choices=["ml-100k", "ml-1m"])
    p.add_argument("--model", default="als", choices=["als", "gmf", "neumf", "mlp"])
    p.add_argument("--scenario", default="interactions:0.01")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shadows", type=int, default=16, help="shadow models (even)")
    p.add_argument(
        "--tol",
        type=float,
        default=1e-4,
        help="ALS: the original's grad_tol, shared by the retrains, the shadows and the "
        "certified methods (recforget bench's default)",
    )
    p.add_argument("--transform", default="auto", help="score transform (see lira.py)")
    p.add_argument("--variance", default="global", choices=["global", "per-pair"])
    p.add_argument("--bootstrap", type=int, default=500, help="bootstrap resamples")
    p.add_argument("--threads", type=int, default=1, help="torch threads (NCF)")
    p.add_argument("--model-params", default="{}", help="JSON of extra NCF parameters")
    p.add_argument(
        "--method", action="append", help="method [key=value ...] (forget options); repeatable"
    )
    p.add_argument("--json", default=None, help="write the JSON here")
    p.add_argument(
        "--plot",
        default=None,
        help="write the log-log ROC (online LiRA; fold-in for ALS users) here",
    )
    p.add_argument(
        "--markdown", nargs="+", default=None, help="print earlier --json results as Markdown"
    )
    args = p.parse_args(argv)
    if args.markdown:
        for path in args.markdown:
            with open(path) as f:
                print(markdown(json.load(f)) + "\n")
        return 0
    out, curves = run(args)
    text = json.dumps(out, indent=1)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    else:
        print(text)
    if args.plot:
        from recforget.evaluate.lira_bench import plot_lira

        what = f"{out['dataset']} {out['model']} {out['scenario']}, {out['n_shadows']} shadows"
        plot_lira(curves, args.plot, what=what)
    print(table(out), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
