"""Attack metrics: ROC, TPR at low FPR and bootstrap intervals against brute-force references."""

from __future__ import annotations

import numpy as np
import pytest

from recforget.evaluate.attacks import rank_auc
from recforget.evaluate.roc import (
    attack_metrics,
    fpr_key,
    intervals_overlap,
    plot_roc,
    roc_auc,
    roc_curve,
    tpr_at_fpr,
)


def _ref_tpr_at_fpr(members, non_members, target) -> float:
    """Try every threshold ("member" if score >= t): best TPR whose FPR is at most target."""
    best = 0.0
    for t in [*sorted(set(members) | set(non_members)), np.inf]:
        fpr = sum(n >= t for n in non_members) / len(non_members)
        tpr = sum(m >= t for m in members) / len(members)
        if fpr <= target:
            best = max(best, tpr)
    return best


@pytest.mark.parametrize("target", [0.0, 0.01, 0.05, 0.2, 0.5, 1.0])
def test_tpr_at_fpr_matches_threshold_search(rng, target):
    m = rng.integers(0, 12, 60).astype(float)  # many ties, within and across the samples
    n = rng.integers(0, 10, 80).astype(float)
    fpr, tpr = roc_curve(m, n)
    assert tpr_at_fpr(fpr, tpr, target) == pytest.approx(_ref_tpr_at_fpr(m, n, target))


def test_roc_curve_shape_and_auc(rng):
    m = rng.normal(1.0, 1.0, 50).round(1)
    n = rng.normal(0.0, 1.0, 70).round(1)
    fpr, tpr = roc_curve(m, n)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert len(fpr) == len(np.unique(np.r_[m, n])) + 1
    assert roc_auc(fpr, tpr) == pytest.approx(rank_auc(m, n))


def test_ties_are_not_split_in_the_attackers_favour():
    # every score equal: the only thresholds accept nobody or everybody
    fpr, tpr = roc_curve(np.zeros(10), np.zeros(10))
    assert tpr_at_fpr(fpr, tpr, 0.5) == 0.0
    assert roc_auc(fpr, tpr) == pytest.approx(0.5)


def test_attack_metrics_intervals_are_seeded_and_cover_the_point(rng):
    m = rng.normal(0.5, 1.0, 300)
    n = rng.normal(0.0, 1.0, 300)
    a = attack_metrics(m, n, n_bootstrap=100, random_state=3)
    b = attack_metrics(m, n, n_bootstrap=100, random_state=3)
    c = attack_metrics(m, n, n_bootstrap=100, random_state=4)
    assert a == b and a["auc_ci"] != c["auc_ci"]
    for key in ("auc", fpr_key(0.001), fpr_key(0.01)):
        lo, hi = a[f"{key}_ci"]
        assert lo <= hi
    lo, hi = a["auc_ci"]
    assert lo <= a["auc"] <= hi and 0.55 < a["auc"] < 0.75
    assert fpr_key(0.001) == "tpr@0.1%fpr" and fpr_key(0.01) == "tpr@1%fpr"
    plain = attack_metrics(m, n, n_bootstrap=0)
    assert plain["auc_ci"] is None and plain["auc"] == a["auc"]


def test_attack_metrics_rejects_bad_input():
    with pytest.raises(ValueError, match="non-finite"):
        attack_metrics([1.0, np.nan], [0.0])
    with pytest.raises(ValueError, match="members and non-members"):
        attack_metrics([], [0.0])
    with pytest.raises(ValueError, match="n_bootstrap"):
        attack_metrics([1.0], [0.0], n_bootstrap=-1)


def test_intervals_overlap():
    assert intervals_overlap([0.1, 0.2], [0.2, 0.3]) is True
    assert intervals_overlap([0.1, 0.2], [0.25, 0.3]) is False
    assert intervals_overlap(None, [0.0, 1.0]) is None


def test_plot_roc_writes_a_png(tmp_path, rng):
    pytest.importorskip("matplotlib")
    curves = {
        "original": roc_curve(rng.normal(2, 1, 100), rng.normal(0, 1, 100)),
        "retrain": roc_curve(rng.normal(0, 1, 100), rng.normal(0, 1, 100)),
    }
    path = plot_roc(curves, tmp_path / "sub" / "roc.png", title="test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
