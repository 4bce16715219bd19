"""Forget-vs-retrain benchmark: train, delete, run each unlearning method, compare.

One run: load a data set, hold out a test set, fit the original model, draw a seeded deletion
request from a scenario, apply every method to the same model and request, and measure time,
speed-up over retraining, the stationarity certificate, held-out accuracy, and the trace left
in the deleted pairs (their mean score under each model; ``gap_closed`` is the fraction of the
original-to-retrain gap that a method closes). The untouched original model is reported beside
the methods: a small deletion barely moves global accuracy, so the trace is what shows
forgetting.

With ``extras=True`` (the default) every row also gets ``consistency`` with the retrained oracle
(:mod:`recforget.evaluate.consistency`) and ``attack``, the membership-inference AUCs of
:mod:`recforget.evaluate.attacks`, on seeded samples capped by :data:`EXTRAS_CAPS` so that they
cost little next to a retrain. ``stream:N[:size]`` scenarios are run by
:func:`recforget.evaluate.stream.run_stream`. The JSON schema is documented in
:mod:`recforget.evaluate.report`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
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
from recforget.evaluate.scenarios import (
    WHOLE_USER_KINDS,
    Scenario,
    _count,
    make_request,
    make_stream,
)
from recforget.models.base import Recommender
from recforget.unlearn import DeletionRequest, unlearn

ALS_METHODS = ("retrain", "warmstart", "unlearn-als", "unlearn-als-selective")
NEURAL_METHODS = ("retrain", "finetune", "alteraser", "influence")
NEURAL_ARCHS = ("gmf", "mlp", "neumf")

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


def prepare_data(
    dataset: str | Interactions, *, threshold: float | None = None
) -> tuple[str, Interactions]:
    """Load a data set by name and make it implicit feedback.

    With ``threshold=None`` every rating is a positive (value 1); otherwise ratings below the
    threshold are dropped.
    """
    from recforget.data import datasets, transforms

    if isinstance(dataset, Interactions):
        name, data = "custom", dataset
    else:
        name, data = dataset, datasets.load(dataset)
    if threshold is None:
        data = data.with_values(np.ones(data.nnz))
    else:
        data = transforms.to_implicit(data, threshold=threshold)
    return name, data


def default_model(model: str, seed: int, **params: Any):
    """The model a benchmark trains: ALS, or a neural recommender by architecture name."""
    if model == "als":
        from recforget.models.als import ALS

        return ALS(random_state=seed, **params)
    if model in NEURAL_ARCHS:
        from recforget.models.ncf import NCF

        return NCF(arch=model, random_state=seed, **params)
    raise ValueError(f"unknown model {model!r}; choose als, gmf, mlp or neumf")


def align(test: Interactions, request: DeletionRequest) -> Interactions:
    """The test set without the users/items the request removes (vocabularies follow)."""
    if not request.users and not request.items:
        return test
    return test.remove(users=request.users, items=request.items, missing="ignore").data


def deleted_pair_scores(model, request: DeletionRequest) -> float | None:
    """Mean score of the request's pairs under ``model`` (``None`` without pairs)."""
    if not request.pairs:
        return None
    users = [p[0] for p in request.pairs]
    items = [p[1] for p in request.pairs]
    scorer = getattr(model, "predict_proba", None) or model.score
    return float(np.mean(scorer(users, items)))


def run_bench(
    dataset: str | Interactions = "ml-100k",
    *,
    model: str = "als",
    scenario: str = "interactions:0.01",
    methods: Sequence[str] | None = None,
    seed: int = 0,
    test_fraction: float = 0.2,
    threshold: float | None = None,
    model_params: dict[str, Any] | None = None,
    method_options: dict[str, dict[str, Any]] | None = None,
    evaluate: Callable | None = None,
    ks: Sequence[int] = (10,),
    extras: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run one benchmark and return its JSON-ready result.

    Parameters
    ----------
    extras : bool
        Add ``consistency`` (with the retrain run; ``None`` without one) and ``attack``
        (membership inference) to the original row and every run. For whole-user scenarios
        the user-level attack needs users no model trained on: up to
        ``EXTRAS_CAPS["mia_users"]`` random users are then held out of the data before the
        original fit (reported as ``extras.reserved_users``), so such runs differ from runs
        with ``extras=False``.

    Returns
    -------
    dict
        ``{"dataset", "model", "scenario", "seed", "params", "data", "request", "original": {...},
        "runs": [{"method", "seconds", "speedup", "residual", "certified", "sweeps",
        "rows_solved", "objective", "deleted_mean_score", "gap_closed", "metrics",
        "consistency", "attack"}, ...], "extras"}`` (and ``"stream"`` for stream scenarios; see
        :mod:`recforget.evaluate.report` for every key). ``speedup`` is retrain seconds over
        the method's seconds (``None`` without a retrain run); ``residual`` is the max relative
        row gradient of the retraining objective.
    """
    from recforget.data.split import random_holdout
    from recforget.evaluate.accuracy import evaluate_ranking

    say = log or (lambda _msg: None)
    evaluate = evaluate or evaluate_ranking
    sc = Scenario.parse(scenario)
    methods = list(methods or (ALS_METHODS if model == "als" else NEURAL_METHODS))
    method_options = method_options or {}
    name, data = prepare_data(dataset, threshold=threshold)
    train, test = random_holdout(data, test_fraction, random_state=seed)
    reserved = np.empty(0, dtype=object)
    if extras and sc.kind in WHOLE_USER_KINDS:
        train, test, reserved = reserve_users(train, test, sc, seed)
    say(
        f"{name}: {data.n_users} users x {data.n_items} items, {train.nnz} train / "
        f"{test.nnz} test interactions"
    )

    original = default_model(model, seed, **(model_params or {}))
    start = time.perf_counter()
    original.fit(train)
    fit_seconds = time.perf_counter() - start
    say(f"original {model} fitted in {fit_seconds:.2f}s")
    requests, grouping = _requests(name, train, sc, seed)
    request = requests[0] if len(requests) == 1 else _union(requests)
    test_after = align(test, request)

    # the untouched model, judged on the same test set and on the retraining objective
    orig_row = _original_row(original, request, train, test_after, evaluate, ks)
    orig_row["fit_seconds"] = fit_seconds
    stream = None
    if sc.kind == "stream":
        from recforget.evaluate.stream import run_stream

        outcome = run_stream(
            original,
            requests,
            methods,
            test=test_after,
            evaluate=evaluate,
            ks=ks,
            method_options=method_options,
            log=say,
        )
        runs, models, stream = outcome.runs, outcome.models, outcome.summary()
    else:
        runs, models = _run_methods(
            original, request, methods, method_options, test_after, evaluate, ks, say
        )
    finish_runs(orig_row, runs)
    extras_info = None
    if extras:
        context = ExtrasContext(data, train, test, test_after, request, reserved, seed)
        extras_info = add_extras(original, orig_row, runs, models, context, say)
    else:
        for row in (orig_row, *runs):
            row["consistency"] = row["attack"] = None
    params = original.get_params()
    params.pop("show_progress", None)
    result = {
        "dataset": name,
        "model": model,
        "scenario": str(sc),
        "seed": seed,
        "params": {k: v for k, v in params.items() if _jsonable(v)},
        "data": {
            "n_users": data.n_users,
            "n_items": data.n_items,
            "train": train.nnz,
            "test": test.nnz,
        },
        "request": {
            "pairs": len(request.pairs),
            "users": len(request.users),
            "items": len(request.items),
            **({"item_groups": grouping} if grouping else {}),
        },
        "original": orig_row,
        "runs": runs,
        "extras": extras_info,
    }
    if stream is not None:
        result["stream"] = stream
    return result


def _requests(
    name: str, train: Interactions, sc: Scenario, seed: int
) -> tuple[list[DeletionRequest], str | None]:
    """The scenario's request(s), seeded by ``seed + 1``, and how sensitive items were grouped."""
    if sc.kind == "stream":
        return make_stream(train, sc, random_state=seed + 1), None
    groups = item_groups(name) if sc.kind == "sensitive" else None
    request = make_request(train, sc, random_state=seed + 1, item_groups=groups)
    grouping = ("genres" if groups else "random") if sc.kind == "sensitive" else None
    return [request], grouping


def item_groups(name: str) -> dict[object, str] | None:
    """Item genres of a named MovieLens data set (``None`` for other data or when unavailable)."""
    from recforget.data import datasets
    from recforget.data.errors import DataError

    if name not in datasets.SOURCES:
        return None
    try:
        return datasets.item_genre_map(name)  # type: ignore[arg-type]
    except (RuntimeError, OSError, DataError, KeyError):
        return None


def _union(requests: Sequence[DeletionRequest]) -> DeletionRequest:
    return DeletionRequest(
        pairs=[p for r in requests for p in r.pairs],
        users=[u for r in requests for u in r.users],
        items=[i for r in requests for i in r.items],
    )


def _run_methods(
    original: Recommender,
    request: DeletionRequest,
    methods: Sequence[str],
    method_options: dict[str, dict[str, Any]],
    test_after: Interactions,
    evaluate: Callable,
    ks: Sequence[int],
    say: Callable[[str], None],
) -> tuple[list[dict[str, Any]], dict[str, Recommender]]:
    runs, models = [], {}
    for method in methods:
        say(f"running {method} ...")
        result = unlearn(original, None, request, method, **method_options.get(method, {}))
        metrics = evaluate(result.model, result.data, test_after, ks=ks)
        runs.append(method_row(method, result.receipt, result.model, request, metrics))
        models[method] = result.model
        say(f"  {method}: {result.receipt['seconds']:.3f}s")
    return runs, models


def method_row(
    method: str,
    receipt: dict[str, Any],
    model: Recommender,
    request: DeletionRequest,
    metrics: dict[str, float],
) -> dict[str, Any]:
    """One ``runs`` entry from an unlearning receipt (speed-up and gap are added later)."""
    row = {
        "method": method,
        "seconds": receipt["seconds"],
        "residual": receipt.get("certificate", {}).get("max_relative", receipt.get("residual")),
        "certified": receipt.get("certified"),
        "sweeps": receipt.get("sweeps"),
        "rows_solved": receipt.get("rows_solved"),
        "objective": receipt.get("objective"),
        "deleted_mean_score": deleted_pair_scores(model, request),
        "metrics": _floats(metrics),
    }
    curve = list(getattr(model, "loss_history_", None) or [])
    if curve:
        row["loss_curve"] = [float(v) for v in curve]
    return row


def finish_runs(orig_row: dict[str, Any], runs: list[dict[str, Any]]) -> None:
    """Add ``speedup`` and ``gap_closed`` to every run (relative to the retrain run)."""
    retrain = next((run for run in runs if run["method"] == "retrain"), None)
    for run in runs:
        run["speedup"] = (
            retrain["seconds"] / run["seconds"]
            if retrain is not None and run["seconds"] > 0
            else None
        )
        run["gap_closed"] = _gap_closed(
            orig_row["deleted_mean_score"],
            retrain and retrain["deleted_mean_score"],
            run["deleted_mean_score"],
        )


def _original_row(original, request, train, test_after, evaluate, ks) -> dict[str, Any]:
    removal = train.remove(pairs=request.pairs, users=request.users, items=request.items)
    residual = None
    objective = None
    if hasattr(original, "objective"):  # ALS: the old factors on the retraining objective
        from recforget.unlearn.als import transplant

        stay = transplant(original, removal)
        cert = stay.stationarity()
        residual, objective = cert["max_relative"], stay.loss()
        model_for_eval = stay
    elif hasattr(original, "retraining_residual"):
        residual = original.retraining_residual(removal.data)
        model_for_eval = original.without(removal) if hasattr(original, "without") else None
    else:  # pragma: no cover
        model_for_eval = None
    metrics = evaluate(model_for_eval, removal.data, test_after, ks=ks) if model_for_eval else {}
    return {
        "method": "original",
        "residual": residual,
        "objective": objective,
        "deleted_mean_score": deleted_pair_scores(original, request),
        "metrics": _floats(metrics),
    }


# ---------------------------------------------------------------------- extras
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
            _clean(consistency_row(model, oracle, samples, remaining)) if oracle else None
        )
        attack: dict[str, Any] = {"interaction": None, "user": None}
        if non_members is not None:
            attack["interaction"] = interaction_mia(model, members, non_members)
        if user_setup is not None:
            attack["user"] = user_mia(
                model, **user_setup, histories=ctx.data, random_state=ctx.seed + 4
            )
        row["attack"] = _clean(attack)
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


def _clean(obj: Any) -> Any:
    """JSON-ready copy: NaN becomes ``None``, numpy scalars become Python numbers."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def _gap_closed(orig: float | None, retrain: float | None, method: float | None):
    if orig is None or retrain is None or method is None or orig == retrain:
        return None
    return float((orig - method) / (orig - retrain))


def _floats(d: dict) -> dict:
    return {k: float(v) for k, v in d.items()}


def _jsonable(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str, list, tuple))


TABLE_COLUMNS = [
    "method",
    "seconds",
    "speedup",
    "sweeps",
    "residual",
    "certified",
    "auc",
    "recall@10",
    "ndcg@10",
    "deleted_score",
    "gap_closed",
]


def table_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Flatten a bench result into rows for a human table (original first)."""
    rows = []
    orig = result["original"]
    rows.append(
        {
            "method": "original (untouched)",
            "seconds": orig.get("fit_seconds"),
            "residual": orig["residual"],
            "deleted_score": orig["deleted_mean_score"],
            **orig["metrics"],
        }
    )
    for run in result["runs"]:
        rows.append({**run, **run["metrics"], "deleted_score": run["deleted_mean_score"]})
    for row in rows:
        for key in ("residual",):
            if isinstance(row.get(key), float):
                row[key] = f"{row[key]:.2e}"
    return rows
