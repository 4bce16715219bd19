"""NCF unlearning against retraining, in one run: time, trace in the deleted pairs, MIA, NDCG.

Loads a data set (every rating an implicit positive), holds out 20% at random, trains the
original NCF model, draws a seeded deletion request from a scenario, and applies each method to
the same model and request: ``retrain`` (the oracle, same seed), ``finetune`` (AdamW warm
start), ``alteraser`` and ``influence``. For every model, the untouched original included:

* ``seconds`` and ``speedup`` (retrain seconds over the method's);
* ``deleted_score``: mean predicted probability of the deleted pairs, and ``gap_closed``, the
  fraction of the original-to-retrain gap in it that the method closes;
* ``mia_auc``: interaction membership inference
  (:func:`recforget.evaluate.attacks.interaction_mia`, score feature) of the deleted pairs
  against as many never-trained pairs of the same users
  (:func:`~recforget.evaluate.attacks.sample_non_members`, held-out positives first);
* ``ndcg@10`` on the held-out pairs, every model ranking all items but the remaining training
  ones;
* ``residual``: the retraining objective's certificate (``max_relative``) where reported.

Fine-tuning is also traced epoch by epoch (training seconds only), up to the original's epoch
count or retrain's time, once per ``--finetune-lr`` (AdamW at that constant step size; default
the model's ``lr``): ``finetune_traces`` gives, for each, the first epoch at which it closes 90%
of the gap, is within 0.02 of retrain's MIA AUC *and* within 1% of its NDCG@10, and
``finetune_trace`` is the one that gets there soonest (an annealed original is knocked off its
minimum by its own peak step size, so a smaller one is the fair baseline).

With ``users:`` scenarios the deleted users leave the model, so their pairs cannot be scored
directly; the trace columns come from the fold-in probe instead
(:mod:`recforget.evaluate.foldin`): each deleted user is folded into every model from three
quarters of their history (item side and shared weights fixed, one common ridge), then the
other quarter (members) and as many of their held-out positives (non-members) are scored.
``deleted_score`` is the members' mean probability and ``mia_auc`` members against
non-members.

    python benchmarks/ncf_unlearn.py [--dataset ml-100k|ml-1m] [--arch gmf|neumf]
        [--scenario interactions:0.01|users:0.01] [--seed 0] [--threads 1]
        [--method 'alteraser' --method 'alteraser max_rounds=3' ...] [--json out.json]

``--lira K`` (off by default) adds ``lira``: the calibrated likelihood-ratio attack with ``K``
shadow models on the original, the retrain, a second-seed retrain (seed + 1000) and every method
(:func:`recforget.evaluate.lira_bench.run_lira`; fields in docs/privacy.md), and ``--lira-plot``
writes its log-log ROC. With ``users:`` scenarios it holds random users out of the data before the
original is fitted (the attack's non-members, as ``recforget bench`` does), so such runs differ
from runs without ``--lira``. ``--lira-cache DIR`` keeps the shadows and the retrains the attack
fits (which do not depend on the methods) in ``DIR`` and reuses them in a later run of the same
settings; with ``--load`` and without ``--method retrain`` (the attack then fits the oracle
itself, or loads it) that run costs the methods and the attack's scoring only, the way to compare
variants of one method (``lira.cached`` says what was reused).

A ``--method`` is a method name optionally followed by ``key=value`` options (values parsed as
JSON), so variants of one method can run side by side: ``--method 'retrain random_state=1'``
adds a second-seed retrain, the spread between two equally valid retrains. Prints one JSON
object, then a table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np

from recforget.evaluate import gap_closed

DEFAULT_METHODS = ("retrain", "finetune", "alteraser", "influence")
GAP_TARGET = 0.9
MIA_TOLERANCE = 0.02
NDCG_TOLERANCE = 0.01  # relative


def _parse_method(spec: str) -> tuple[str, str, dict[str, Any]]:
    name, *opts = spec.split()
    options: dict[str, Any] = {}
    for opt in opts:
        key, _, value = opt.partition("=")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return spec, name, options


class _Judge:
    """Scores any model on the same deleted pairs, non-members and test set."""

    def __init__(self, request, remaining, test_after, non_members, probe=None, reg=None) -> None:
        self.pairs = list(request.pairs)
        self.remaining = remaining
        self.test = test_after
        self.non_members = non_members
        self.probe = probe  # users: scenarios, see recforget.evaluate.foldin
        self.reg = reg

    def trace(self, model) -> dict[str, float | None]:
        from recforget.evaluate.attacks import interaction_mia
        from recforget.evaluate.foldin import fold_in_trace

        if self.probe is not None:
            r = fold_in_trace(model, self.probe, reg=self.reg)
            return {"deleted_score": r["deleted_score"], "mia_auc": r["auc"]}
        if not self.pairs:
            return {"deleted_score": None, "mia_auc": None}
        u = [p[0] for p in self.pairs]
        i = [p[1] for p in self.pairs]
        return {
            "deleted_score": float(np.mean(model.predict_proba(u, i))),
            "mia_auc": float(interaction_mia(model, self.pairs, self.non_members)["auc"]),
        }

    def __call__(self, model) -> dict[str, float | None]:
        from recforget.evaluate.accuracy import evaluate_ranking

        metrics = evaluate_ranking(model, self.remaining, self.test, ks=(10,))
        return {**self.trace(model), "ndcg@10": float(metrics["ndcg@10"])}


def _finetune_trace(
    original, removal, judge, retrain: dict, max_epochs: int, lr: float | None = None
) -> dict[str, Any]:
    """Fine-tune epoch by epoch at step size ``lr``; training time only, evaluation excluded."""
    from recforget.unlearn.ncf import transplant

    start = time.perf_counter()
    new = transplant(original, removal, negatives=False)
    rng = np.random.default_rng([new.seed_, 1])
    trainer = new.trainer(removal.data, lr=lr, random_state=rng)
    spent = time.perf_counter() - start
    epochs, reached = [], None
    for epoch in range(1, max_epochs + 1):
        t0 = time.perf_counter()
        with new._threads():
            trainer.train_epoch()
        spent += time.perf_counter() - t0
        row = {"epoch": epoch, "seconds": spent, **judge(new)}
        epochs.append(row)
        if reached is None and _meets(row, judge.orig, retrain):
            reached = row
        if reached is not None or spent > retrain["seconds"]:
            break
    trainer.finalize()
    return {"lr": trainer.lr, "epochs": epochs, "reached": reached}


def _fastest(traces: list[dict[str, Any]]) -> dict[str, Any]:
    """The trace that reaches the target soonest (the first one when none does)."""
    done = [t for t in traces if t["reached"] is not None]
    return min(done, key=lambda t: t["reached"]["seconds"]) if done else traces[0]


def misses(row: dict, orig: dict, retrain: dict) -> list[str]:
    """The quality criteria ``row`` misses against ``retrain``: "gap", "MIA", "NDCG"."""
    gap = gap_closed(orig["deleted_score"], retrain["deleted_score"], row["deleted_score"])
    out = []
    if gap is None or gap < GAP_TARGET:
        out.append("gap")
    if (
        row["mia_auc"] is None
        or retrain["mia_auc"] is None
        or abs(row["mia_auc"] - retrain["mia_auc"]) > MIA_TOLERANCE
    ):
        out.append("MIA")
    if abs(row["ndcg@10"] / retrain["ndcg@10"] - 1) > NDCG_TOLERANCE:
        out.append("NDCG")
    return out


def _meets(row: dict, orig: dict, retrain: dict) -> bool:
    return not misses(row, orig, retrain)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from recforget.data.split import random_holdout
    from recforget.evaluate.attacks import sample_non_members
    from recforget.evaluate.bench import prepare_data
    from recforget.evaluate.extras import reserve_users
    from recforget.evaluate.foldin import fold_in_split
    from recforget.evaluate.lira_bench import check_scenario, run_lira
    from recforget.evaluate.rows import align
    from recforget.evaluate.scenarios import WHOLE_USER_KINDS, Scenario, make_request
    from recforget.evaluate.warmup import warm_up
    from recforget.models.ncf import NCF
    from recforget.unlearn import forget
    from recforget.unlearn.ncf import prepare

    name, data = prepare_data(args.dataset)
    train, test = random_holdout(data, 0.2, random_state=args.seed)
    scenario = Scenario.parse(args.scenario)
    reserved = np.empty(0, dtype=object)
    if args.lira:
        check_scenario(scenario.kind)
        if scenario.kind in WHOLE_USER_KINDS:  # the attack's non-member users
            train, test, reserved = reserve_users(train, test, scenario, args.seed)
    params = {"num_threads": args.threads, **json.loads(args.model_params)}
    specs = [_parse_method(spec) for spec in args.method or DEFAULT_METHODS]
    template = NCF(args.arch, random_state=args.seed, **params)
    compile_seconds = warm_up(template, [m for _, m, _ in specs], {m: o for _, m, o in specs})
    if args.load:  # a model saved by an earlier run of the same settings (fits are seeded)
        original = NCF.load(args.load)
        fit_seconds = float(sum(original.epoch_seconds_)) if original.epoch_seconds_ else None
    else:
        original = NCF(args.arch, random_state=args.seed, **params)
        start = time.perf_counter()
        original.fit(train)
        fit_seconds = time.perf_counter() - start
        if args.save:
            original.save(args.save)
    request = make_request(train, args.scenario, random_state=args.seed + 1)
    removal = train.remove(pairs=request.pairs, users=request.users, items=request.items)
    test_after = align(test, request)
    users = sorted({p[0] for p in request.pairs}, key=str)
    non_members = sample_non_members(
        train, test, len(request.pairs), args.seed + 2, users=users or None
    )
    probe = None
    if request.users and not request.pairs:
        probe = fold_in_split(train, test, request.users, args.seed + 2)
    reg = getattr(original, "objective_reg_", None)
    judge = _Judge(request, removal.data, test_after, non_members, probe, reg)
    print(
        f"{name}: {train.nnz} train, {removal.n_removed} removed; fit seconds {fit_seconds}",
        file=sys.stderr,
    )
    orig = {"method": "original", "seconds": fit_seconds, **judge(original)}
    # certificate of the untouched model on its own objective; also caches its fixed sample
    orig["residual"] = original.certify()["certificate"]["max_relative"]
    # AltEraser's curvature, prepared once ahead of any deletion (timed on its own)
    start = time.perf_counter()
    prepare(original)
    orig["prepare_seconds"] = time.perf_counter() - start
    judge.orig = orig
    runs, models = [], {}
    for label, method, options in specs:
        result = forget(original, request, method, **options)
        models[label] = result.model
        r = result.receipt
        row = {
            "method": label,
            "seconds": r["seconds"],
            "residual": r.get("certificate", {}).get("max_relative"),
            "certified": r.get("certified"),
            "anchored_residual": r.get("anchored_residual"),
            "rounds": r.get("rounds"),
            "stop_reason": r.get("stop_reason"),
            "prepared": r.get("prepared"),
            **judge(result.model),
        }
        runs.append(row)
        print(f"  {label}: {r['seconds']:.2f}s", file=sys.stderr)
    retrain = next((r for r in runs if r["method"] == "retrain"), None)
    for row in [orig, *runs]:
        row["speedup"] = retrain["seconds"] / row["seconds"] if retrain and row["seconds"] else None
        row["gap_closed"] = gap_closed(
            orig["deleted_score"], retrain and retrain["deleted_score"], row["deleted_score"]
        )
        if retrain and retrain["mia_auc"] is not None and row["mia_auc"] is not None:
            row["mia_minus_retrain"] = row["mia_auc"] - retrain["mia_auc"]
        if retrain:
            row["ndcg_vs_retrain"] = row["ndcg@10"] / retrain["ndcg@10"] - 1
    out: dict[str, Any] = {
        "dataset": name,
        "arch": args.arch,
        "scenario": args.scenario,
        "seed": args.seed,
        "compile_seconds": compile_seconds,
        "params": {k: v for k, v in original.get_params().items() if k != "random_state"},
        "removed": removal.n_removed,
        "trace": "fold-in probe" if probe else "deleted pairs",
        "original": orig,
        "runs": runs,
    }
    out["params"]["layers"] = list(out["params"]["layers"])
    out["params"]["device"] = str(out["params"]["device"])
    if args.lira:
        out["lira"], curves = run_lira(
            original,
            models,
            request,
            train=train,
            test=test,
            histories=data,
            non_member_users=reserved.tolist(),
            remaining=removal.data,
            n_shadows=args.lira,
            seed=args.seed,
            cache=args.lira_cache,
            log=lambda msg: print(msg, file=sys.stderr, flush=True),
        )
        if args.lira_plot:
            from recforget.evaluate.lira_bench import plot_lira

            what = f"{name} {args.arch} {args.scenario}, {args.lira} shadows"
            plot_lira(curves, args.lira_plot, what=what)
    if retrain and (request.pairs or probe) and args.finetune_trace:
        max_epochs = args.finetune_max_epochs or int(original.epochs)
        traces = [
            _finetune_trace(original, removal, judge, retrain, max_epochs, lr)
            for lr in args.finetune_lr or [None]
        ]
        out["finetune_traces"] = traces
        out["finetune_trace"] = _fastest(traces)
    return out


def table(result: dict[str, Any]) -> str:
    cols = [
        ("method", "{}"),
        ("seconds", "{:.2f}"),
        ("speedup", "{:.1f}"),
        ("deleted_score", "{:.4f}"),
        ("gap_closed", "{:.3f}"),
        ("mia_auc", "{:.4f}"),
        ("ndcg@10", "{:.4f}"),
        ("ndcg_vs_retrain", "{:+.2%}"),
        ("residual", "{:.2e}"),
        ("anchored_residual", "{:.2e}"),
    ]
    rows = [result["original"], *result["runs"]]
    cells = [[c for c, _ in cols]] + [
        [fmt.format(r[c]) if r.get(c) is not None else "-" for c, fmt in cols] for r in rows
    ]
    widths = [max(len(row[k]) for row in cells) for k in range(len(cols))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    for trace in result.get("finetune_traces", []):
        lines.append(
            f"finetune at lr {trace.get('lr')} per epoch "
            "(training seconds, deleted score, MIA AUC, NDCG@10):"
        )
        for e in trace["epochs"]:
            lines.append(
                f"  epoch {e['epoch']}: {e['seconds']:.2f}s  {e['deleted_score']:.4f}  "
                f"{e['mia_auc']:.4f}  {e['ndcg@10']:.4f}"
            )
        reached = trace["reached"]
        lines.append(
            f"  reaches the target at epoch {reached['epoch']} ({reached['seconds']:.2f}s)"
            if reached
            else "  never reaches the target (90% gap, MIA within 0.02, NDCG within 1%) in budget"
        )
    if result.get("lira"):
        from recforget.evaluate.report import LIRA_COLUMNS, lira_table

        lira = result["lira"]
        lines.append(f"LiRA ({lira['level']} level, {lira['n_shadows']} shadows; 95% intervals):")
        for row in lira_table(result):
            lines.append("  " + "  ".join(f"{row[c]}" for c in LIRA_COLUMNS))
    return "\n".join(lines)


def _step_size(text: str) -> float:
    """argparse type of ``--finetune-lr``: refused at parse time, before any model is trained."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (np.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"a step size must be a positive number, got {text!r}")
    return value


def parser() -> argparse.ArgumentParser:
    """The command line (``run`` takes its namespace; ``dataset`` may be set to Interactions)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--arch", default="gmf", choices=["gmf", "mlp", "neumf"])
    p.add_argument("--scenario", default="interactions:0.01")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (num_threads)")
    p.add_argument("--model-params", default="{}", help="JSON of extra NCF parameters")
    p.add_argument("--method", action="append", help="method [key=value ...]; repeatable")
    p.add_argument("--no-finetune-trace", dest="finetune_trace", action="store_false")
    p.add_argument("--finetune-max-epochs", type=int, default=None)
    p.add_argument(
        "--finetune-lr",
        type=_step_size,
        action="append",
        help="step size of a fine-tune trace (repeatable; the fastest to reach the target "
        "is the one judged); default the model's lr",
    )
    p.add_argument("--json", default=None, help="also write the JSON here")
    p.add_argument("--load", default=None, help="load the original model from this folder")
    p.add_argument("--save", default=None, help="save the fitted original model here")
    p.add_argument(
        "--lira",
        type=_shadow_count,
        default=0,
        help="shadow models of the LiRA attack (even; 0: off)",
    )
    p.add_argument("--lira-plot", default=None, help="with --lira: write its log-log ROC here")
    p.add_argument(
        "--lira-cache",
        default=None,
        help="with --lira: keep (and reuse) the shadows and the attack's retrains here",
    )
    return p


def _shadow_count(text: str) -> int:
    """argparse type of ``--lira``: 0 or an even number >= 4."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0 or value % 2 or value == 2:
        raise argparse.ArgumentTypeError(f"--lira needs 0 or an even count >= 4, got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    result = run(args)
    text = json.dumps(result, indent=1, default=float)
    print(text)
    if args.json:
        with open(args.json, "w") as fh:
            fh.write(text)
    print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
