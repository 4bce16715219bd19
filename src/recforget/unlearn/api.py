"""``forget(model, request, method=...)``: the one entry point for forgetting."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

from recforget.data.forgotten import ForgottenIds
from recforget.data.interactions import Interactions
from recforget.models.base import Recommender
from recforget.unlearn.registry import lookup, model_kind
from recforget.unlearn.requests import DeletionRequest


def request_fields(request: DeletionRequest, removal: Any, already_forgotten: int) -> dict:
    """The receipt fields every forgetting entry point shares: what was asked, what was removed.

    ``removal`` is a :class:`~recforget.data.interactions.Removal` or anything with its
    counting attributes (``n_removed``, ``dropped_users``, ``dropped_items``,
    ``absent_pairs``, ``unknown``); ``already_forgotten`` counts ids forgotten earlier.
    """
    return {
        "request_id": request.request_id,
        "request_digest": request.digest(),
        "request": {
            "pairs": len(request.pairs),
            "users": len(request.users),
            "items": len(request.items),
        },
        "removed": {
            "interactions": removal.n_removed,
            "users": len(removal.dropped_users),
            "items": len(removal.dropped_items),
            "absent_pairs": removal.absent_pairs,
            "already_forgotten": already_forgotten,
            # counts only: a receipt never carries raw ids (the caller knows what it sent)
            "unknown": {k: len(v) for k, v in removal.unknown.items()},
        },
    }


def _forgotten_before(forgotten: ForgottenIds, which: str, vocab: Any, raws: Any) -> list[bool]:
    """For each raw id: absent from ``vocab`` and held by ``forgotten`` (one lookup)."""
    if not raws or not any(forgotten.hashes[which]):
        return [False] * len(raws)
    idx = vocab.index(list(raws), missing="ignore").tolist()
    return [k < 0 and forgotten.contains(which, raw) for raw, k in zip(raws, idx, strict=True)]


@dataclass(frozen=True)
class UnlearnResult:
    """What :func:`forget` returns: the new model, the data it stands on, and a receipt."""

    model: Recommender
    data: Interactions
    receipt: dict[str, Any]


def forget(
    model: Recommender,
    request: DeletionRequest,
    method: str = "unlearn-als",
    *,
    data: Interactions | None = None,
    missing: Literal["error", "ignore"] = "error",
    id_key: bytes | str | None = None,
    **options: Any,
) -> UnlearnResult:
    """Make ``model`` forget ``request`` as if it had been trained without it.

    Parameters
    ----------
    model : fitted Recommender
        Left untouched; a new model is returned.
    request : DeletionRequest
    method : str
        ALS: "retrain" (the oracle: same parameters and seed, fitted on the remaining data),
        "warmstart" (a fixed number of sweeps from the current factors), "unlearn-als" (warm
        sweeps until the stationarity certificate holds) and "unlearn-als-selective" (re-solve
        only rows whose gradient exceeds the tolerance, until every row is within it).
        Neural models: "retrain", "finetune", "alteraser", "influence".
    data : Interactions or None, keyword-only
        The data the model stands on (default: ``model.seen_``). It must be that data.
    missing : {"error", "ignore"}
        Unknown ids raise :class:`~recforget.UnknownIdError` listing them, or are skipped and
        reported in the receipt. Ids this model forgot earlier are never unknown: forgetting
        twice is a no-op.
    id_key : bytes, hex str or None, keyword-only
        The key of the model's record of forgotten ids (default: ``RECFORGET_ID_KEY``). With a
        key, the saved model keeps keyed hashes of the users and items it dropped and
        recognises them after a reload; without one it keeps only their counts
        (:mod:`recforget.data.forgotten`).
    **options
        Method options (``tol``, ``max_sweeps``, ``sweeps``, ...).

    Returns
    -------
    UnlearnResult
        ``.model``, ``.data`` (remaining interactions) and ``.receipt`` (JSON-serialisable).
    """
    from recforget import __version__

    model._check_fitted()
    if not isinstance(request, DeletionRequest):
        raise TypeError(f"request must be a DeletionRequest, got {type(request).__name__}")
    implementation = lookup(method, model)
    kind = model_kind(model)
    if data is None:
        data = model.seen_
    elif data is not model.seen_ and (
        data.users != model.users_
        or data.items != model.items_
        or data.fingerprint() != model.seen_.fingerprint()
    ):
        raise ValueError(
            "data differs from the data the model stands on (model.seen_); pass data=None to use it"
        )

    forgotten = ForgottenIds.of(model).bind(id_key)
    again_users = _forgotten_before(forgotten, "users", data.users, request.users)
    again_items = _forgotten_before(forgotten, "items", data.items, request.items)
    users = [u for u, again in zip(request.users, again_users, strict=True) if not again]
    items = [i for i, again in zip(request.items, again_items, strict=True) if not again]
    pairs = list(request.pairs)
    if pairs:  # pairs of forgotten users/items are gone too
        gone_u = _forgotten_before(forgotten, "users", data.users, [u for u, _ in pairs])
        gone_i = _forgotten_before(forgotten, "items", data.items, [i for _, i in pairs])
        pairs = [p for p, gu, gi in zip(pairs, gone_u, gone_i, strict=True) if not (gu or gi)]

    start = time.perf_counter()
    removal = data.remove(pairs=pairs, users=users, items=items, missing=missing)
    info: dict[str, Any]
    if removal.is_noop:
        new_model, info = model, {"noop": True, "sweeps": 0, "rows_solved": 0}
    else:
        new_model, info = implementation(model, removal, **options)
        info["noop"] = False
        forgotten.add("users", (data.users.ids[u] for u in removal.dropped_users))
        forgotten.add("items", (data.items.ids[i] for i in removal.dropped_items))
        new_model.forgotten_ = forgotten
    seconds = time.perf_counter() - start
    if not info["noop"] and hasattr(new_model, "certify"):
        # verification for the receipt, from scratch and outside the timed section
        info.update(new_model.certify(tol=info.pop("tol", None)))
    info.pop("tol", None)

    receipt = {
        "method": method,
        "model": kind,
        **request_fields(request, removal, sum(again_users) + sum(again_items)),
        "data_fingerprint_before": data.fingerprint(),
        "data_fingerprint_after": removal.data.fingerprint(),
        "seconds": seconds,
        "library_version": __version__,
        **info,
    }
    if hasattr(new_model, "model_hash"):
        receipt["model_hash"] = new_model.model_hash()
    if not info["noop"]:
        new_model.deletions_ = [*getattr(model, "deletions_", []), deletion_entry(receipt)]
    return UnlearnResult(model=new_model, data=removal.data, receipt=receipt)


DELETION_LOG_FIELDS = ("method", "request_digest", "removed", "data_fingerprint_after", "seconds")


def deletion_entry(receipt: dict) -> dict:
    """A model's deletion-log entry (``deletions_``) for a receipt: its
    :data:`DELETION_LOG_FIELDS`, no raw ids."""
    return {k: receipt[k] for k in DELETION_LOG_FIELDS}


__all__ = ["DELETION_LOG_FIELDS", "UnlearnResult", "deletion_entry", "forget", "request_fields"]
