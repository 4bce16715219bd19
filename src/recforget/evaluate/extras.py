"""The bench's extras: consistency with the retrained model and membership-inference attacks.

Every row of a :func:`recforget.evaluate.bench.run_bench` result gets ``consistency`` (with the
retrained oracle, :mod:`recforget.evaluate.consistency`) and ``attack`` (the AUCs of
:mod:`recforget.evaluate.attacks`), measured on seeded samples capped by :data:`EXTRAS_CAPS` so
that they cost little next to a retrain.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from recforget._rng import check_random_state
from recforget.data.interactions import Interactions
from recforget.evaluate.attacks import interaction_mia, sample_non_members, user_mia
from recforget.evaluate.consistency import (
    as_pairs,
    common_item_vectors,
    deleted_item_ranks,
    neighbour_overlap,
    rank_summary,
    score_agreement,
    topk_overlap,
)
from recforget.evaluate.scenarios import Scenario, _count
from recforget.models.base import Recommender
from recforget.unlearn import DeletionRequest

EXTRAS_CAPS = {
    "heldout_pairs": 5000,  # held-out pairs for score agreement
    "deleted_pairs": 2000,  # deleted pairs for agreement, ranks and the interaction MIA
    "users": 1000,  # users for the top-k Jaccard
    "mia_users": 200,  # reserved non-member users for the user-level MIA
    "shadow_users": 300,  # the attacker's shadow users (drawn from the retained users)
}
"""Sample sizes of the extras: each measure uses at most this many pairs/users (seeded)."""
EXTRAS_K = 10  # top-k lists compared per user
EXTRAS_NEIGHBOURS = 200  # item neighbours compared per item
MIN_MIA_USERS = 5  # fewest deleted (member) users for the user-level MIA


@dataclass(frozen=True)
class ExtrasContext:
    """What the extras need besides the models: the data splits, the request and the seed."""

    data: Interactions  # every interaction (the attacker's view of user histories)
    train: Interactions  # the original model's training data
    test: Interactions  # held-out positives, before the request
    test_after: Interactions  # held-out positives aligned with the remaining data
    request: DeletionRequest
    reserved: np.ndarray  # raw ids of users held out of training for the user-level MIA
    seed: int


def reserve_users(
    train: Interactions, test: Interactions, sc: Scenario, seed: int
) -> tuple[Interactions, Interactions, np.ndarray]:
    """Hold random users out of both splits as non-members for the user-level MIA.

    As many as the scenario deletes (at least 20, at most ``EXTRAS_CAPS["mia_users"]`` and a
    fifth of the users), drawn with ``seed + 2``; none when the scenario deletes fewer than
    :data:`MIN_MIA_USERS` users.
    """
    active = np.flatnonzero(train.user_counts() > 0)
    expected = _count(sc.amount, len(active))
    n = min(max(expected, 20), EXTRAS_CAPS["mia_users"], len(active) // 5)
    if expected < MIN_MIA_USERS or n < MIN_MIA_USERS:
        return train, test, np.empty(0, dtype=object)
    rng = check_random_state(seed + 2)
    reserved = train.users.ids[np.sort(rng.choice(active, n, replace=False))]
    train = train.remove(users=reserved).data
    test = test.remove(users=reserved, missing="ignore").data
    return train, test, reserved


def add_extras(
    original: Recommender,
    orig_row: dict[str, Any],
    runs: list[dict[str, Any]],
    models: dict[str, Recommender],
    ctx: ExtrasContext,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """Fill ``consistency`` and ``attack`` of the original row and every run, in place.

    Returns the ``extras`` entry of the result: sample sizes, caps, timing and, for each
    measure that could not be taken, the reason (``notes``).
    """
    start = time.perf_counter()
    rng = check_random_state(ctx.seed + 3)
    req = ctx.request
    remaining = ctx.train.remove(pairs=req.pairs, users=req.users, items=req.items).data
    samples = _samples(ctx, remaining, rng)
    oracle = models.get("retrain")
    notes: dict[str, str | None] = {
        "consistency": None if oracle is not None else "no retrain run to compare with",
    }
    members = samples["deleted"]
    non_members = None
    if members:
        non_members = sample_non_members_pairs(ctx, members, rng)
        notes["interaction_mia"] = None
    else:
        notes["interaction_mia"] = "the request holds no (user, item) pairs the models still know"
    user_setup, notes["user_mia"] = _user_attack_setup(ctx, remaining, rng)
    targets = [("original", original, orig_row)]
    targets += [(run["method"], models[run["method"]], run) for run in runs]
    for name, model, row in targets:
        say(f"extras: {name} ...")
        row["consistency"] = (
            json_ready(consistency_row(model, oracle, samples, remaining)) if oracle else None
        )
        attack: dict[str, Any] = {"interaction": None, "user": None}
        if non_members is not None:
            attack["interaction"] = interaction_mia(model, members, non_members)
        if user_setup is not None:
            attack["user"] = user_mia(
                model, **user_setup, histories=ctx.data, random_state=ctx.seed + 4
            )
        row["attack"] = json_ready(attack)
    return {
        "seconds": time.perf_counter() - start,
        "caps": dict(EXTRAS_CAPS),
        "k": EXTRAS_K,
        "neighbours": EXTRAS_NEIGHBOURS,
        "samples": {
            "heldout_pairs": len(samples["heldout"][0]),
            "deleted_pairs": len(members),
            "non_member_pairs": 0 if non_members is None else len(non_members),
            "users": len(samples["users"]),
        },
        "reserved_users": len(ctx.reserved),
        "notes": notes,
    }


def consistency_row(
    model: Recommender,
    oracle: Recommender,
    samples: dict[str, Any],
    remaining: Interactions,
) -> dict[str, Any]:
    """Consistency of ``model`` with the retrained ``oracle`` on the sampled pairs and users."""
    pairs = samples["deleted"]
    du, di = [p[0] for p in pairs], [p[1] for p in pairs]
    deleted = len(pairs) > 0
    _, va, vb = common_item_vectors(model, oracle)
    ranks = deleted_item_ranks(model, pairs, remaining) if deleted else None
    return {
        "heldout": score_agreement(model, oracle, *samples["heldout"]),
        "deleted": score_agreement(model, oracle, du, di) if deleted else None,
        f"topk_jaccard@{EXTRAS_K}": topk_overlap(
            model, oracle, samples["users"], EXTRAS_K, exclude=remaining
        ),
        f"neighbour_jaccard@{EXTRAS_NEIGHBOURS}": neighbour_overlap(va, vb, EXTRAS_NEIGHBOURS),
        "deleted_ranks": rank_summary(ranks, ks=(EXTRAS_K,)) if deleted else None,
    }


def _samples(
    ctx: ExtrasContext, remaining: Interactions, rng: np.random.Generator
) -> dict[str, Any]:
    """Seeded, capped samples: held-out pairs, deleted pairs (pair requests) and users."""
    hu, hi = as_pairs(ctx.test_after)
    pick = _cap(len(hu), EXTRAS_CAPS["heldout_pairs"], rng)
    pairs = ctx.request.pairs if not ctx.request.users and not ctx.request.items else []
    dpick = _cap(len(pairs), EXTRAS_CAPS["deleted_pairs"], rng)
    active = remaining.users.ids[remaining.user_counts() > 0]
    return {
        "heldout": (hu[pick], hi[pick]),
        "deleted": [tuple(pairs[j]) for j in dpick],
        "users": active[_cap(len(active), EXTRAS_CAPS["users"], rng)],
    }


def sample_non_members_pairs(
    ctx: ExtrasContext, members: list[tuple[object, object]], rng: np.random.Generator
) -> list[tuple[object, object]]:
    """As many never-trained pairs as members, from the members' users (held-out first)."""
    users = {p[0] for p in members}
    return sample_non_members(ctx.train, ctx.test, len(members), rng, users=users)


def _user_attack_setup(
    ctx: ExtrasContext, remaining: Interactions, rng: np.random.Generator
) -> tuple[dict[str, Any] | None, str | None]:
    """Arguments of :func:`user_mia` (shadow data, members, non-members), or why there are none.

    Members are the deleted users, non-members the reserved users; the attacker's shadow users
    are a sample of the retained users (their full histories).
    """
    if not ctx.request.users:
        return None, "the request deletes no whole users"
    members = np.asarray(ctx.request.users, dtype=object)
    if len(members) < MIN_MIA_USERS or len(ctx.reserved) < MIN_MIA_USERS:
        return None, (
            f"too few users: {len(members)} deleted and {len(ctx.reserved)} reserved "
            f"(at least {MIN_MIA_USERS} of each needed)"
        )
    members = members[np.sort(_cap(len(members), EXTRAS_CAPS["mia_users"], rng))]
    active = remaining.users.ids[remaining.user_counts() > 0]
    if len(active) < 20:
        return None, f"too few retained users ({len(active)}) for the attacker's shadow data"
    shadow_ids = set(active[_cap(len(active), EXTRAS_CAPS["shadow_users"], rng)].tolist())
    others = [u for u in ctx.data.users.ids.tolist() if u not in shadow_ids]
    shadow = ctx.data.remove(users=others).data
    setup = {"shadow_data": shadow, "member_users": members, "non_member_users": ctx.reserved}
    return setup, None


def _cap(n: int, cap: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of a seeded sample of at most ``cap`` of ``n`` things (all of them, in order)."""
    if n <= cap:
        return np.arange(n)
    return np.sort(rng.choice(n, cap, replace=False))


def json_ready(obj: Any) -> Any:
    """JSON-ready copy: NaN becomes ``None``, numpy scalars become Python numbers."""
    if isinstance(obj, dict):
        return {k: json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj
