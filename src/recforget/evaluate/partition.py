"""The bench's partition baselines: SISA and RecEraser ensembles of the bench's own model.

:func:`partition_run` builds the ensemble from the original model's parameters and seed,
fits it on the original's training data (its accuracy there, before any deletion, is part of
the row: the accuracy a partition costs), forgets the request with the method of the same
name and returns a row with the columns of every method plus ``shards``, ``partition``,
``shards_retrained``, ``fit_seconds`` and ``metrics_before``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from recforget.data.interactions import Interactions
from recforget.models.base import Recommender, clone
from recforget.models.sharded import ShardedEnsemble
from recforget.unlearn import DeletionRequest, forget
from recforget.unlearn.sharded import without_rows

#: method -> (default partition, aggregation)
PARTITION_METHODS = {
    "sisa": ("user", "mean"),
    "receraser": ("balanced-user", "attention"),
}
DEFAULT_SHARDS = 10


def ensemble_for(
    original: Recommender,
    method: str,
    *,
    shards: int = DEFAULT_SHARDS,
    partition: str | None = None,
) -> ShardedEnsemble:
    """An unfitted ensemble of copies of ``original`` (same parameters, seed) for ``method``."""
    default_partition, aggregation = PARTITION_METHODS[method]
    return ShardedEnsemble(
        clone(original),
        n_shards=int(shards),
        partition=partition or default_partition,
        aggregation=aggregation,
        random_state=original.seed_,
    )


def partition_run(
    original: Recommender,
    request: DeletionRequest,
    method: str,
    options: dict[str, Any],
    test_after: Interactions,
    evaluate: Callable,
    ks: Sequence[int],
    say: Callable[[str], None],
) -> tuple[dict[str, Any], Recommender]:
    """Fit the ``method`` ensemble on ``original.seen_``, forget ``request``; ``(row, model)``."""
    from recforget.evaluate.rows import method_row

    options = dict(options)
    ensemble = ensemble_for(
        original,
        method,
        shards=options.pop("shards", DEFAULT_SHARDS),
        partition=options.pop("partition", None),
    )
    start = time.perf_counter()
    ensemble.fit(original.seen_)
    fit_seconds = time.perf_counter() - start
    say(f"  {method}: {ensemble.n_shards} {ensemble.partition} shards in {fit_seconds:.2f}s")
    # before any deletion, judged like the original: remaining users and items, same test set
    removal = ensemble.seen_.remove(pairs=request.pairs, users=request.users, items=request.items)
    before = evaluate(without_rows(ensemble, removal), removal.data, test_after, ks=ks)
    result = forget(ensemble, request, method, **options)
    metrics = evaluate(result.model, result.data, test_after, ks=ks)
    row = method_row(method, result.receipt, result.model, request, metrics)
    row.update(
        shards=ensemble.n_shards,
        partition=ensemble.partition,
        shards_retrained=result.receipt["shards_retrained"],
        fit_seconds=fit_seconds,
        metrics_before={k: float(v) for k, v in before.items()},
    )
    return row, result.model


__all__ = ["DEFAULT_SHARDS", "PARTITION_METHODS", "ensemble_for", "partition_run"]
