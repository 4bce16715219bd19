"""Calibrated membership inference: the likelihood-ratio attack (LiRA) with shadow models.

After Carlini et al., "Membership Inference Attacks From First Principles" (IEEE S&P 2022).
A raw score threshold (:func:`~recforget.evaluate.attacks.interaction_mia`) treats every pair
alike, yet some pairs score high under any model (a popular film for a film buff) and others
low; what membership changes is a pair's score *relative to what it would have been*. LiRA
learns that counterfactual per pair from shadow models.

Interaction level (:func:`train_shadows`, :func:`lira_statistics`, :func:`lira_rows`)
---------------------------------------------------------------------------------------
*Threat model.* The attacker can query the target's score of any (user, item) pair, knows
the target's training algorithm and hyper-parameters, knows the data every compared model
stands on (``base``: the original training data without the deleted pairs), and holds the
*candidates*: the deleted pairs (members of the original's training data) and as many pairs
that were never training data (non-members; held-out positives of the same users, see
:func:`~recforget.evaluate.attacks.sample_non_members`). It must tell which candidates the
target trained on. (This is the auditor's strong attacker: it knows everything but the
membership bit, so what it finds is memorisation, not a difference of samples.)

1. Every candidate is assigned to exactly half of ``K`` shadow models (Carlini et al.'s
   balanced split); shadow ``k`` is :func:`~recforget.models.base.clone` of the target with a
   fresh seed, fitted on ``base`` plus its half of the candidates (about as many as the
   original had members).
2. Every shadow scores every candidate with a *calibrated* score :math:`\\phi` (below), so
   each pair has about ``K/2`` IN and ``K/2`` OUT observations.
3. Per pair, Gaussians are fitted to the IN and OUT observations: means
   :math:`\\mu_{in}, \\mu_{out}` per pair, and variances either per pair or, as the paper
   recommends for fewer than 64 shadows, one global (pooled within-pair) variance per side
   (``variance="global"``, the default).
4. The target's own score :math:`\\phi_{obs}` of the pair gives
   *online*: :math:`\\log \\Lambda = \\log \\mathcal N(\\phi_{obs}; \\mu_{in}, \\sigma_{in}^2) -
   \\log \\mathcal N(\\phi_{obs}; \\mu_{out}, \\sigma_{out}^2)`, and
   *offline* (OUT shadows only): the paper's one-sided test
   :math:`\\Lambda = 1 - \\Pr[Z > \\phi_{obs}] = \\Phi(z)`, :math:`Z \\sim \\mathcal N(\\mu_{out},
   \\sigma_{out}^2)`, :math:`z = (\\phi_{obs} - \\mu_{out}) / \\sigma_{out}`. We report
   :math:`z`, which orders pairs exactly as :math:`\\Phi(z)` does but does not round to 1.
   (Here the offline statistic reads the OUT half of the same shadows; an offline attacker
   would train only those.)

The shadows depend only on ``base`` and the candidates, not on the target, so one set of
shadows attacks the original, the retrain and every unlearning method alike.

*Calibrated scores* (``transform``). LiRA needs a statistic whose spread across shadow models
is close to Gaussian. For NCF (``"logit"``) it is the logit :math:`z_{ui}`: for a positive
pair it is exactly the paper's :math:`\\log(p / (1 - p))` of the model's confidence in the
true label. For ALS (``"standardised"``) it is the score standardised within the user's row,
:math:`(s_{ui} - \\bar s_u) / \\mathrm{sd}_u(s)` over all items. ALS scores
:math:`x_u^\\top y_i` are unbounded and already close to Gaussian across refits, but part of
their spread is a per-user scale (the length of :math:`x_u` moves with the seed and with the
user's other pairs) that is shared by all of the user's items and says nothing about this
pair; standardising removes it while staying a smooth, linear function of the scores, so the
per-pair IN/OUT Gaussians are tighter. The within-user rank (``"rank"``, as the probit of the
rank's quantile) is also offered, but it is discrete and saturates for exactly the pairs that
matter (members near the top of the list), which breaks the Gaussian fit. ``"raw"`` is the
score itself. Measured choices are in docs/privacy.md.

User level (:func:`user_lira_rows`)
-----------------------------------
For whole-user deletions: the candidates are users (the deleted users and as many users no
model trained on), shadows are trained on ``base`` (the original training data without the
deleted users) plus the histories of half of the candidate users, and the per-user statistic
is MIARS-style (Zhang et al., CCS 2021): the cosine between the centroid of the user's
history items and the centroid of the model's top-``k`` recommendations, in the item space of
an attacker's own factorisation of ``base``
(:func:`~recforget.evaluate.attacks.user_features`). A model that does not know a user serves
its most popular items (:func:`~recforget.evaluate.attacks.recommend_or_popular`), as a
deployed system serves a cold user. The same Gaussian likelihood ratio is then applied per
user.

A method that removes the user from the vocabulary serves that user the popular list, as the
retrain does, so the MIARS statistic checks the serving path. The item side is asked by the
*fold-in* statistic (``statistics=("fold-in",)``, implicit ALS): each candidate user's history
is split once, at random (the same split for every model); the user is folded into the model
from the first part (the exact ridge solve of the model's own objective with the item factors
fixed, :func:`fold_in_scores`) and the statistic is the mean within-row standardised score of
the held-back part. Item factors trained on the user's pairs score them higher.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.special import ndtri

from recforget._rng import check_random_state
from recforget.data.interactions import Interactions
from recforget.data.vocab import Vocabulary
from recforget.evaluate.attacks import user_features
from recforget.evaluate.consistency import Pairs, as_pairs
from recforget.evaluate.roc import DEFAULT_FPRS, attack_metrics, roc_curve
from recforget.models.base import Recommender, clone

TRANSFORMS = ("auto", "logit", "raw", "standardised", "rank")
VARIANCES = ("global", "per-pair")
USER_STATISTICS = ("miars", "fold-in")
DEFAULT_SHADOWS = 8
_LOG_2PI = float(np.log(2 * np.pi))


# ---------------------------------------------------------------------- calibrated scores
def resolve_transform(model: Recommender, transform: str = "auto") -> str:
    """The score transform used for ``model``: ``"auto"`` is ``"logit"`` for neural models
    (their scores are logits) and ``"standardised"`` otherwise."""
    if transform not in TRANSFORMS:
        raise ValueError(f"transform must be one of {TRANSFORMS}, got {transform!r}")
    if transform != "auto":
        return transform
    return "logit" if getattr(model, "kind", None) == "ncf" else "standardised"


def calibrated_scores(
    model: Recommender, pairs: Pairs, transform: str = "auto", *, batch_size: int = 1024
) -> np.ndarray:
    """The calibrated score :math:`\\phi` of each pair under ``model`` (module docstring).

    Parameters
    ----------
    model : Recommender
        Fitted; it must know every user and item of ``pairs``.
    pairs : pairs of raw ids, length n
    transform : {"auto", "logit", "raw", "standardised", "rank"}
        ``"logit"`` and ``"raw"`` are the model's score (NCF scores are logits).
    batch_size : int
        Users scored at once (memory ``batch_size * n_items``).

    Returns
    -------
    float64 ndarray of shape (n,)
    """
    t = resolve_transform(model, transform)
    pu, pi = as_pairs(pairs)
    if len(pu) == 0:
        return np.empty(0)
    if t in ("logit", "raw"):
        return np.asarray(model.score(pu, pi), dtype=np.float64)
    rows = model.users_.index(pu)
    cols = model.items_.index(pi)
    uniq, inv = np.unique(rows, return_inverse=True)
    out = np.empty(len(rows), dtype=np.float64)
    for s in range(0, len(uniq), batch_size):
        block = uniq[s : s + batch_size]
        S = np.asarray(model._score_rows(block), dtype=np.float64)
        sel = np.flatnonzero((inv >= s) & (inv < s + len(block)))
        r, own = inv[sel] - s, S[inv[sel] - s, cols[sel]]
        if t == "standardised":
            sd = S.std(axis=1)
            sd[sd == 0] = 1.0
            out[sel] = (own - S.mean(axis=1)[r]) / sd[r]
        else:  # probit of the within-user quantile, ties counted one half
            below = (S[r] < own[:, None]).sum(axis=1)
            tied = (S[r] == own[:, None]).sum(axis=1)
            out[sel] = ndtri((below + 0.5 * tied) / S.shape[1])
    return out


# ---------------------------------------------------------------------- candidates
def matched_non_members(
    train: Interactions,
    test: Interactions,
    members: Pairs,
    rng: int | np.random.Generator | None = None,
) -> list[tuple[object, object]]:
    """Non-member pairs matched to ``members`` user by user: held-out positives, same counts.

    For each user with ``m`` member pairs, ``m`` of their pairs in ``test`` that are not in
    ``train`` are drawn at random (all of them when the user has fewer). The shortfall, if
    any, is made up from other held-out positives of the members' users
    (:func:`~recforget.evaluate.attacks.sample_non_members`). Matching matters to a
    calibrated attack: a random deletion over-represents light users among the members
    (each user in the request has at least one), and a light user's pair moves the model
    more, so unmatched samples differ in how much membership would change their scores.

    Returns
    -------
    list of (user, item) raw-id pairs, ``len(members)`` long (fewer only if the pool runs dry)
    """
    from recforget.evaluate.attacks import sample_non_members

    gen = check_random_state(rng)
    mu, _ = as_pairs(members)
    if len(mu) == 0:
        return []
    m_rows = train.users.index(mu)
    tu = train.users.index(test.users.ids[test.row_of_entry], missing="ignore")
    ti = train.items.index(test.items.ids[test.indices], missing="ignore")
    ok = (tu >= 0) & (ti >= 0)
    ok[ok] = train.entry_positions(tu[ok], ti[ok]) < 0
    pool = np.flatnonzero(ok)
    by_user = pd.Series(pool).groupby(tu[pool]).apply(np.asarray).to_dict() if len(pool) else {}
    want = np.bincount(m_rows, minlength=train.n_users)
    chosen: list[int] = []
    for u in np.flatnonzero(want):
        avail = by_user.get(int(u), np.empty(0, np.int64))
        take = min(int(want[u]), len(avail))
        chosen.extend(gen.choice(avail, size=take, replace=False).tolist())
    uid, iid = train.users.ids, train.items.ids
    pairs = [(uid[tu[j]], iid[ti[j]]) for j in sorted(chosen)]
    short = len(mu) - len(pairs)
    if short > 0:
        rest = test.select(~np.isin(np.arange(test.nnz), chosen)) if chosen else test
        pairs += sample_non_members(train, rest, short, gen, users=np.unique(mu).tolist())
    return [(_plain(u), _plain(i)) for u, i in pairs]


def _plain(x: object) -> object:
    return x.item() if isinstance(x, np.generic) else x


# ---------------------------------------------------------------------- shadows
def balanced_halves(n_shadows: int, n: int, rng: int | np.random.Generator | None) -> np.ndarray:
    """Boolean (n_shadows, n): each column has exactly ``n_shadows // 2`` True entries, at random.

    Entry ``[k, j]`` says candidate ``j`` is IN shadow ``k`` (Carlini et al.'s ``keep``).
    """
    if n_shadows < 2 or n_shadows % 2:
        raise ValueError(f"n_shadows must be an even number >= 2, got {n_shadows!r}")
    gen = check_random_state(rng)
    order = np.argsort(gen.random((n_shadows, n)), axis=0)
    return order < n_shadows // 2


@dataclass(frozen=True)
class Shadows:
    """Shadow-model observations of the candidates (see :func:`train_shadows`).

    Attributes
    ----------
    candidates : list of (user, item) raw-id pairs (or raw user ids, at the user level)
    keep : bool ndarray of shape (K, n)
        ``keep[k, j]``: candidate ``j`` was training data of shadow ``k``.
    scores : float64 ndarray of shape (K, n)
        Calibrated score of candidate ``j`` under shadow ``k``.
    transform : str
    seeds : tuple of int
        The shadows' ``random_state``.
    seconds : float
        Wall time of training and scoring them.
    """

    candidates: list[Any]
    keep: np.ndarray
    scores: np.ndarray
    transform: str
    seeds: tuple[int, ...]
    seconds: float

    @property
    def n_shadows(self) -> int:
        return int(self.keep.shape[0])

    def save(self, path: str | Path) -> Path:
        """Write ``shadows.npz`` (``keep``, ``scores``) and ``shadows.json`` to folder ``path``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        np.savez(path / "shadows.npz", keep=self.keep, scores=self.scores)
        meta = {
            "candidates": [[_plain(x) for x in c] for c in self.candidates]
            if self.candidates and isinstance(self.candidates[0], tuple)
            else [_plain(c) for c in self.candidates],
            "transform": self.transform,
            "seeds": list(self.seeds),
            "seconds": self.seconds,
        }
        (path / "shadows.json").write_text(json.dumps(meta))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Shadows:
        """Read what :meth:`save` wrote (no pickle)."""
        path = Path(path)
        meta = json.loads((path / "shadows.json").read_text())
        with np.load(path / "shadows.npz", allow_pickle=False) as z:
            keep, scores = z["keep"].astype(bool), z["scores"].astype(np.float64)
        cands = [tuple(c) if isinstance(c, list) else c for c in meta["candidates"]]
        if keep.shape != scores.shape or keep.shape[1] != len(cands):
            raise ValueError(f"{path}: shadows.npz does not match the candidates of shadows.json")
        return cls(cands, keep, scores, meta["transform"], tuple(meta["seeds"]), meta["seconds"])


def shadow_data(base: Interactions, pairs: Pairs, values: np.ndarray) -> Interactions:
    """``base`` plus the given pairs (raw ids in ``base``'s vocabularies, absent from it)."""
    pu, pi = as_pairs(pairs)
    u = base.users.index(pu)
    i = base.items.index(pi)
    if len(u) and (base.entry_positions(u, i) >= 0).any():
        raise ValueError("a candidate pair is already in the base data")
    rows = np.r_[base.row_of_entry.astype(np.int64), u]
    cols = np.r_[base.indices.astype(np.int64), i]
    vals = np.r_[base.values, np.asarray(values, dtype=np.float64)]
    csr = sp.csr_array((vals, (rows, cols)), shape=base.shape)
    csr.sort_indices()
    if csr.nnz != base.nnz + len(u):
        raise ValueError("duplicate candidate pairs")
    return Interactions(csr.indptr, csr.indices, csr.data, base.users, base.items)


def train_shadows(
    template: Recommender,
    base: Interactions,
    candidates: Pairs,
    *,
    n_shadows: int = DEFAULT_SHADOWS,
    transform: str = "auto",
    values: np.ndarray | float = 1.0,
    random_state: int | np.random.Generator | None = None,
    log: Callable[[str], None] | None = None,
) -> Shadows:
    """Train ``n_shadows`` shadow models on ``base`` plus balanced random halves of the candidates.

    Parameters
    ----------
    template : Recommender
        The target (fitted or not); shadows are ``clone(template)`` with fresh seeds, so they
        share its hyper-parameters.
    base : Interactions
        Data every shadow trains on; the candidates' users and items must be in its
        vocabularies and the candidate pairs absent from it.
    candidates : pairs of raw ids, length n
        Members and non-members together.
    n_shadows : even int >= 2
    transform : str
        See :func:`calibrated_scores`.
    values : float or float ndarray of shape (n,)
        The interaction value a candidate has when it is training data.
    random_state : int, Generator or None
        Seeds the halves and the shadows' seeds.
    log : callable, optional
        Progress lines.
    """
    gen = check_random_state(random_state)
    candidates = list(zip(*as_pairs(candidates), strict=True))
    n = len(candidates)
    if n == 0:
        raise ValueError("no candidate pairs")
    keep = balanced_halves(n_shadows, n, gen)
    vals = np.broadcast_to(np.asarray(values, dtype=np.float64), (n,))
    seeds = tuple(int(s) for s in gen.integers(0, 2**31 - 1, size=n_shadows))
    t = resolve_transform(template, transform)
    scores = np.empty((n_shadows, n))
    start = time.perf_counter()
    for k in range(n_shadows):
        chosen = [candidates[j] for j in np.flatnonzero(keep[k])]
        data = shadow_data(base, chosen, vals[keep[k]])
        shadow = clone(template).set_params(random_state=seeds[k]).fit(data)
        scores[k] = calibrated_scores(shadow, candidates, t)
        if log:
            log(f"shadow {k + 1}/{n_shadows}: {time.perf_counter() - start:.1f}s")
    return Shadows(candidates, keep, scores, t, seeds, time.perf_counter() - start)


# ---------------------------------------------------------------------- the likelihood ratio
def lira_statistics(
    scores: np.ndarray,
    keep: np.ndarray,
    observed: np.ndarray,
    *,
    variance: str = "global",
) -> dict[str, np.ndarray]:
    """Online and offline LiRA statistics of each candidate (higher: member).

    Parameters
    ----------
    scores : float ndarray of shape (K, n)
        Shadow observations :math:`\\phi`.
    keep : bool ndarray of shape (K, n)
        IN (True) / OUT (False) of each observation; each candidate needs at least one of
        each (two of each for ``variance="per-pair"``).
    observed : float ndarray of shape (n,)
        The target's :math:`\\phi_{obs}`.
    variance : {"global", "per-pair"}
        ``"global"``: one variance per side, the mean over candidates of the per-pair sample
        variances (ddof 1; candidates with one observation on a side add nothing to it, and
        some candidate needs two on each side: with 2 shadows there is no variance to pool).

    Returns
    -------
    dict
        ``"online"``: :math:`\\log \\Lambda`; ``"offline"``: :math:`z` (module docstring);
        float64 arrays of shape (n,). ``"mu_in"``, ``"mu_out"``, ``"sigma_in"``,
        ``"sigma_out"`` (per candidate) are included for inspection.
    """
    S = np.asarray(scores, dtype=np.float64)
    keep = np.asarray(keep, dtype=bool)
    obs = np.asarray(observed, dtype=np.float64).ravel()
    if S.ndim != 2 or keep.shape != S.shape or obs.shape != (S.shape[1],):
        raise ValueError(
            f"scores and keep must be (K, n) and observed (n,); got {S.shape}, {keep.shape}, "
            f"{obs.shape}"
        )
    if variance not in VARIANCES:
        raise ValueError(f"variance must be one of {VARIANCES}, got {variance!r}")
    if not (np.all(np.isfinite(S)) and np.all(np.isfinite(obs))):
        raise ValueError("non-finite scores")
    n_in, n_out = keep.sum(axis=0), (~keep).sum(axis=0)
    need = 2 if variance == "per-pair" else 1
    if n_in.min(initial=need) < need or n_out.min(initial=need) < need:
        raise ValueError(
            f"every candidate needs {need}+ IN and {need}+ OUT shadows ({variance} variance); "
            f"got at least {n_in.min()} IN and {n_out.min()} OUT"
        )
    mu_in, var_in = _moments(S, keep)
    mu_out, var_out = _moments(S, ~keep)
    if variance == "global" and (n_in.max() < 2 or n_out.max() < 2):
        # no candidate has two observations on a side: there is no variance to pool
        raise ValueError(
            "the global variance needs candidates with 2+ IN and 2+ OUT shadows (4+ shadows); "
            f"got at most {n_in.max()} IN and {n_out.max()} OUT"
        )
    if variance == "global":
        var_in = np.full_like(mu_in, _pooled(var_in))
        var_out = np.full_like(mu_out, _pooled(var_out))
    floor = 1e-12 * max(1.0, float(np.max(np.abs(S))) ** 2)
    sd_in = np.sqrt(np.maximum(var_in, floor))
    sd_out = np.sqrt(np.maximum(var_out, floor))
    online = _norm_logpdf(obs, mu_in, sd_in) - _norm_logpdf(obs, mu_out, sd_out)
    return {
        "online": online,
        "offline": (obs - mu_out) / sd_out,
        "mu_in": mu_in,
        "mu_out": mu_out,
        "sigma_in": sd_in,
        "sigma_out": sd_out,
    }


def _moments(S: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and sample variance (ddof 1; NaN with one observation) over ``mask``."""
    cnt = mask.sum(axis=0).astype(np.float64)
    mean = np.where(mask, S, 0.0).sum(axis=0) / cnt
    dev = np.where(mask, S - mean, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        var = np.where(cnt > 1, (dev**2).sum(axis=0) / (cnt - 1), np.nan)
    return mean, var


def _pooled(var: np.ndarray) -> float:
    ok = np.isfinite(var)
    return float(np.mean(var[ok])) if ok.any() else 0.0


def _norm_logpdf(x: np.ndarray, mu: np.ndarray, sd: np.ndarray) -> np.ndarray:
    return -0.5 * ((x - mu) / sd) ** 2 - np.log(sd) - 0.5 * _LOG_2PI


# ---------------------------------------------------------------------- bench entry points
def lira_rows(
    original: Recommender,
    models: Mapping[str, Recommender],
    *,
    members: Pairs,
    non_members: Pairs,
    n_shadows: int = DEFAULT_SHADOWS,
    transform: str = "auto",
    variance: str = "global",
    fprs: Sequence[float] = DEFAULT_FPRS,
    n_bootstrap: int = 200,
    random_state: int | np.random.Generator | None = 0,
    shadows: Shadows | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Interaction-level LiRA on the original and on every model in ``models``.

    Parameters
    ----------
    original : Recommender
        The model trained on the members (its ``seen_`` holds them); shadows clone it.
    models : mapping of label -> Recommender
        E.g. ``{"retrain": ..., "retrain-seed1": ..., "unlearn-als": ...}``; each must know
        every candidate's user and item (pair deletions keep the vocabularies).
    members : pairs of raw ids
        The deleted pairs (all in ``original.seen_``).
    non_members : pairs of raw ids
        Pairs no model trained on (absent from ``original.seen_``), same users.
    n_shadows, transform, variance
        See :func:`train_shadows` and :func:`lira_statistics`.
    fprs, n_bootstrap
        See :func:`~recforget.evaluate.roc.attack_metrics`.
    random_state : int, Generator or None
        Seeds the shadows and the bootstrap.
    shadows : Shadows, optional
        Reuse shadows trained earlier on the same candidates (members first, then non-members);
        ``random_state`` then advances as training them would have, so a run with the shadows
        of an earlier run of the same seed has that run's bootstrap too.

    Returns
    -------
    dict
        ``{"attack": "lira", "n_shadows", "transform", "variance", "shadow_seconds",
        "n_members", "n_non_members", "rows": {label: {"online": metrics, "offline":
        metrics, "score": metrics}}, "curves": {label: {variant: (fpr, tpr)}}}``, where
        ``metrics`` is :func:`~recforget.evaluate.roc.attack_metrics`' dict and ``"score"``
        is the uncalibrated baseline (a threshold on the target's calibrated score alone).
        ``rows`` starts with ``"original"``. ``curves`` holds arrays and ``"shadows"`` the
        :class:`Shadows` used (drop both for JSON).
    """
    gen = check_random_state(random_state)
    mu, mi = as_pairs(members)
    nu, ni = as_pairs(non_members)
    if len(mu) == 0 or len(nu) == 0:
        raise ValueError(f"need members and non-members, got {len(mu)} and {len(nu)}")
    seen = original.seen_
    mpos = seen.entry_positions(seen.users.index(mu), seen.items.index(mi))
    if (mpos < 0).any():
        raise ValueError(f"{int((mpos < 0).sum())} members are not training data of original")
    npos = seen.entry_positions(seen.users.index(nu), seen.items.index(ni))
    if (npos >= 0).any():
        raise ValueError(f"{int((npos >= 0).sum())} non-members are training data of original")
    candidates = list(zip(np.r_[mu, nu].tolist(), np.r_[mi, ni].tolist(), strict=True))
    is_member = np.r_[np.ones(len(mu), bool), np.zeros(len(nu), bool)]
    if shadows is None:
        base = seen.select(~np.isin(np.arange(seen.nnz), mpos))
        member_values = seen.values[mpos]
        values = np.r_[member_values, np.full(len(nu), float(np.median(member_values)))]
        shadows = train_shadows(
            original,
            base,
            candidates,
            n_shadows=n_shadows,
            transform=transform,
            values=values,
            random_state=gen,
            log=log,
        )
    else:
        if shadows.candidates != candidates:
            raise ValueError("the shadows were trained on other candidates")
        # the draws train_shadows makes, so the bootstrap seed is the one of a fresh run
        balanced_halves(shadows.n_shadows, len(candidates), gen)
        gen.integers(0, 2**31 - 1, size=shadows.n_shadows)
    boot_seed = int(gen.integers(0, 2**31 - 1))
    rows: dict[str, Any] = {}
    curves: dict[str, Any] = {}
    for label, model in {"original": original, **models}.items():
        phi = calibrated_scores(model, candidates, shadows.transform)
        stats = lira_statistics(shadows.scores, shadows.keep, phi, variance=variance)
        rows[label], curves[label] = {}, {}
        for variant, s in (
            ("online", stats["online"]),
            ("offline", stats["offline"]),
            ("score", phi),
        ):
            rows[label][variant] = attack_metrics(
                s[is_member],
                s[~is_member],
                fprs=fprs,
                n_bootstrap=n_bootstrap,
                random_state=boot_seed,
            )
            curves[label][variant] = roc_curve(s[is_member], s[~is_member])
    return {
        "attack": "lira",
        "level": "interaction",
        "n_shadows": shadows.n_shadows,
        "transform": shadows.transform,
        "variance": variance,
        "shadow_seconds": shadows.seconds,
        "n_members": int(is_member.sum()),
        "n_non_members": int((~is_member).sum()),
        "rows": rows,
        "curves": curves,
        "shadows": shadows,
    }


def user_lira_rows(
    original: Recommender,
    models: Mapping[str, Recommender],
    *,
    member_users: Iterable[object],
    non_member_users: Iterable[object],
    histories: Interactions,
    n_shadows: int = DEFAULT_SHADOWS,
    k: int = 100,
    vector_factors: int = 16,
    vector_iterations: int = 10,
    statistics: Sequence[str] = ("miars",),
    fold_in_fraction: float = 0.75,
    variance: str = "global",
    fprs: Sequence[float] = DEFAULT_FPRS,
    n_bootstrap: int = 200,
    random_state: int | np.random.Generator | None = 0,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """User-level LiRA (MIARS-style statistic, module docstring) for whole-user deletions.

    Parameters
    ----------
    original : Recommender
        Trained on the member users (and not on the non-members).
    models : mapping of label -> Recommender
    member_users : raw user ids
        The deleted users (in ``original.seen_``).
    non_member_users : raw user ids
        Users no model trained on (absent from ``original.seen_``), e.g. users held out
        before the original was fitted.
    histories : Interactions
        Holds every candidate user's history (e.g. the whole data set before any split).
    k : int
        Length of the recommendation lists.
    vector_factors, vector_iterations : int
        The attacker's ALS factorisation of the base data (its item space).
    statistics : sequence of {"miars", "fold-in"}
        Per-user statistics, all computed on the same shadows (module docstring);
        ``"fold-in"`` needs implicit-feedback :class:`~recforget.models.als.ALS` models.
    fold_in_fraction : float in (0, 1)
        ``"fold-in"``: share of each user's history folded in (seeded, the same for every
        model); the rest is scored.

    Returns
    -------
    dict
        As :func:`lira_rows`, with ``"level": "user"``; the variants of ``"fold-in"`` are
        named ``"fold-in online"``, ``"fold-in offline"`` and ``"fold-in score"``.
    """
    from recforget.models.als import ALS

    gen = check_random_state(random_state)
    members = np.asarray(list(member_users))
    non_members = np.asarray(list(non_member_users))
    if len(members) == 0 or len(non_members) == 0:
        raise ValueError(f"need members and non-members, got {len(members)} and {len(non_members)}")
    seen = original.seen_
    if seen.users.unknown(members.tolist()):
        raise ValueError("some member users are not training users of original")
    if len(seen.users.unknown(non_members.tolist())) != len(non_members):
        raise ValueError("some non-member users are training users of original")
    candidates = np.r_[members, non_members]
    is_member = np.r_[np.ones(len(members), bool), np.zeros(len(non_members), bool)]
    base = seen.drop_users(members.tolist())
    vec = ALS(vector_factors, iterations=vector_iterations, random_state=int(gen.integers(2**31)))
    vec.fit(base)
    has = base.item_counts() > 0
    vocab, V = base.items.take(np.flatnonzero(has)), np.asarray(vec.item_factors_, np.float64)[has]

    for stat in statistics:
        if stat not in USER_STATISTICS:
            raise ValueError(f"statistics must be among {USER_STATISTICS}, got {stat!r}")
    split = _history_split(histories, candidates, fold_in_fraction, gen)

    def phi(model: Recommender) -> dict[str, np.ndarray]:
        out = {}
        if "miars" in statistics:
            out["miars"] = user_features(model, candidates, histories, vocab, V, k)[:, -1]
        if "fold-in" in statistics:
            out["fold-in"] = fold_in_scores(model, *split)
        return out

    keep = balanced_halves(n_shadows, len(candidates), gen)
    seeds = tuple(int(s) for s in gen.integers(0, 2**31 - 1, size=n_shadows))
    frame = base.to_frame()
    hist = histories.to_frame()
    scores = {stat: np.empty((n_shadows, len(candidates))) for stat in statistics}
    start = time.perf_counter()
    for s in range(n_shadows):
        extra = hist[hist["user"].isin(candidates[keep[s]].tolist())]
        data = Interactions.from_frame(pd.concat([frame, extra], ignore_index=True))
        shadow = clone(original).set_params(random_state=seeds[s]).fit(data)
        for stat, x in phi(shadow).items():
            scores[stat][s] = x
        if log:
            log(f"user shadow {s + 1}/{n_shadows}: {time.perf_counter() - start:.1f}s")
    seconds = time.perf_counter() - start
    boot_seed = int(gen.integers(0, 2**31 - 1))
    rows: dict[str, Any] = {}
    curves: dict[str, Any] = {}
    for label, model in {"original": original, **models}.items():
        rows[label], curves[label] = {}, {}
        for stat, obs in phi(model).items():
            st = lira_statistics(scores[stat], keep, obs, variance=variance)
            prefix = "" if stat == "miars" else f"{stat} "
            for variant, x in (
                ("online", st["online"]),
                ("offline", st["offline"]),
                ("score", obs),
            ):
                variant = prefix + variant
                rows[label][variant] = attack_metrics(
                    x[is_member],
                    x[~is_member],
                    fprs=fprs,
                    n_bootstrap=n_bootstrap,
                    random_state=boot_seed,
                )
                curves[label][variant] = roc_curve(x[is_member], x[~is_member])
    names = {"miars": f"miars-cosine@{k}", "fold-in": f"fold-in@{fold_in_fraction:g}"}
    return {
        "attack": "lira",
        "level": "user",
        "n_shadows": n_shadows,
        "transform": ", ".join(names[stat] for stat in statistics),
        "variance": variance,
        "shadow_seconds": seconds,
        "n_members": int(is_member.sum()),
        "n_non_members": int((~is_member).sum()),
        "rows": rows,
        "curves": curves,
    }


def _history_split(
    histories: Interactions,
    users: np.ndarray,
    fraction: float,
    gen: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Seeded split of each user's history: ``(fold_rows, fold_items, held_rows, held_items)``.

    Rows are positions in ``users``; items are raw ids. Every user with two or more pairs
    folds in ``ceil(fraction * n)`` of them (at most ``n - 1``); a single pair is scored only.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fold_in_fraction must be in (0, 1), got {fraction}")
    rows = histories.users.index(users)
    fr, fi, hr, hi = [], [], [], []
    for pos, u in enumerate(rows):
        items = histories.items.ids[
            histories.indices[histories.indptr[u] : histories.indptr[u + 1]]
        ]
        perm = gen.permutation(len(items))
        n_fold = min(int(np.ceil(fraction * len(items))), len(items) - 1)
        fr.append(np.full(n_fold, pos))
        fi.append(items[perm[:n_fold]])
        hr.append(np.full(len(items) - n_fold, pos))
        hi.append(items[perm[n_fold:]])
    cat = np.concatenate
    return cat(fr).astype(np.int64), cat(fi), cat(hr).astype(np.int64), cat(hi)


def fold_in_scores(
    model: Recommender,
    fold_rows: np.ndarray,
    fold_items: np.ndarray,
    held_rows: np.ndarray,
    held_items: np.ndarray,
) -> np.ndarray:
    """Fold users into an implicit ALS model; mean standardised score of their held-back items.

    Each user (row ``r`` of the result) gets a fresh user vector: the exact minimiser of the
    model's own objective on the ``fold_items`` with the item factors fixed (the same
    per-row kernel as fitting, :meth:`ALSObjective.solve`), whatever the model knows about
    the user. Their ``held_items`` are then scored, standardised within the user's row over
    all items, and averaged (items the model does not know are skipped; users without a
    scored item get 0). A model whose item factors were trained on the held-back pairs
    scores them higher: the trace that a deleted user leaves on the item side.

    Returns
    -------
    float64 ndarray of shape (n_users,), ``n_users = max(rows) + 1``
    """
    from recforget.models._als_objective import Factors
    from recforget.models.als import ALS

    if not isinstance(model, ALS) or model.feedback != "implicit":
        raise TypeError("the fold-in statistic needs an implicit-feedback ALS model")
    model._check_fitted()
    n = int(max(fold_rows.max(initial=-1), held_rows.max(initial=-1))) + 1
    fi = model.items_.index(fold_items, missing="ignore")
    ok = fi >= 0
    csr = sp.csr_array(
        (np.ones(int(ok.sum())), (fold_rows[ok], fi[ok])), shape=(n, len(model.items_))
    )
    csr.sum_duplicates()
    csr.sort_indices()
    data = Interactions(
        csr.indptr, csr.indices, csr.data, Vocabulary(np.arange(n), "user"), model.items_
    )
    Y = np.ascontiguousarray(model.item_factors_)
    F = Factors(np.zeros((n, Y.shape[1]), dtype=Y.dtype), Y.copy())
    model.objective(data).solve("users", F)
    S = F.X.astype(np.float64) @ Y.astype(np.float64).T
    sd = S.std(axis=1)
    sd[sd == 0] = 1.0
    Z = (S - S.mean(axis=1, keepdims=True)) / sd[:, None]
    hi = model.items_.index(held_items, missing="ignore")
    good = hi >= 0
    total = np.bincount(held_rows[good], weights=Z[held_rows[good], hi[good]], minlength=n)
    count = np.bincount(held_rows[good], minlength=n)
    return np.where(count > 0, total / np.maximum(count, 1), 0.0)


__all__ = [
    "DEFAULT_SHADOWS",
    "TRANSFORMS",
    "USER_STATISTICS",
    "VARIANCES",
    "Shadows",
    "balanced_halves",
    "calibrated_scores",
    "fold_in_scores",
    "lira_rows",
    "lira_statistics",
    "matched_non_members",
    "resolve_transform",
    "shadow_data",
    "train_shadows",
    "user_lira_rows",
]
