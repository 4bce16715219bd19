"""Benchmark presets: fixed protocols from the literature.

``netflix-forget``
    After Xu et al., "Netflix and Forget: Efficient and Exact Machine Unlearning from
    Bi-linear Recommendations" (arXiv 2302.06676). Hold out 1% of the observed cells as test
    positives together with as many sampled unobserved cells as test negatives, and measure
    the global AUC of the scores on them. Delete 10% and 20% of the training positives at
    random (two scenarios). For every method report the AUC, the mean squared difference
    between its predictions and the retrained model's on the removed cells (``mse_vs_retrain``)
    and its mean squared prediction there against the new target 0 (``mse_vs_zero``), the
    top-200 item-neighbour Jaccard with the retrained model, its time, and its objective curve
    (``loss_curve``, the ALS objective after each sweep, recorded with ``track_loss=True``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from recforget._rng import check_random_state
from recforget.data.interactions import Interactions
from recforget.evaluate.attacks import rank_auc
from recforget.evaluate.bench import (
    ALS_METHODS,
    _jsonable,
    default_model,
    make_request,
    prepare_data,
)
from recforget.evaluate.consistency import common_item_vectors, neighbour_overlap
from recforget.evaluate.extras import json_ready
from recforget.evaluate.rows import add_speedups
from recforget.models.base import Recommender
from recforget.unlearn import DeletionRequest, forget

PRESETS = ("netflix-forget",)
NETFLIX_FRACTIONS = (0.1, 0.2)
NETFLIX_TEST_FRACTION = 0.01
NEIGHBOURS = 200


def holdout_with_negatives(
    data: Interactions, fraction: float, rng: int | np.random.Generator | None = None
) -> tuple[Interactions, list[tuple[object, object]], list[tuple[object, object]]]:
    """Split off ``round(fraction * nnz)`` random cells and as many random unobserved cells.

    Returns
    -------
    train : Interactions
        ``data`` without the test positives (same vocabularies).
    positives, negatives : lists of (user, item) raw-id pairs of equal length
        Negatives are distinct cells absent from ``data``.
    """
    gen = check_random_state(rng)
    n = max(1, round(fraction * data.nnz))
    test = np.zeros(data.nnz, dtype=bool)
    test[gen.choice(data.nnz, n, replace=False)] = True
    rows, cols = data.row_of_entry[test], data.indices[test]
    uids, iids = data.users.ids, data.items.ids
    positives = list(zip(uids[rows].tolist(), iids[cols].tolist(), strict=True))
    return data.select(~test), positives, _unobserved(data, n, gen)


def _unobserved(data: Interactions, n: int, gen: np.random.Generator) -> list[tuple]:
    cells = data.n_users * data.n_items
    if cells - data.nnz < n:
        raise ValueError(f"only {cells - data.nnz} unobserved cells for {n} negatives")
    keys = np.empty(0, dtype=np.int64)
    while len(keys) < n:
        draw = gen.integers(0, cells, size=2 * n)
        free = data.entry_positions(draw // data.n_items, draw % data.n_items) < 0
        keys = np.concatenate([keys, draw[free]])
        keys = keys[np.sort(np.unique(keys, return_index=True)[1])]  # distinct, in draw order
    keys = keys[:n]
    users = data.users.ids[keys // data.n_items].tolist()
    return list(zip(users, data.items.ids[keys % data.n_items].tolist(), strict=True))


def pair_scores(model: Recommender, pairs: Sequence[tuple[object, object]]) -> np.ndarray:
    """The model's scores of (user, item) pairs, float64 of shape (len(pairs),)."""
    if not pairs:
        return np.empty(0)
    return np.asarray(model.score([p[0] for p in pairs], [p[1] for p in pairs]), np.float64)


def netflix_forget(
    dataset: str | Interactions = "ml-100k",
    *,
    seed: int = 0,
    fractions: Sequence[float] = NETFLIX_FRACTIONS,
    test_fraction: float = NETFLIX_TEST_FRACTION,
    methods: Sequence[str] | None = None,
    model_params: dict[str, Any] | None = None,
    method_options: dict[str, dict[str, Any]] | None = None,
    threshold: float | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The ``netflix-forget`` preset (see the module docstring) on ALS.

    Parameters
    ----------
    dataset : str or Interactions
        A data set name or any interactions (made implicit as in :func:`run_bench`).
    fractions : sequence of float
        Shares of the training positives deleted, one scenario each.
    model_params : dict, optional
        ALS parameters; ``track_loss`` defaults to True so that objective curves exist.

    Returns
    -------
    dict
        ``{"preset", "dataset", "model", "seed", "params", "data", "original": {"fit_seconds",
        "auc", "loss_curve"}, "scenarios": [{"scenario", "request", "original": {...},
        "runs": [{"method", "seconds", "speedup", "sweeps", "residual", "certified",
        "objective", "auc", "mse_vs_retrain", "mse_vs_zero", "neighbour_jaccard@200",
        "loss_curve"}]}]}``; a scenario's ``original`` row holds the untouched model's
        ``auc``, ``mse_vs_retrain``, ``mse_vs_zero`` and ``neighbour_jaccard@200``.
    """
    say = log or (lambda _msg: None)
    methods = list(methods or ALS_METHODS)
    method_options = method_options or {}
    name, data = prepare_data(dataset, threshold=threshold)
    train, pos, neg = holdout_with_negatives(data, test_fraction, rng=seed)
    say(f"{name}: {train.nnz} train cells, {len(pos)} + {len(neg)} test cells")
    params = {"track_loss": True, **(model_params or {})}
    original = default_model("als", seed, **params)
    start = time.perf_counter()
    original.fit(train)
    fit_seconds = time.perf_counter() - start
    say(f"original fitted in {fit_seconds:.2f}s")
    scenarios = []
    for k, fraction in enumerate(fractions):
        spec = f"interactions:{fraction}"
        request = make_request(train, spec, random_state=seed + 1 + k)
        say(f"scenario {spec}: {len(request.pairs)} cells removed")
        scenarios.append(_scenario(original, request, spec, methods, method_options, pos, neg, say))
    out_params = {k: v for k, v in original.get_params().items() if _jsonable(v)}
    out_params.pop("show_progress", None)
    return json_ready(
        {
            "preset": "netflix-forget",
            "dataset": name,
            "model": "als",
            "seed": seed,
            "params": out_params,
            "data": {
                "n_users": data.n_users,
                "n_items": data.n_items,
                "train": train.nnz,
                "test_positives": len(pos),
                "test_negatives": len(neg),
            },
            "original": {
                "fit_seconds": fit_seconds,
                "auc": rank_auc(pair_scores(original, pos), pair_scores(original, neg)),
                "loss_curve": list(getattr(original, "loss_history_", [])),
            },
            "scenarios": scenarios,
        }
    )


def _scenario(
    original: Recommender,
    request: DeletionRequest,
    spec: str,
    methods: Sequence[str],
    method_options: dict[str, dict[str, Any]],
    pos: list,
    neg: list,
    say: Callable[[str], None],
) -> dict[str, Any]:
    models: dict[str, Recommender] = {}
    runs = []
    for method in methods:
        result = forget(original, request, method, **method_options.get(method, {}))
        r = result.receipt
        models[method] = result.model
        runs.append(
            {
                "method": method,
                "seconds": r["seconds"],
                "sweeps": r.get("sweeps"),
                "residual": r.get("certificate", {}).get("max_relative"),
                "certified": r.get("certified"),
                "objective": r.get("objective"),
                "auc": rank_auc(pair_scores(result.model, pos), pair_scores(result.model, neg)),
                "loss_curve": list(getattr(result.model, "loss_history_", [])),
            }
        )
        say(f"  {method}: {r['seconds']:.3f}s")
    oracle = models.get("retrain")
    add_speedups(runs)
    for run in runs:
        run.update(removed_cell_measures(models[run["method"]], oracle, request.pairs))
    orig = {
        "method": "original",
        "auc": rank_auc(pair_scores(original, pos), pair_scores(original, neg)),
        **removed_cell_measures(original, oracle, request.pairs),
    }
    return {
        "scenario": spec,
        "request": {"pairs": len(request.pairs)},
        "original": orig,
        "runs": runs,
    }


def removed_cell_measures(
    model: Recommender, oracle: Recommender | None, removed: Sequence[tuple[object, object]]
) -> dict[str, float | None]:
    """MSE on the removed cells against the oracle and against 0, and neighbour Jaccard."""
    s = pair_scores(model, removed)
    out: dict[str, float | None] = {
        "mse_vs_zero": float(np.mean(s**2)) if len(s) else None,
        "mse_vs_retrain": None,
        f"neighbour_jaccard@{NEIGHBOURS}": None,
    }
    if oracle is not None:
        if len(s):
            out["mse_vs_retrain"] = float(np.mean((s - pair_scores(oracle, removed)) ** 2))
        _, va, vb = common_item_vectors(model, oracle)
        out[f"neighbour_jaccard@{NEIGHBOURS}"] = neighbour_overlap(va, vb, NEIGHBOURS)
    return out


def run_preset(name: str, dataset: str | Interactions, **kwargs: Any) -> dict[str, Any]:
    """Run a preset by name (one of :data:`PRESETS`)."""
    if name == "netflix-forget":
        return netflix_forget(dataset, **kwargs)
    raise ValueError(f"unknown preset {name!r}; choose from {PRESETS}")


__all__ = [
    "PRESETS",
    "holdout_with_negatives",
    "netflix_forget",
    "pair_scores",
    "removed_cell_measures",
    "run_preset",
]
