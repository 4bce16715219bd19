"""LiRA in the benchmarks: the original, the retrain, a second-seed retrain and every method.

:func:`run_lira` is the one orchestration of the likelihood-ratio attack
(:mod:`recforget.evaluate.lira`) that every benchmark shares: ``recforget bench --lira K``
(:func:`recforget.evaluate.bench.run_bench` with ``lira=K``), ``benchmarks/ncf_unlearn.py
--lira K`` and ``benchmarks/lira.py``. Given the fitted original, the models built from it for
one deletion request and the data splits, it

* fits the oracle (``forget(original, request, "retrain")``) when the caller has none;
* fits ``retrain-seed2``: ``clone(original)`` with seed ``seed + 1000`` on the remaining data,
  the spread between two equally valid retrains;
* for a pair request (``interactions:`` scenarios) runs interaction-level LiRA
  (:func:`~recforget.evaluate.lira.lira_rows`) on the deleted pairs (members) against as many
  held-out positives of the same users (non-members,
  :func:`~recforget.evaluate.lira.matched_non_members`, seed ``seed + 2``);
* for a whole-user request (``users:``, ``user:``) runs user-level LiRA
  (:func:`~recforget.evaluate.lira.user_lira_rows`) on the deleted users against users held out
  of the data before the original was fitted (the caller's ``non_member_users``), with the MIARS
  statistic and, for implicit-feedback ALS, the fold-in statistic;
* judges the result (:func:`verdict`): do the original's and the retrain's 95% intervals
  separate, and does each method land inside a retrain's interval?

The shadows clone the original (same hyper-parameters, fresh seeds), so one set of shadows
attacks every model; they are seeded by ``seed + 4``. Neither they nor the retrains depend on
the methods, so with ``cache=DIR`` :func:`run_lira` keeps them (the retrains it fits) in
``DIR`` (arrays + JSON, :meth:`~recforget.evaluate.lira.Shadows.save` and the model's
``save``), each in a folder named by a hash of everything it depends on (the model's class and
parameters, the data's fingerprint, the candidates, the count and the seeds), and a later run
with the same settings loads them instead of fitting them again (its ``cached`` field lists
what it loaded, and the seconds reported are those of the run that fitted them). The result's
fields are documented in docs/privacy.md and in :mod:`recforget.evaluate.report` (the bench's
``lira`` entry).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from recforget.data.interactions import Interactions
from recforget.evaluate.lira import (
    DEFAULT_SHADOWS,
    Shadows,
    lira_rows,
    matched_non_members,
    user_lira_rows,
)
from recforget.evaluate.roc import intervals_overlap
from recforget.models.base import Recommender, clone
from recforget.unlearn import DeletionRequest, forget

HEADLINE = ("auc", "tpr@0.1%fpr", "tpr@1%fpr")
"""The metrics :func:`verdict` judges."""
LIRA_KINDS = ("interactions", "users", "user")
"""Scenario kinds the attack runs on: pair requests and whole-user requests."""
REFERENCES = ("retrain", "retrain-seed2")
SECOND_SEED_OFFSET = 1000


def check_scenario(kind: str) -> None:
    """Refuse, before anything is fitted, a scenario kind the attack cannot run on."""
    if kind not in LIRA_KINDS:
        raise ValueError(
            f"the LiRA attack runs on interactions:F, users:F and user:N scenarios, not {kind}:"
        )


def second_seed_retrain(
    original: Recommender, remaining: Interactions, seed: int
) -> tuple[Recommender, float]:
    """``clone(original)`` with seed ``seed + 1000`` fitted on ``remaining``, and its seconds."""
    start = time.perf_counter()
    model = clone(original).set_params(random_state=seed + SECOND_SEED_OFFSET)
    model.fit(remaining)
    return model, time.perf_counter() - start


def run_lira(
    original: Recommender,
    models: Mapping[str, Recommender],
    request: DeletionRequest,
    *,
    train: Interactions,
    test: Interactions,
    histories: Interactions | None = None,
    non_member_users: Iterable[object] = (),
    remaining: Interactions | None = None,
    n_shadows: int = DEFAULT_SHADOWS,
    seed: int = 0,
    transform: str = "auto",
    variance: str = "global",
    n_bootstrap: int = 200,
    cache: str | Path | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """LiRA on the original, the retrain, a second-seed retrain and every model in ``models``.

    Parameters
    ----------
    original : Recommender
        The fitted original (trained on ``train``).
    models : mapping of label -> Recommender
        The models of the request: ``"retrain"`` (the oracle; fitted here when absent) and one
        per method; ``"retrain-seed2"`` is fitted here when absent.
    request : DeletionRequest
        Pairs only, or whole users only.
    train, test : Interactions
        The original's training data and the held-out positives (non-member pairs come from
        ``test``).
    histories : Interactions, optional
        Whole-user requests: every candidate user's history (default ``train``, which lacks
        the non-members, so pass the full data).
    non_member_users : raw user ids
        Whole-user requests: users held out of ``train`` before the original was fitted.
    remaining : Interactions, optional
        The data without the request (default ``train.remove(...)``); the second-seed
        retrain is fitted on it.
    n_shadows : even int >= 4
    seed : int
        The run's seed: non-members ``seed + 2``, shadows and bootstrap ``seed + 4``, second
        retrain ``seed + 1000``.
    transform, variance, n_bootstrap
        See :func:`~recforget.evaluate.lira.lira_rows`.
    cache : folder, optional
        Keep the interaction-level shadows and the retrains fitted here there, and load them
        when an earlier run with the same settings left them (module docstring).

    Returns
    -------
    (dict, dict)
        The JSON-ready result (:func:`~recforget.evaluate.lira.lira_rows`' fields without
        ``curves``, plus ``"attack_seconds"``, ``"timing"`` (seconds of the fits made here:
        ``retrain``, ``retrain-seed2``), ``"cached"`` (what came from ``cache``: "shadows",
        "retrain", "retrain-seed2") and ``"verdict"``), and the ROC curves
        ``{label: {variant: (fpr, tpr)}}`` for :func:`~recforget.evaluate.roc.plot_roc`.
    """
    say = log or (lambda _msg: None)
    if request.items or (request.pairs and request.users):
        raise ValueError("the LiRA attack needs a request of pairs only or of whole users only")
    if not request.pairs and not request.users:
        raise ValueError("the LiRA attack needs a non-empty request")
    models = dict(models)
    timing: dict[str, float] = {}
    cached: list[str] = []
    if remaining is None:
        remaining = train.remove(pairs=request.pairs, users=request.users).data
    for label, fit in (
        ("retrain", lambda: _oracle(original, request)),
        ("retrain-seed2", lambda: second_seed_retrain(original, remaining, seed)),
    ):
        if label in models:
            continue
        key = (remaining.fingerprint(), getattr(original, "seed_", None))
        where = _cached(cache, label, original, key, seed)
        if where is not None and (where / "fit.json").exists():
            models[label] = type(original).load(where)
            timing[label] = json.loads((where / "fit.json").read_text())["seconds"]
            cached.append(label)
            continue
        say(f"lira: fitting {label} ...")
        models[label], timing[label] = fit()
        if where is not None:
            models[label].save(where)
            (where / "fit.json").write_text(json.dumps({"seconds": timing[label]}))
    ordered = {label: models[label] for label in REFERENCES}
    ordered.update((k, v) for k, v in models.items() if k not in REFERENCES)
    start = time.perf_counter()
    if request.pairs:
        members = list(request.pairs)
        non_members = matched_non_members(train, test, members, seed + 2)
        key = (original.seen_.fingerprint(), members, non_members, n_shadows, transform)
        where = _cached(cache, "shadows", original, key, seed + 4)
        shadows = None
        if where is not None and (where / "shadows.json").exists():
            shadows = Shadows.load(where)
            cached.append("shadows")
        attack = lira_rows(
            original,
            ordered,
            members=members,
            non_members=non_members,
            n_shadows=n_shadows,
            transform=transform,
            variance=variance,
            n_bootstrap=n_bootstrap,
            random_state=seed + 4,
            shadows=shadows,
            log=log,
        )
        if where is not None and shadows is None:
            attack["shadows"].save(where)
    else:
        non_members = list(non_member_users)
        if not non_members:
            raise ValueError(
                "user-level LiRA needs non-member users held out before the original was "
                "fitted (none were reserved; the scenario may delete too few users)"
            )
        attack = user_lira_rows(
            original,
            ordered,
            member_users=request.users,
            non_member_users=non_members,
            histories=histories if histories is not None else train,
            statistics=("miars", "fold-in") if _implicit_als(original) else ("miars",),
            n_shadows=n_shadows,
            variance=variance,
            n_bootstrap=n_bootstrap,
            random_state=seed + 4,
            log=log,
        )
    curves = attack.pop("curves")
    attack.pop("shadows", None)
    out = {
        **attack,
        "attack_seconds": time.perf_counter() - start,
        "second_seed": seed + SECOND_SEED_OFFSET,
        "timing": timing,
        "cached": cached,
        "verdict": verdict(attack["rows"]),
    }
    return out, curves


def verdict(rows: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Original vs retrain separation, and each method against the two retrains' intervals.

    ``separates[variant][metric]``: the original's and the retrain's 95% intervals do not
    overlap (``None`` without intervals). ``inside_retrain_interval[method][variant][metric]``:
    the method's point estimate lies in the retrain's or the second-seed retrain's interval.
    ``metric`` is each of :data:`HEADLINE`.
    """
    refs = [r for r in REFERENCES if r in rows]
    separates: dict[str, Any] = {}
    for variant in rows["original"]:
        separates[variant] = {}
        for m in HEADLINE:
            overlap = intervals_overlap(
                rows["original"][variant][f"{m}_ci"], rows["retrain"][variant][f"{m}_ci"]
            )
            separates[variant][m] = None if overlap is None else not overlap
    inside: dict[str, Any] = {}
    for label, row in rows.items():
        if label in ("original", *refs):
            continue
        inside[label] = {
            variant: {
                m: _inside(metrics[m], [rows[r][variant][f"{m}_ci"] for r in refs])
                for m in HEADLINE
            }
            for variant, metrics in row.items()
        }
    return {"separates": separates, "inside_retrain_interval": inside}


def plot_lira(curves: Mapping[str, Any], path: str | Path, *, what: str = "") -> Path:
    """Write the ROC of every model to one log-log PNG: the online attack, or for user-level
    runs on ALS the fold-in online attack (:func:`~recforget.evaluate.roc.plot_roc`)."""
    from recforget.evaluate.roc import plot_roc

    first = next(iter(curves.values()))
    variant = "fold-in online" if "fold-in online" in first else "online"
    title = f"{variant} LiRA" + (f", {what}" if what else "")
    return plot_roc({label: c[variant] for label, c in curves.items()}, path, title=title)


def _oracle(original: Recommender, request: DeletionRequest) -> tuple[Recommender, float]:
    result = forget(original, request, "retrain")
    return result.model, result.receipt["seconds"]


def _cached(
    cache: str | Path | None, what: str, model: Recommender, key: Any, seed: int
) -> Path | None:
    """The folder of ``cache`` for ``what`` fitted like ``model`` on ``key`` with ``seed``."""
    if cache is None:
        return None
    params = {k: v for k, v in model._saved_params().items() if k != "random_state"}
    text = json.dumps([what, type(model).__name__, params, key, seed], sort_keys=True, default=str)
    return Path(cache) / f"{what}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def _inside(value: float, intervals: list[Any]) -> bool:
    return any(ci is not None and ci[0] <= value <= ci[1] for ci in intervals)


def _implicit_als(model: Recommender) -> bool:
    from recforget.models.als import ALS

    return isinstance(model, ALS) and model.feedback == "implicit"


__all__ = [
    "HEADLINE",
    "LIRA_KINDS",
    "check_scenario",
    "plot_lira",
    "run_lira",
    "second_seed_retrain",
    "verdict",
]
