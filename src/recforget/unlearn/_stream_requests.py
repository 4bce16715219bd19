"""Screening a request against a stream's working data and the ids it forgot before.

Both streaming forgetters (ALS and NCF) keep a :class:`~recforget.data.mutable.MutableInteractions`
view and the hashes of the users and items they dropped (``forgotten``: ``{"users": set,
"items": set}`` of :func:`~recforget.unlearn.requests.hash_id` values). An id forgotten earlier
is never unknown: asking again is a no-op, counted as ``already_forgotten``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recforget.data.errors import UnknownIdError
from recforget.data.mutable import MutableInteractions
from recforget.unlearn.requests import DeletionRequest, hash_id


def check_known(
    view: MutableInteractions, forgotten: dict[str, set], requests: Sequence[DeletionRequest]
) -> None:
    """Raise :class:`UnknownIdError` for ids neither in the data nor forgotten before."""
    for which, vocab, name in (("users", view.users, "user"), ("items", view.items, "item")):
        ids = [x for r in requests for x in getattr(r, which)]
        ids += [p[0 if which == "users" else 1] for r in requests for p in r.pairs]
        if not ids:
            continue
        idx = vocab.index(ids, missing="ignore")
        bad = [
            x
            for x, k in zip(ids, idx.tolist(), strict=True)
            if k < 0 and hash_id(x) not in forgotten[which]
        ]
        if bad:
            raise UnknownIdError(name, list(dict.fromkeys(bad)))


def still_to_remove(
    view: MutableInteractions, forgotten: dict[str, set], request: DeletionRequest
) -> tuple[dict[str, list], list[tuple], int]:
    """What of ``request`` is not gone yet: ``(ids by side, pairs, ids forgotten before)``.

    A user or item that is absent or dead in ``view`` and whose hash is in ``forgotten`` is
    skipped, and so is every pair naming one.
    """
    keep: dict[str, list] = {"users": [], "items": []}
    again = 0
    for which, vocab, alive in (
        ("users", view.users, view.user_alive),
        ("items", view.items, view.item_alive),
    ):
        ids = list(getattr(request, which))
        idx = vocab.index(ids, missing="ignore") if ids else np.empty(0, np.int64)
        for raw, k in zip(ids, idx.tolist(), strict=True):
            if (k < 0 or not alive[k]) and hash_id(raw) in forgotten[which]:
                again += 1
            else:
                keep[which].append(raw)
    pairs = []
    for u, i in request.pairs:
        uk = view.users.index([u], missing="ignore")[0]
        ik = view.items.index([i], missing="ignore")[0]
        u_gone = (uk < 0 or not view.user_alive[uk]) and hash_id(u) in forgotten["users"]
        i_gone = (ik < 0 or not view.item_alive[ik]) and hash_id(i) in forgotten["items"]
        if not (u_gone or i_gone):
            pairs.append((u, i))
    return keep, pairs, again


def record_dropped(view: MutableInteractions, forgotten: dict[str, set], removal) -> None:
    """Add the hashes of the users and items ``removal`` dropped to ``forgotten``."""
    for which, dropped in (("users", removal.dropped_users), ("items", removal.dropped_items)):
        ids = view.users.ids if which == "users" else view.items.ids
        forgotten[which].update(hash_id(ids[k]) for k in dropped.tolist())


__all__ = ["check_known", "record_dropped", "still_to_remove"]
