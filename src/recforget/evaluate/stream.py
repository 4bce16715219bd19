"""Sequential deletion streams: requests applied one after another, checked at each step.

A deployed recommender receives deletion requests over time and must honour each before the
next. :func:`run_stream` applies the requests of a ``stream:N[:size]`` scenario
(:func:`recforget.evaluate.scenarios.make_stream`) in order to each method's *own* current
model, and after every request compares it with the retrained oracle at that checkpoint. The
oracle's stream is the ``"retrain"`` method: retraining the previous retrain (same parameters
and seed) on the remaining data is retraining the original on it, so its per-step seconds are
the cost of serving the stream by retraining.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from recforget.data.interactions import Interactions
from recforget.evaluate.rows import deleted_pair_scores, gap_closed, method_row
from recforget.models.base import Recommender
from recforget.unlearn import DeletionRequest, forget


@dataclass
class StreamOutcome:
    """What :func:`run_stream` returns.

    Attributes
    ----------
    runs : list of dict
        One ``runs`` row per method (see :func:`recforget.evaluate.bench.run_bench`) for the
        final model: ``seconds``, ``sweeps`` and ``rows_solved`` summed over the steps, the
        rest from the last step, ``deleted_mean_score`` over all requests' pairs.
    models : dict of str to Recommender
        Each method's final model.
    checkpoints : list of dict
        One per request, in order (see :meth:`summary`).
    """

    runs: list[dict[str, Any]]
    models: dict[str, Recommender]
    checkpoints: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The ``stream`` entry of a bench result.

        ``{"n_requests", "checkpoints": [{"step", "pairs", "original_deleted_score",
        "methods": {method: {"seconds", "cumulative_seconds", "residual", "certified",
        "sweeps", "deleted_mean_score", "gap_closed", "metrics"}}}]}``; ``pairs`` counts the
        pairs deleted so far, and ``gap_closed`` compares with the retrain at that step.
        """
        return {"n_requests": len(self.checkpoints), "checkpoints": self.checkpoints}


def run_stream(
    original: Recommender,
    requests: Sequence[DeletionRequest],
    methods: Sequence[str],
    *,
    test: Interactions,
    evaluate: Callable,
    ks: Sequence[int] = (10,),
    method_options: dict[str, dict[str, Any]] | None = None,
    log: Callable[[str], None] | None = None,
) -> StreamOutcome:
    """Apply ``requests`` in order with each method and record a checkpoint after each.

    Parameters
    ----------
    original : Recommender
        Fitted; left untouched.
    requests : sequence of DeletionRequest
        Disjoint pair requests (whole users or items would change the test vocabulary).
    methods : sequence of str
        Unlearning methods; ``"retrain"`` (the oracle of every checkpoint) is always run first.
    test : Interactions
        Held-out positives, same vocabularies as the training data.
    evaluate : callable
        ``evaluate(model, train, test, ks=ks) -> dict`` (e.g.
        :func:`~recforget.evaluate.accuracy.evaluate_ranking`).
    ks : sequence of int
    method_options : dict of str to dict
        Options passed to :func:`recforget.unlearn.unlearn` per method.
    log : callable, optional
        Progress lines.

    Returns
    -------
    StreamOutcome
    """
    if not requests:
        raise ValueError("a stream needs at least one request")
    if any(r.users or r.items for r in requests):
        raise ValueError("stream requests must hold (user, item) pairs only")
    say = log or (lambda _msg: None)
    method_options = method_options or {}
    order = ["retrain", *[m for m in methods if m != "retrain"]]
    so_far = [
        DeletionRequest(pairs=[p for r in requests[: k + 1] for p in r.pairs])
        for k in range(len(requests))
    ]
    checkpoints = [
        {
            "step": k + 1,
            "pairs": len(cum.pairs),
            "original_deleted_score": deleted_pair_scores(original, cum),
            "methods": {},
        }
        for k, cum in enumerate(so_far)
    ]
    runs, models = [], {}
    for method in order:
        model, total, steps = original, 0.0, []
        for k, request in enumerate(requests):
            result = forget(model, request, method, **method_options.get(method, {}))
            model = result.model
            metrics = evaluate(model, result.data, test, ks=ks)
            row = method_row(method, result.receipt, model, so_far[k], metrics)
            total += row["seconds"]
            steps.append(row)
            checkpoints[k]["methods"][method] = _step(row, total, checkpoints[k])
            say(f"  {method} step {k + 1}/{len(requests)}: {row['seconds']:.3f}s")
        if method in methods:
            runs.append(_total(steps))
            models[method] = model
    return StreamOutcome(runs=runs, models=models, checkpoints=checkpoints)


def _step(row: dict[str, Any], total: float, checkpoint: dict[str, Any]) -> dict[str, Any]:
    oracle = checkpoint["methods"].get("retrain", row)  # retrain runs first
    return {
        "seconds": row["seconds"],
        "cumulative_seconds": total,
        "residual": row["residual"],
        "certified": row["certified"],
        "sweeps": row["sweeps"],
        "deleted_mean_score": row["deleted_mean_score"],
        "gap_closed": gap_closed(
            checkpoint["original_deleted_score"],
            oracle["deleted_mean_score"],
            row["deleted_mean_score"],
        ),
        "metrics": row["metrics"],
    }


def _total(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """The final step's row, with seconds and work summed over the whole stream."""
    row = dict(steps[-1])
    for key in ("seconds", "sweeps", "rows_solved"):
        values = [s[key] for s in steps]
        row[key] = sum(values) if all(v is not None for v in values) else None
    return row


__all__ = ["StreamOutcome", "run_stream"]
