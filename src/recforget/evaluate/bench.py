"""Forget-vs-retrain benchmark: train, delete, run each unlearning method, compare.

One run: load a data set, hold out a test set, fit the original model, draw a seeded deletion
request from a scenario, apply every method to the same model and request, and measure time,
speed-up over retraining, the stationarity certificate, held-out accuracy, and the trace left
in the deleted pairs (their mean score under each model; ``gap_closed`` is the fraction of the
original-to-retrain gap that a method closes). The untouched original model is reported beside
the methods: a small deletion barely moves global accuracy, so the trace is what shows
forgetting.

With ``extras=True`` (the default) every row also gets ``consistency`` with the retrained oracle
and ``attack``, the membership-inference AUCs (see :mod:`recforget.evaluate.extras`).
With ``lira=K`` (off by default) the result also gets ``lira``: the calibrated likelihood-ratio
attack with ``K`` shadow models on the original, the retrain, a second-seed retrain and every
method (:func:`recforget.evaluate.lira_bench.run_lira`; ``interactions:`` and whole-user
scenarios only). ``stream:N[:size]`` scenarios are run by
:func:`recforget.evaluate.stream.run_stream`. The JSON schema is documented in
:mod:`recforget.evaluate.report`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recforget.data.interactions import Interactions
from recforget.evaluate.extras import (
    ExtrasContext,
    add_extras,
    reserve_users,
)
from recforget.evaluate.rows import (
    EVAL_SEED_OFFSET,
    align,
    evaluation_info,
    finish_runs,
    method_row,
    original_row,
    sample_eval_users,
    sampled_evaluate,
)
from recforget.evaluate.scenarios import (
    WHOLE_USER_KINDS,
    Scenario,
    make_request,
    make_stream,
)
from recforget.evaluate.warmup import warm_up
from recforget.models.base import Recommender
from recforget.unlearn import DeletionRequest, forget

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
    extras: bool = True,
    eval_users: int | None = None,
    lira: int = 0,
    lira_plot: str | Path | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run one benchmark and return its JSON-ready result.

    Parameters
    ----------
    eval_users : int, optional
        Judge every row's held-out accuracy (``metrics``, and a partition baseline's
        ``metrics_before``) on the same seeded sample of this many test users (drawn with
        ``seed + EVAL_SEED_OFFSET`` from the users with test items once the request is
        applied; :func:`~recforget.evaluate.rows.sample_eval_users`) instead of all of them.
        Reported as ``evaluation``. ``None`` (default) or a number at least the test users:
        all users.
    extras : bool
        Add ``consistency`` (with the retrain run; ``None`` without one) and ``attack``
        (membership inference) to the original row and every run. For whole-user scenarios
        the user-level attack needs users no model trained on: up to
        ``EXTRAS_CAPS["mia_users"]`` random users are then held out of the data before the
        original fit (reported as ``extras.reserved_users``), so such runs differ from runs
        with ``extras=False``.
    lira : int
        Shadow models of the LiRA attack (even, >= 4); 0 (the default) skips it. Whole-user
        scenarios hold users out as with ``extras`` (the attack's non-members).
    lira_plot : path, optional
        With ``lira``: write the log-log ROC of the online attack (fold-in for ALS user
        deletions) of every model to this PNG (matplotlib).

    Returns
    -------
    dict
        ``{"dataset", "model", "scenario", "seed", "params", "data", "request", "original": {...},
        "runs": [{"method", "seconds", "speedup", "residual", "certified", "sweeps",
        "rows_solved", "objective", "deleted_mean_score", "gap_closed", "metrics",
        "consistency", "attack"}, ...], "evaluation", "extras", "lira", "compile_seconds"}``
        (and ``"stream"`` for stream scenarios; see
        :mod:`recforget.evaluate.report` for every key). ``speedup`` is retrain seconds over
        the method's seconds (``None`` without a retrain run); ``residual`` is the max relative
        row gradient of the retraining objective.
    """
    from recforget.data.split import random_holdout
    from recforget.evaluate.accuracy import evaluate_ranking

    say = log or (lambda _msg: None)
    evaluate = evaluate or evaluate_ranking
    sc = Scenario.parse(scenario)
    methods = list(methods or (ALS_METHODS if model == "als" else NEURAL_METHODS))
    method_options = method_options or {}
    if lira:
        from recforget.evaluate.lira_bench import check_scenario

        check_scenario(sc.kind)
        if lira < 4 or lira % 2:
            raise ValueError(f"lira must be an even number of shadow models >= 4, got {lira}")
    name, data = prepare_data(dataset, threshold=threshold)
    train, test = random_holdout(data, test_fraction, random_state=seed)
    reserved = np.empty(0, dtype=object)
    if (extras or lira) and sc.kind in WHOLE_USER_KINDS:
        train, test, reserved = reserve_users(train, test, sc, seed)
    say(
        f"{name}: {data.n_users} users x {data.n_items} items, {train.nnz} train / "
        f"{test.nnz} test interactions"
    )

    original = default_model(model, seed, **(model_params or {}))
    compile_seconds = warm_up(original, methods, method_options)  # untimed: see warmup.py
    say(f"kernels compiled in {compile_seconds:.2f}s (not part of any timing)")
    start = time.perf_counter()
    original.fit(train)
    fit_seconds = time.perf_counter() - start
    say(f"original {model} fitted in {fit_seconds:.2f}s")
    prepare_seconds = _prepare(original, methods)
    requests, grouping = _requests(name, train, sc, seed)
    request = requests[0] if len(requests) == 1 else _union(requests)
    test_after = align(test, request)
    eval_seed = seed + EVAL_SEED_OFFSET
    sample = sample_eval_users(test_after, eval_users, eval_seed)
    evaluation = evaluation_info(test_after, sample, eval_seed, eval_users)
    evaluate = sampled_evaluate(evaluate, sample)
    if sample is not None:
        say(f"accuracy judged on {len(sample)} of {evaluation['of']} test users (seed {eval_seed})")

    # the untouched model, judged on the same test set and on the retraining objective
    orig_row = original_row(original, request, train, test_after, evaluate, ks)
    orig_row["fit_seconds"] = fit_seconds
    if prepare_seconds is not None:
        orig_row["prepare_seconds"] = prepare_seconds
    stream = None
    if sc.kind == "stream":
        from recforget.evaluate.stream import run_stream

        outcome = run_stream(
            original,
            requests,
            methods,
            test=test_after,
            evaluate=evaluate,
            ks=ks,
            method_options=method_options,
            log=say,
        )
        runs, models, stream = outcome.runs, outcome.models, outcome.summary()
    else:
        runs, models = _run_methods(
            original, request, methods, method_options, test_after, evaluate, ks, say
        )
    finish_runs(orig_row, runs)
    extras_info = None
    if extras:
        context = ExtrasContext(data, train, test, test_after, request, reserved, seed)
        extras_info = add_extras(original, orig_row, runs, models, context, say)
    else:
        for row in (orig_row, *runs):
            row["consistency"] = row["attack"] = None
    lira_info = None
    if lira:
        from recforget.evaluate.lira_bench import plot_lira, run_lira

        lira_info, curves = run_lira(
            original,
            models,
            request,
            train=train,
            test=test,
            histories=data,
            non_member_users=reserved.tolist(),
            n_shadows=lira,
            seed=seed,
            log=say,
        )
        if lira_plot is not None:
            plot_lira(curves, lira_plot, what=f"{name} {model} {sc}, {lira} shadows")
    params = original.get_params()
    params.pop("show_progress", None)
    result = {
        "dataset": name,
        "model": model,
        "scenario": str(sc),
        "seed": seed,
        "compile_seconds": compile_seconds,
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
            **({"item_groups": grouping} if grouping else {}),
        },
        "evaluation": evaluation,
        "original": orig_row,
        "runs": runs,
        "extras": extras_info,
        "lira": lira_info,
    }
    if stream is not None:
        result["stream"] = stream
    return result


def _prepare(original: Recommender, methods: Sequence[str]) -> float | None:
    """AltEraser's one-time curvature, prepared ahead of the request (its seconds), as deployed.

    A neural model is prepared once, when it is trained (``recforget.unlearn.ncf.prepare``),
    and every request after that pays only for its own blocks; the benchmark times the two
    apart. ``None`` when no method needs it.
    """
    if getattr(original, "kind", None) != "ncf" or "alteraser" not in methods:
        return None
    from recforget.unlearn.ncf import prepare

    start = time.perf_counter()
    prepare(original)
    return time.perf_counter() - start


def _requests(
    name: str, train: Interactions, sc: Scenario, seed: int
) -> tuple[list[DeletionRequest], str | None]:
    """The scenario's request(s), seeded by ``seed + 1``, and how sensitive items were grouped."""
    if sc.kind == "stream":
        return make_stream(train, sc, random_state=seed + 1), None
    groups = item_groups(name) if sc.kind == "sensitive" else None
    request = make_request(train, sc, random_state=seed + 1, item_groups=groups)
    grouping = ("genres" if groups else "random") if sc.kind == "sensitive" else None
    return [request], grouping


def item_groups(name: str) -> dict[object, str] | None:
    """Item genres of a named MovieLens data set (``None`` for other data or when unavailable)."""
    from recforget.data import datasets
    from recforget.data.errors import DataError

    if name not in datasets.SOURCES:
        return None
    try:
        return datasets.item_genre_map(name)  # type: ignore[arg-type]
    except (RuntimeError, OSError, DataError, KeyError):
        return None


def _union(requests: Sequence[DeletionRequest]) -> DeletionRequest:
    return DeletionRequest(
        pairs=[p for r in requests for p in r.pairs],
        users=[u for r in requests for u in r.users],
        items=[i for r in requests for i in r.items],
    )


def _run_methods(
    original: Recommender,
    request: DeletionRequest,
    methods: Sequence[str],
    method_options: dict[str, dict[str, Any]],
    test_after: Interactions,
    evaluate: Callable,
    ks: Sequence[int],
    say: Callable[[str], None],
) -> tuple[list[dict[str, Any]], dict[str, Recommender]]:
    runs, models = [], {}
    for method in methods:
        say(f"running {method} ...")
        if method in ("sisa", "receraser"):  # partition baselines: their own ensemble model
            from recforget.evaluate.partition import partition_run

            row, models[method] = partition_run(
                original,
                request,
                method,
                method_options.get(method, {}),
                test_after,
                evaluate,
                ks,
                say,
            )
            runs.append(row)
            continue
        result = forget(original, request, method, **method_options.get(method, {}))
        metrics = evaluate(result.model, result.data, test_after, ks=ks)
        runs.append(method_row(method, result.receipt, result.model, request, metrics))
        models[method] = result.model
        say(f"  {method}: {result.receipt['seconds']:.3f}s")
    return runs, models


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
