"""The rows of every benchmark: one per model, the same measures for every method.

:func:`original_row` judges the untouched original on the remaining data, :func:`method_row`
turns an unlearning receipt into a row, :func:`finish_runs` adds the speed-up over the retrain
and :func:`gap_closed`, the share of the original-to-retrain gap in the deleted pairs' mean
score that a method closes. :mod:`recforget.evaluate.bench`, :mod:`recforget.evaluate.stream`
and the scripts in ``benchmarks/`` all build their rows here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recforget.data.interactions import Interactions
from recforget.models.base import Recommender
from recforget.unlearn import DeletionRequest


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


def method_row(
    method: str,
    receipt: dict[str, Any],
    model: Recommender,
    request: DeletionRequest,
    metrics: dict[str, float],
) -> dict[str, Any]:
    """One ``runs`` entry from an unlearning receipt (speed-up and gap are added later)."""
    row = {
        "method": method,
        "seconds": receipt["seconds"],
        "residual": receipt.get("certificate", {}).get("max_relative", receipt.get("residual")),
        "certified": receipt.get("certified"),
        "sweeps": receipt.get("sweeps"),
        "rows_solved": receipt.get("rows_solved"),
        "objective": receipt.get("objective"),
        "prepared": receipt.get("prepared"),
        "deleted_mean_score": deleted_pair_scores(model, request),
        "metrics": floats(metrics),
    }
    curve = list(getattr(model, "loss_history_", None) or [])
    if curve:
        row["loss_curve"] = [float(v) for v in curve]
    return row


def add_speedups(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Add ``speedup`` (retrain seconds over the run's) to every run; return the retrain run."""
    retrain = next((run for run in runs if run["method"] == "retrain"), None)
    for run in runs:
        run["speedup"] = (
            retrain["seconds"] / run["seconds"]
            if retrain is not None and run["seconds"] > 0
            else None
        )
    return retrain


def finish_runs(orig_row: dict[str, Any], runs: list[dict[str, Any]]) -> None:
    """Add ``speedup`` and ``gap_closed`` to every run (relative to the retrain run)."""
    retrain = add_speedups(runs)
    for run in runs:
        run["gap_closed"] = gap_closed(
            orig_row["deleted_mean_score"],
            retrain and retrain["deleted_mean_score"],
            run["deleted_mean_score"],
        )


def original_row(original, request, train, test_after, evaluate, ks) -> dict[str, Any]:
    """The untouched original, judged like every method: on the remaining data.

    Its factors (ALS) or network (NCF), the removed users' and items' rows dropped, stand on
    the retraining objective of the remaining data: ``residual`` and ``objective`` are that
    objective's certificate and value there, ``metrics`` the held-out accuracy of that model
    (ranking all items but the remaining training ones).
    """
    removal = train.remove(pairs=request.pairs, users=request.users, items=request.items)
    residual = objective = None
    stay = _transplant(original, removal)
    if stay is not None:
        cert = stay.certify()
        residual, objective = cert["certificate"]["max_relative"], cert["objective"]
    metrics = evaluate(stay, removal.data, test_after, ks=ks) if stay is not None else {}
    return {
        "method": "original",
        "residual": residual,
        "objective": objective,
        "deleted_mean_score": deleted_pair_scores(original, request),
        "metrics": floats(metrics),
    }


def _transplant(original: Recommender, removal) -> Recommender | None:
    """The original's parameters on the remaining data (``None`` for other model types)."""
    from recforget.models.als import ALS

    if isinstance(original, ALS):
        from recforget.unlearn.als import transplant

        return transplant(original, removal)
    if getattr(original, "kind", None) == "ncf":
        from recforget.unlearn.ncf import transplant

        return transplant(original, removal)
    return None


def gap_closed(orig: float | None, retrain: float | None, method: float | None):
    if orig is None or retrain is None or method is None or orig == retrain:
        return None
    return float((orig - method) / (orig - retrain))


def floats(d: dict) -> dict:
    return {k: float(v) for k, v in d.items()}


__all__ = [
    "add_speedups",
    "align",
    "deleted_pair_scores",
    "finish_runs",
    "gap_closed",
    "method_row",
    "original_row",
]
