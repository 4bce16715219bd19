"""Screening a request against a stream's working data and the ids it forgot before; the
request queue both streaming forgetters serve.

Both streaming forgetters (ALS and NCF) keep a :class:`~recforget.data.mutable.MutableInteractions`
view and the keyed hashes of the users and items they dropped (``forgotten``, a bound
:class:`~recforget.data.forgotten.ForgottenIds`). An id forgotten earlier is never unknown:
asking again is a no-op, counted as ``already_forgotten``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recforget.data.errors import UnknownIdError
from recforget.data.forgotten import ForgottenIds
from recforget.data.mutable import MutableInteractions
from recforget.unlearn.requests import DeletionRequest


def check_known(
    view: MutableInteractions, forgotten: ForgottenIds, requests: Sequence[DeletionRequest]
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
            if k < 0 and not forgotten.contains(which, x)
        ]
        if bad:
            raise UnknownIdError(name, list(dict.fromkeys(bad)))


def still_to_remove(
    view: MutableInteractions, forgotten: ForgottenIds, request: DeletionRequest
) -> tuple[dict[str, list], list[tuple], int]:
    """What of ``request`` is not gone yet: ``(ids by side, pairs, ids forgotten before)``.

    A user or item that is absent or dead in ``view`` and that ``forgotten`` holds is
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
            if (k < 0 or not alive[k]) and forgotten.contains(which, raw):
                again += 1
            else:
                keep[which].append(raw)
    pairs = []
    for u, i in request.pairs:
        uk = view.users.index([u], missing="ignore")[0]
        ik = view.items.index([i], missing="ignore")[0]
        u_gone = (uk < 0 or not view.user_alive[uk]) and forgotten.contains("users", u)
        i_gone = (ik < 0 or not view.item_alive[ik]) and forgotten.contains("items", i)
        if not (u_gone or i_gone):
            pairs.append((u, i))
    return keep, pairs, again


def record_dropped(view: MutableInteractions, forgotten: ForgottenIds, removal) -> None:
    """Add the hashes of the users and items ``removal`` dropped to ``forgotten``."""
    for which, dropped in (("users", removal.dropped_users), ("items", removal.dropped_items)):
        ids = view.users.ids if which == "users" else view.items.ids
        forgotten.add(which, (ids[k] for k in dropped.tolist()))


def check_request(request: object) -> None:
    """Raise :class:`TypeError` unless ``request`` is a :class:`DeletionRequest`."""
    if not isinstance(request, DeletionRequest):
        raise TypeError(f"request must be a DeletionRequest, got {type(request).__name__}")


class RequestQueue:
    """``forget``, ``submit``, ``pending`` and ``flush`` on top of a ``forget_batch``.

    The class using it defines ``forget_batch(requests) -> list of receipts`` and sets
    ``self._queue = []`` in its constructor.
    """

    _queue: list[DeletionRequest]

    def forget_batch(self, requests: Sequence[DeletionRequest]) -> list[dict]:
        raise NotImplementedError

    def forget(self, request: DeletionRequest) -> dict:
        """Forget one request; returns its receipt."""
        return self.forget_batch([request])[0]

    def submit(self, request: DeletionRequest) -> int:
        """Queue a request (served by :meth:`flush`); returns the queue's length."""
        check_request(request)
        self._queue.append(request)
        return len(self._queue)

    @property
    def pending(self) -> int:
        """Requests queued and not yet served."""
        return len(self._queue)

    def flush(self) -> list[dict]:
        """Serve every queued request as one batch (:meth:`forget_batch`)."""
        queue, self._queue = self._queue, []
        return self.forget_batch(queue) if queue else []


__all__ = ["RequestQueue", "check_known", "check_request", "record_dropped", "still_to_remove"]
