"""Forget-vs-retrain benchmark: train, delete, run each unlearning method, compare.

One run: load a data set, hold out a test set, fit the original model, draw a seeded deletion
request from a scenario, apply every method to the same model and request, and measure time,
speed-up over retraining, the stationarity certificate, held-out accuracy, and the trace left
in the deleted pairs (their mean score under each model; ``gap_closed`` is the fraction of the
original-to-retrain gap that a method closes). The untouched original model is reported beside
the methods: a small deletion barely moves global accuracy, so the trace is what shows
forgetting.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from recforget.data.interactions import Interactions
from recforget.evaluate.scenarios import Scenario, make_request
from recforget.unlearn import DeletionRequest, unlearn

ALS_METHODS = ("retrain", "warmstart", "unlearn-als", "unlearn-als-selective")
NEURAL_METHODS = ("retrain", "finetune", "alteraser", "influence")
NEURAL_ARCHS = ("gmf", "mlp", "neumf")


def prepare_data(
    dataset: str | Interactions, *, threshold: float | None = None
) -> tuple[str, Interactions]:
    """Load a data set by name and make it implicit feedback.

    With ``threshold=None`` every rating is a positive (value 1); otherwise ratings below the
    threshold are dropped.
    """
    from recforget.data import datasets, transforms

    if isinstance(dataset, Interactions):
        name, data = "custom", dataset
    else:
        name, data = dataset, datasets.load(dataset)
    if threshold is None:
        data = data.with_values(np.ones(data.nnz))
    else:
        data = transforms.to_implicit(data, threshold=threshold)
    return name, data


def default_model(model: str, seed: int, **params: Any):
    """The model a benchmark trains: ALS, or a neural recommender by architecture name."""
    if model == "als":
        from recforget.models.als import ALS

        return ALS(random_state=seed, **params)
    if model in NEURAL_ARCHS:
        from recforget.models.ncf import NCF

        return NCF(arch=model, random_state=seed, **params)
    raise ValueError(f"unknown model {model!r}; choose als, gmf, mlp or neumf")


def align(test: Interactions, request: DeletionRequest) -> Interactions:
    """The test set without the users/items the request removes (vocabularies follow)."""
    if not request.users and not request.items:
        return test
    return test.remove(users=request.users, items=request.items, missing="ignore").data


def deleted_pair_scores(model, request: DeletionRequest) -> float | None:
    """Mean score of the request's pairs under ``model`` (``None`` without pairs)."""
    if not request.pairs:
        return None
    users = [p[0] for p in request.pairs]
    items = [p[1] for p in request.pairs]
    scorer = getattr(model, "predict_proba", None) or model.score
    return float(np.mean(scorer(users, items)))


def run_bench(
    dataset: str | Interactions = "ml-100k",
    *,
    model: str = "als",
    scenario: str = "interactions:0.01",
    methods: Sequence[str] | None = None,
    seed: int = 0,
    test_fraction: float = 0.2,
    threshold: float | None = None,
    model_params: dict[str, Any] | None = None,
    method_options: dict[str, dict[str, Any]] | None = None,
    evaluate: Callable | None = None,
    ks: Sequence[int] = (10,),
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run one benchmark and return its JSON-ready result.

    Returns
    -------
    dict
        ``{"dataset", "model", "scenario", "seed", "params", "request", "original": {...},
        "runs": [{"method", "seconds", "speedup", "residual", "certified", "sweeps",
        "rows_solved", "deleted_mean_score", "gap_closed", "metrics": {...}}, ...]}``.
        ``speedup`` is retrain seconds over the method's seconds (``None`` without a
        retrain run); ``residual`` is the max relative row gradient of the retraining objective.
    """
    from recforget.data.split import random_holdout
    from recforget.evaluate.accuracy import evaluate_ranking

    say = log or (lambda _msg: None)
    evaluate = evaluate or evaluate_ranking
    sc = Scenario.parse(scenario)
    methods = list(methods or (ALS_METHODS if model == "als" else NEURAL_METHODS))
    method_options = method_options or {}
    name, data = prepare_data(dataset, threshold=threshold)
    train, test = random_holdout(data, test_fraction, random_state=seed)
    say(
        f"{name}: {data.n_users} users x {data.n_items} items, {train.nnz} train / "
        f"{test.nnz} test interactions"
    )

    original = default_model(model, seed, **(model_params or {}))
    start = time.perf_counter()
    original.fit(train)
    fit_seconds = time.perf_counter() - start
    say(f"original {model} fitted in {fit_seconds:.2f}s")
    request = make_request(train, sc, random_state=seed + 1)
    test_after = align(test, request)

    # the untouched model, judged on the same test set and on the retraining objective
    orig_row = _original_row(original, request, train, test_after, evaluate, ks)
    orig_row["fit_seconds"] = fit_seconds
    runs = []
    for method in methods:
        options = dict(method_options.get(method, {}))
        say(f"running {method} ...")
        result = unlearn(original, None, request, method, **options)
        r = result.receipt
        metrics = evaluate(result.model, result.data, test_after, ks=ks)
        runs.append(
            {
                "method": method,
                "seconds": r["seconds"],
                "residual": r.get("certificate", {}).get("max_relative", r.get("residual")),
                "certified": r.get("certified"),
                "sweeps": r.get("sweeps"),
                "rows_solved": r.get("rows_solved"),
                "objective": r.get("objective"),
                "deleted_mean_score": deleted_pair_scores(result.model, request),
                "metrics": _floats(metrics),
            }
        )
        say(f"  {method}: {r['seconds']:.3f}s")
    retrain = next((run for run in runs if run["method"] == "retrain"), None)
    for run in runs:
        run["speedup"] = (
            retrain["seconds"] / run["seconds"]
            if retrain is not None and run["seconds"] > 0
            else None
        )
        run["gap_closed"] = _gap_closed(
            orig_row["deleted_mean_score"],
            retrain and retrain["deleted_mean_score"],
            run["deleted_mean_score"],
        )
    params = original.get_params()
    params.pop("show_progress", None)
    return {
        "dataset": name,
        "model": model,
        "scenario": str(sc),
        "seed": seed,
        "params": {k: v for k, v in params.items() if _jsonable(v)},
        "data": {
            "n_users": data.n_users,
            "n_items": data.n_items,
            "train": train.nnz,
            "test": test.nnz,
        },
        "request": {
            "pairs": len(request.pairs),
            "users": len(request.users),
            "items": len(request.items),
        },
        "original": orig_row,
        "runs": runs,
    }


def _original_row(original, request, train, test_after, evaluate, ks) -> dict[str, Any]:
    removal = train.remove(pairs=request.pairs, users=request.users, items=request.items)
    residual = None
    objective = None
    if hasattr(original, "objective"):  # ALS: the old factors on the retraining objective
        from recforget.unlearn.als import transplant

        stay = transplant(original, removal)
        cert = stay.stationarity()
        residual, objective = cert["max_relative"], stay.loss()
        model_for_eval = stay
    elif hasattr(original, "retraining_residual"):
        residual = original.retraining_residual(removal.data)
        model_for_eval = original.without(removal) if hasattr(original, "without") else None
    else:  # pragma: no cover
        model_for_eval = None
    metrics = evaluate(model_for_eval, removal.data, test_after, ks=ks) if model_for_eval else {}
    return {
        "method": "original",
        "residual": residual,
        "objective": objective,
        "deleted_mean_score": deleted_pair_scores(original, request),
        "metrics": _floats(metrics),
    }


def _gap_closed(orig: float | None, retrain: float | None, method: float | None):
    if orig is None or retrain is None or method is None or orig == retrain:
        return None
    return float((orig - method) / (orig - retrain))


def _floats(d: dict) -> dict:
    return {k: float(v) for k, v in d.items()}


def _jsonable(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str, list, tuple))


TABLE_COLUMNS = [
    "method",
    "seconds",
    "speedup",
    "sweeps",
    "residual",
    "certified",
    "auc",
    "recall@10",
    "ndcg@10",
    "deleted_score",
    "gap_closed",
]


def table_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Flatten a bench result into rows for a human table (original first)."""
    rows = []
    orig = result["original"]
    rows.append(
        {
            "method": "original (untouched)",
            "seconds": orig.get("fit_seconds"),
            "residual": orig["residual"],
            "deleted_score": orig["deleted_mean_score"],
            **orig["metrics"],
        }
    )
    for run in result["runs"]:
        rows.append({**run, **run["metrics"], "deleted_score": run["deleted_mean_score"]})
    for row in rows:
        for key in ("residual",):
            if isinstance(row.get(key), float):
                row[key] = f"{row[key]:.2e}"
    return rows
