"""Attack metrics at the low false-positive rates that matter: ROC, TPR at FPR, bootstrap CIs.

A membership-inference attack gives every candidate a score (higher: "member"). Average-case
AUC hides the leaks that matter: an attack that is confidently right about a few members and
guesses on the rest has an AUC near 0.5 and a high true-positive rate at a 0.1% false-positive
rate (Carlini et al., "Membership Inference Attacks From First Principles", IEEE S&P 2022).
So :func:`attack_metrics` reports the ROC AUC and the TPR at fixed FPRs (0.1% and 1% by
default), each with a seeded bootstrap 95% interval, and :func:`plot_roc` draws the curves on
log-log axes, where a chance attack is the diagonal.

Conventions
-----------
* The ROC has one point per distinct score threshold ("member" if score >= threshold), plus
  (0, 0); tied scores move together, so ties are never split in the attacker's favour.
* ``TPR@FPR=f`` is the largest TPR among ROC points with FPR <= f (no interpolation): an
  attacker who must keep its false-positive rate at or below ``f`` can do no better with
  these scores and a threshold. At chance it is at most about ``f``.
* The AUC is the area under that ROC by the trapezoid rule, which equals the Mann-Whitney
  :math:`P(m > n) + \\tfrac12 P(m = n)`
  (:func:`~recforget.evaluate.attacks.rank_auc`).
* Bootstrap: members and non-members are resampled with replacement separately (their counts
  are fixed by the experiment), ``n_bootstrap`` times from ``random_state``; the interval is
  the 2.5th and 97.5th percentiles (percentile bootstrap).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recforget._rng import check_random_state

DEFAULT_FPRS = (0.001, 0.01)


def roc_curve(members: np.ndarray, non_members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC of an attack: ``"member"`` when the score is at least a threshold.

    Parameters
    ----------
    members : float ndarray of shape (n_m,)
        Attack scores of true members.
    non_members : float ndarray of shape (n_n,)

    Returns
    -------
    fpr, tpr : float64 ndarrays of shape (n_thresholds + 1,)
        Increasing, from (0, 0) to (1, 1), one point per distinct score.
    """
    m = _scores(members, "members")
    n = _scores(non_members, "non_members")
    if len(m) == 0 or len(n) == 0:
        raise ValueError(f"need members and non-members, got {len(m)} and {len(n)}")
    scores = np.concatenate([m, n])
    is_m = np.concatenate([np.ones(len(m)), np.zeros(len(n))])
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], is_m[order]
    last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]  # last index of each tie block
    tp = np.cumsum(y)[last]
    fp = (last + 1) - tp
    return np.r_[0.0, fp / len(n)], np.r_[0.0, tp / len(m)]


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, target: float) -> float:
    """Largest TPR among ROC points with FPR <= ``target`` (see the module docstring)."""
    if not 0 <= target <= 1:
        raise ValueError(f"the target FPR must be in [0, 1], got {target}")
    ok = np.asarray(fpr) <= target + 1e-12
    return float(np.max(np.asarray(tpr)[ok]))


def roc_auc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Area under the ROC (trapezoid rule)."""
    fpr, tpr = np.asarray(fpr, np.float64), np.asarray(tpr, np.float64)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def fpr_key(f: float) -> str:
    """The metric name of a TPR at FPR ``f``: ``0.001 -> "tpr@0.1%fpr"``."""
    return f"tpr@{100 * f:g}%fpr"


def attack_metrics(
    members: np.ndarray,
    non_members: np.ndarray,
    *,
    fprs: Sequence[float] = DEFAULT_FPRS,
    n_bootstrap: int = 200,
    random_state: int | np.random.Generator | None = 0,
) -> dict[str, Any]:
    """ROC AUC and TPR at each FPR in ``fprs``, with bootstrap 95% intervals.

    Parameters
    ----------
    members, non_members : float ndarrays
        Attack scores (higher: member). Non-finite scores are an error.
    fprs : sequence of float in [0, 1]
    n_bootstrap : int >= 0
        Resamples for the intervals (0: no intervals).
    random_state : int, Generator or None
        Seed of the resampling.

    Returns
    -------
    dict
        ``"auc"`` and one ``fpr_key(f)`` per ``f`` (e.g. ``"tpr@1%fpr"``), each a float, with
        ``"<name>_ci"`` = ``[low, high]`` (``None`` without bootstrap); ``"n_members"``,
        ``"n_non_members"``, ``"n_bootstrap"``.
    """
    m = _scores(members, "members")
    n = _scores(non_members, "non_members")
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be >= 0, got {n_bootstrap}")

    def point(mm: np.ndarray, nn: np.ndarray) -> list[float]:
        fpr, tpr = roc_curve(mm, nn)
        return [roc_auc(fpr, tpr), *(tpr_at_fpr(fpr, tpr, f) for f in fprs)]

    names = ["auc", *(fpr_key(f) for f in fprs)]
    values = point(m, n)
    out: dict[str, Any] = {}
    cis: list[list[float] | None] = [None] * len(names)
    if n_bootstrap:
        gen = check_random_state(random_state)
        boot = np.empty((n_bootstrap, len(names)))
        for b in range(n_bootstrap):
            boot[b] = point(m[gen.integers(0, len(m), len(m))], n[gen.integers(0, len(n), len(n))])
        lo, hi = np.percentile(boot, [2.5, 97.5], axis=0)
        cis = [[float(a), float(c)] for a, c in zip(lo, hi, strict=True)]
    for name, value, ci in zip(names, values, cis, strict=True):
        out[name] = value
        out[f"{name}_ci"] = ci
    out.update(n_members=len(m), n_non_members=len(n), n_bootstrap=int(n_bootstrap))
    return out


def intervals_overlap(a: Sequence[float] | None, b: Sequence[float] | None) -> bool | None:
    """Whether two closed intervals ``[low, high]`` overlap (``None`` if either is missing)."""
    if a is None or b is None:
        return None
    return bool(a[0] <= b[1] and b[0] <= a[1])


def plot_roc(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    path: str | Path,
    *,
    title: str = "",
    min_rate: float = 1e-4,
) -> Path:
    """Write the ROC curves of several models to one log-log PNG (matplotlib, Agg backend).

    Parameters
    ----------
    curves : mapping of label -> (fpr, tpr)
        E.g. ``{"original": ..., "retrain": ..., "unlearn-als": ...}``, drawn in that order.
    path : str or Path
    min_rate : float
        Lower limit of both axes (rates of 0 are drawn at the limit).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    try:
        for k, (label, (fpr, tpr)) in enumerate(curves.items()):
            fpr = np.maximum(np.asarray(fpr, np.float64), min_rate)
            tpr = np.maximum(np.asarray(tpr, np.float64), min_rate)
            # ten colours, then the next ten dashed: no two curves look alike
            style = {"color": f"C{k % 10}", "linestyle": ("-", "--", "-.")[(k // 10) % 3]}
            ax.step(fpr, tpr, where="post", label=label, linewidth=1.3, **style)
        ax.plot([min_rate, 1], [min_rate, 1], color="grey", linestyle=":", label="chance")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(min_rate, 1)
        ax.set_ylim(min_rate, 1)
        ax.set_xlabel("false-positive rate")
        ax.set_ylabel("true-positive rate")
        if title:
            ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
        ax.grid(True, which="major", alpha=0.3)
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=130)
    finally:
        plt.close(fig)
    return path


def _scores(x: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).ravel()
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name}: {int((~np.isfinite(a)).sum())} non-finite attack scores")
    return a


__all__ = [
    "DEFAULT_FPRS",
    "attack_metrics",
    "fpr_key",
    "intervals_overlap",
    "plot_roc",
    "roc_auc",
    "roc_curve",
    "tpr_at_fpr",
]
