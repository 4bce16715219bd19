"""Forgetting in sharded ensembles (SISA, RecEraser): retrain only the shards that held the data.

A deletion is cut along the ensemble's shards. A shard that held deleted interactions is
retrained from scratch on what it has left, with its own seed (the base model's registered
"retrain"); a shard that held none is kept bit for bit, only losing the rows of deleted users
and items from its vocabularies (which it held no data of). The aggregator (RecEraser's
attention) is then refitted on the remaining data. The result is exact by construction:
every part of it was trained on data that never contained the deleted interactions.
"""

from __future__ import annotations

from typing import Any

from recforget.data.interactions import Interactions, Removal
from recforget.models.base import Recommender, clone
from recforget.models.sharded import ShardedEnsemble
from recforget.unlearn.registry import lookup, model_kind, register


def _drop_rows(model: Recommender, removal: Removal) -> Recommender:
    """``model`` on ``removal.data``, deleted users'/items' rows dropped, nothing retrained."""
    kind = model_kind(model)
    if kind == "als":
        from recforget.unlearn.als import transplant

        new = transplant(model, removal)
        new.n_iter_, new.stop_reason_ = model.n_iter_, model.stop_reason_
        return new
    if kind == "ncf":
        from recforget.unlearn.ncf import transplant

        return transplant(model, removal, negatives=False)
    raise ValueError(f"no row-dropping for a {kind} shard model")


def shard_removal(shard: Interactions, full: Interactions, removal: Removal) -> Removal:
    """The part of ``removal`` (a removal from ``full``) that falls in one shard of ``full``."""
    users = full.users.ids[removal.dropped_users].tolist()
    items = full.items.ids[removal.dropped_items].tolist()
    u = full.users.ids[removal.removed_users]
    i = full.items.ids[removal.removed_items]
    pos = shard.entry_positions(removal.removed_users, removal.removed_items)
    pairs = list(zip(u[pos >= 0].tolist(), i[pos >= 0].tolist(), strict=True))
    return shard.remove(pairs=pairs, users=users, items=items)


def without_rows(model: ShardedEnsemble, removal: Removal) -> ShardedEnsemble:
    """The ensemble as it is, minus the removed users'/items' rows: nothing retrained.

    What the untouched ensemble predicts for the remaining users (the bench's "before").
    """
    full = model.seen_
    shards = [_drop_rows(m, shard_removal(m.seen_, full, removal)) for m in model.shards_]
    out = clone(model)
    out.seed_, out.shard_seeds_ = model.seed_, list(model.shard_seeds_)
    return out.set_shards(shards, removal.data, attention=model.attention_)


def forget_shards(
    model: ShardedEnsemble, removal: Removal, **options: Any
) -> tuple[ShardedEnsemble, dict[str, Any]]:
    """Retrain the affected shards, keep the others, refit the aggregator.

    ``options`` go to each retrained shard's "retrain" (e.g. ``tol`` for ALS shards).
    """
    if not isinstance(model, ShardedEnsemble):
        raise TypeError(f"expected a ShardedEnsemble, got {type(model).__name__}")
    full = model.seen_
    shards, retrained, kept = [], [], []
    for s, shard in enumerate(model.shards_):
        part = shard_removal(shard.seen_, full, removal)
        if part.n_removed > 0:
            new, _ = lookup("retrain", shard)(shard, part, **options)
            retrained.append(s)
        else:
            new = (
                _drop_rows(shard, part)
                if len(part.dropped_users) + len(part.dropped_items)
                else shard
            )
            kept.append(s)
        shards.append(new)
    out = clone(model)
    out.seed_ = model.seed_
    out.shard_seeds_ = list(model.shard_seeds_)
    out.set_shards(shards, removal.data)
    return out, {
        "tol": None,
        "shards": model.n_shards,
        "shards_retrained": retrained,
        "sweeps": len(retrained),
        "rows_solved": None,
        "retrained_entries": int(sum(shards[s].seen_.nnz for s in retrained)),
    }


def _expect(model: ShardedEnsemble, aggregation: str, method: str) -> None:
    if model.aggregation != aggregation:
        raise ValueError(
            f"{method} forgets an ensemble with aggregation={aggregation!r}; this one has "
            f"{model.aggregation!r}"
        )


@register("sisa", "sharded")
def sisa(model: ShardedEnsemble, removal: Removal, **options: Any):
    """SISA: retrain the shards that held deleted data (see the module docstring)."""
    _expect(model, "mean", "sisa")
    return forget_shards(model, removal, **options)


@register("receraser", "sharded")
def receraser(model: ShardedEnsemble, removal: Removal, **options: Any):
    """RecEraser: retrain the affected shards, then refit the attention aggregator."""
    _expect(model, "attention", "receraser")
    return forget_shards(model, removal, **options)


__all__ = ["forget_shards", "receraser", "shard_removal", "sisa", "without_rows"]
