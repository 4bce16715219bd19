"""Deletion scenarios: turn ``"interactions:0.01"``-style specs into seeded deletion requests.

Specs
-----
``interactions:F``
    A random fraction ``F`` (or count, if ``F >= 1``) of the training interactions.
``users:F[:random|active|inactive]``
    A fraction (or count) of users: random, the most active or the least active (as in the
    CURE4Rec benchmark). Whole users: they leave the model.
``user:N``
    ``N`` random whole users (default 1).
``items:N`` / ``items:F``
    ``N`` random whole items (or a fraction ``F < 1``).
``sensitive:N[:items_per_user]``
    For ``N`` random users, their interactions with a few items of one kind (by default the
    user's most frequent genre when item genres are known, else random items): the
    "forget my history of this kind" request.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recforget._rng import check_random_state
from recforget.data.interactions import Interactions
from recforget.unlearn.requests import DeletionRequest

KINDS = ("interactions", "users", "user", "items", "sensitive")


@dataclass(frozen=True)
class Scenario:
    kind: str
    amount: float
    selection: str = "random"

    @classmethod
    def parse(cls, spec: str) -> Scenario:
        parts = spec.split(":")
        kind = parts[0]
        if kind not in KINDS:
            raise ValueError(f"unknown scenario {spec!r}: the kind must be one of {KINDS}")
        try:
            amount = float(parts[1]) if len(parts) > 1 and parts[1] else 1.0
        except ValueError as exc:
            raise ValueError(f"scenario {spec!r}: {parts[1]!r} is not a number") from exc
        if amount <= 0:
            raise ValueError(f"scenario {spec!r}: the amount must be positive")
        selection = parts[2] if len(parts) > 2 else "random"
        if kind == "users" and selection not in ("random", "active", "inactive"):
            raise ValueError(f"scenario {spec!r}: selection must be random|active|inactive")
        if len(parts) > 3:
            raise ValueError(f"scenario {spec!r} has too many parts")
        return cls(kind, amount, selection)

    def __str__(self) -> str:
        extra = f":{self.selection}" if self.kind == "users" and self.selection != "random" else ""
        amount = int(self.amount) if float(self.amount).is_integer() else self.amount
        return f"{self.kind}:{amount}{extra}"


def _count(amount: float, total: int) -> int:
    n = round(amount * total) if amount < 1 else int(amount)
    return max(1, min(n, total))


def make_request(
    data: Interactions,
    scenario: str | Scenario,
    random_state: int | np.random.Generator | None = None,
    *,
    item_groups: dict[object, object] | None = None,
) -> DeletionRequest:
    """A seeded deletion request for ``scenario`` on ``data`` (raw ids)."""
    sc = Scenario.parse(scenario) if isinstance(scenario, str) else scenario
    rng = check_random_state(random_state)
    uids, iids = data.users.ids, data.items.ids
    if sc.kind == "interactions":
        pick = np.sort(rng.choice(data.nnz, _count(sc.amount, data.nnz), replace=False))
        rows = data.row_of_entry[pick]
        return DeletionRequest(
            pairs=list(zip(uids[rows].tolist(), iids[data.indices[pick]].tolist(), strict=True))
        )
    if sc.kind in ("users", "user"):
        active = np.flatnonzero(data.user_counts() > 0)
        n = _count(sc.amount, len(active))
        if sc.selection == "random":
            chosen = rng.choice(active, n, replace=False)
        else:
            counts = data.user_counts()[active]
            order = np.lexsort((rng.random(len(active)), counts))  # random tie-break
            chosen = active[order[-n:]] if sc.selection == "active" else active[order[:n]]
        return DeletionRequest(users=uids[np.sort(chosen)].tolist())
    if sc.kind == "items":
        active = np.flatnonzero(data.item_counts() > 0)
        chosen = rng.choice(active, _count(sc.amount, len(active)), replace=False)
        return DeletionRequest(items=iids[np.sort(chosen)].tolist())
    # sensitive: per-user interactions with items of one group
    counts = data.user_counts()
    eligible = np.flatnonzero(counts >= 4)
    users = rng.choice(eligible, _count(sc.amount, len(eligible)), replace=False)
    pairs = []
    for u in np.sort(users):
        items = data.indices[data.indptr[u] : data.indptr[u + 1]]
        if item_groups:
            groups = [item_groups.get(iids[i]) for i in items]
            known = [g for g in groups if g is not None]
            if known:
                values, freq = np.unique(np.asarray(known, dtype=str), return_counts=True)
                target = values[np.argmax(freq)]
                chosen = [i for i, g in zip(items, groups, strict=True) if str(g) == target]
            else:
                chosen = list(rng.choice(items, max(1, len(items) // 10), replace=False))
        else:
            chosen = list(rng.choice(items, max(1, len(items) // 10), replace=False))
        pairs.extend((uids[u], iids[i]) for i in chosen)
    return DeletionRequest(pairs=[(_plain(u), _plain(i)) for u, i in pairs])


def _plain(x: object) -> object:
    return x.item() if isinstance(x, np.generic) else x
