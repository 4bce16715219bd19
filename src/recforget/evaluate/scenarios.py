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
    For ``N`` random users, their interactions with items of one kind: the user's most
    frequent group when item groups (e.g. genres, :func:`recforget.data.datasets.item_genre_map`)
    are given, else a random tenth of the user's items. ``items_per_user`` caps the pairs
    drawn per user (a seeded random subset). The "forget my history of this kind" request.
``stream:N[:size]``
    A sequence of ``N`` requests of ``size`` random interactions each (default 10; a fraction
    of the training interactions if ``size < 1``), disjoint, applied one after another
    (:func:`make_stream`, :func:`recforget.evaluate.stream.run_stream`).
    :func:`make_request` returns their union.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recforget._rng import check_random_state
from recforget.data.interactions import Interactions
from recforget.unlearn.requests import DeletionRequest

KINDS = ("interactions", "users", "user", "items", "sensitive", "stream")
WHOLE_USER_KINDS = ("users", "user")
DEFAULT_STREAM_SIZE = 10


@dataclass(frozen=True)
class Scenario:
    """A parsed scenario spec: ``kind:amount[:selection|size]``.

    ``selection`` is the user selection of ``users`` scenarios; ``size`` is the request size of
    ``stream`` scenarios and the per-user cap of ``sensitive`` ones (``None``: default).
    """

    kind: str
    amount: float
    selection: str = "random"
    size: float | None = None

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
        if len(parts) > 3:
            raise ValueError(f"scenario {spec!r} has too many parts")
        third = parts[2] if len(parts) > 2 else ""
        if kind in ("stream", "sensitive"):
            size = _positive(third, spec) if third else None
            return cls(kind, amount, "random", size)
        selection = third or "random"
        if kind == "users" and selection not in ("random", "active", "inactive"):
            raise ValueError(f"scenario {spec!r}: selection must be random|active|inactive")
        return cls(kind, amount, selection)

    def __str__(self) -> str:
        extra = f":{self.selection}" if self.kind == "users" and self.selection != "random" else ""
        if self.size is not None:
            extra = f":{_num(self.size)}"
        return f"{self.kind}:{_num(self.amount)}{extra}"


def _num(x: float) -> int | float:
    return int(x) if float(x).is_integer() else x


def _positive(text: str, spec: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise ValueError(f"scenario {spec!r}: {text!r} is not a number") from exc
    if value <= 0:
        raise ValueError(f"scenario {spec!r}: {text!r} must be positive")
    return value


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
    if sc.kind == "stream":
        return DeletionRequest(pairs=[p for r in make_stream(data, sc, rng) for p in r.pairs])
    if sc.kind == "interactions":
        pick = np.sort(rng.choice(data.nnz, _count(sc.amount, data.nnz), replace=False))
        return DeletionRequest(pairs=_entry_pairs(data, pick))
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
    return _sensitive(data, sc, rng, item_groups)


def make_stream(
    data: Interactions,
    scenario: str | Scenario,
    random_state: int | np.random.Generator | None = None,
) -> list[DeletionRequest]:
    """The ``N`` disjoint requests of a ``stream:N[:size]`` scenario, in order (raw ids).

    Each holds ``size`` training interactions (a fraction of them if ``size < 1``); together
    they hold ``N * size`` distinct interactions drawn uniformly without replacement.
    """
    sc = Scenario.parse(scenario) if isinstance(scenario, str) else scenario
    if sc.kind != "stream":
        raise ValueError(f"make_stream needs a stream scenario, got {sc}")
    rng = check_random_state(random_state)
    n = int(sc.amount)
    size = _count(sc.size if sc.size is not None else DEFAULT_STREAM_SIZE, data.nnz)
    if n * size > data.nnz:
        raise ValueError(f"{sc}: {n} x {size} interactions but only {data.nnz} exist")
    pick = rng.choice(data.nnz, n * size, replace=False).reshape(n, size)
    return [DeletionRequest(pairs=_entry_pairs(data, np.sort(row))) for row in pick]


def _entry_pairs(data: Interactions, entries: np.ndarray) -> list[tuple[object, object]]:
    rows = data.row_of_entry[entries]
    users = data.users.ids[rows].tolist()
    return list(zip(users, data.items.ids[data.indices[entries]].tolist(), strict=True))


def _sensitive(
    data: Interactions,
    sc: Scenario,
    rng: np.random.Generator,
    item_groups: dict[object, object] | None,
) -> DeletionRequest:
    """Per chosen user, the interactions with items of the user's most frequent group."""
    uids, iids = data.users.ids, data.items.ids
    eligible = np.flatnonzero(data.user_counts() >= 4)
    users = rng.choice(eligible, _count(sc.amount, len(eligible)), replace=False)
    group = None
    if item_groups:
        labels = np.array([str(item_groups.get(i, "")) for i in iids.tolist()])
        group = np.unique(labels, return_inverse=True)[1].ravel()
        group[labels == ""] = -1
    pairs = []
    for u in np.sort(users):
        items = data.indices[data.indptr[u] : data.indptr[u + 1]]
        g = group[items] if group is not None else np.full(len(items), -1)
        if (g >= 0).any():
            target = np.argmax(np.bincount(g[g >= 0]))
            chosen = items[g == target]
        else:
            chosen = rng.choice(items, max(1, len(items) // 10), replace=False)
        if sc.size is not None and len(chosen) > sc.size:
            chosen = rng.choice(chosen, int(sc.size), replace=False)
        pairs.extend((uids[u], iids[i]) for i in np.sort(chosen))
    return DeletionRequest(pairs=pairs)  # which makes numpy ids plain Python values
