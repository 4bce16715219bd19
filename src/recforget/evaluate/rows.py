"""The rows of every benchmark: one per model, the same measures for every method.

:func:`original_row` judges the untouched original on the remaining data, :func:`method_row`
turns an unlearning receipt into a row, :func:`finish_runs` adds the speed-up over the retrain
and :func:`gap_closed`, the share of the original-to-retrain gap in the deleted pairs' mean
score that a method closes. :mod:`recforget.evaluate.bench`, :mod:`recforget.evaluate.stream`
and the scripts in ``benchmarks/`` all build their rows here.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np

from recforget._rng import check_random_state
from recforget.data.interactions import Interactions
from recforget.models.base import Recommender
from recforget.unlearn import DeletionRequest


def align(test: Interactions, request: DeletionRequest) -> Interactions:
    """The test set without the users/items the request removes (vocabularies follow)."""
    if not request.users and not request.items:
        return test
    return test.remove(users=request.users, items=request.items, missing="ignore").data


EVAL_SEED_OFFSET = 5
"""The evaluation sample is drawn with ``seed + EVAL_SEED_OFFSET`` (request ``+1``, reserved
users ``+2``, extras ``+3``, user-level attack ``+4``)."""


def sample_eval_users(
    test: Interactions, n: int | None, random_state: int | np.random.Generator | None
) -> np.ndarray | None:
    """Raw ids of a seeded sample of ``n`` users with test items, in index order.

    ``None`` when ``n`` is ``None`` or at least the number of such users: every user is then
    evaluated, so a sample as large as the test set is the full evaluation. The same seed and
    test set always give the same sample.
    """
    active = np.flatnonzero(test.user_counts() > 0)
    if n is None or n >= len(active):
        return None
    if n < 1:
        raise ValueError(f"the evaluation sample needs at least one user, got {n}")
    rng = check_random_state(random_state)
    return test.users.ids[np.sort(rng.choice(active, int(n), replace=False))]


def sampled_evaluate(evaluate: Callable, users: np.ndarray | None) -> Callable:
    """``evaluate`` restricted to ``users`` (raw ids; ``None``: unchanged) for every row."""
    if users is None:
        return evaluate
    return functools.partial(evaluate, users=users)


def evaluation_info(
    test: Interactions, users: np.ndarray | None, seed: int, requested: int | None
) -> dict[str, Any]:
    """The ``evaluation`` entry of a bench result: who every row was evaluated on.

    ``users`` evaluated of ``of`` test users, ``seed``, and ``fingerprint``, a sha256 over the
    sampled ids (not the ids themselves), so two runs can be checked to share their sample.
    """
    n_all = int((test.user_counts() > 0).sum())
    info: dict[str, Any] = {
        "requested": requested,
        "users": n_all if users is None else len(users),
        "of": n_all,
        "sampled": users is not None,
        "seed": seed,
    }
    if users is not None:
        info["fingerprint"] = hashlib.sha256("\n".join(map(str, users)).encode()).hexdigest()
    return info


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
    "EVAL_SEED_OFFSET",
    "add_speedups",
    "align",
    "deleted_pair_scores",
    "evaluation_info",
    "finish_runs",
    "gap_closed",
    "method_row",
    "original_row",
    "sample_eval_users",
    "sampled_evaluate",
]
