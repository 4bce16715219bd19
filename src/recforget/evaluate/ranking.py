"""Accuracy metrics as pure, vectorised functions on arrays.

Ranking metrics take each user's top-K list (item indices, best first) and the user's held-out
test items as CSR arrays; :func:`auc_per_user` takes full score rows. Every function returns
one value per user, so callers choose how to average. Relevance is binary: an item is relevant
to a user exactly when it is one of the user's test items.

Definitions, for one user with test set :math:`T` (:math:`|T| \\ge 1`), top list
:math:`L = (l_1, l_2, \\ldots)` and hits :math:`h_j = [l_j \\in T]`; positions beyond the end
of the list count as misses:

* ``recall@k`` :math:`= \\sum_{j \\le k} h_j / |T|` (normalised by all test items, so it
  is below 1 whenever :math:`|T| > k`);
* ``recall_capped@k`` :math:`= \\sum_{j \\le k} h_j / \\min(|T|, k)` (the normalisation
  many papers call recall; it reaches 1 for a perfect list);
* ``precision@k`` :math:`= \\sum_{j \\le k} h_j / k` (always ``k``, even if the list is
  shorter);
* ``hr@k`` (hit rate) :math:`= [\\sum_{j \\le k} h_j > 0]`;
* ``ndcg@k`` :math:`= \\mathrm{DCG}/\\mathrm{IDCG}` with
  :math:`\\mathrm{DCG} = \\sum_{j \\le k} h_j / \\log_2(j + 1)` and
  :math:`\\mathrm{IDCG} = \\sum_{j \\le \\min(|T|, k)} 1 / \\log_2(j + 1)`;
* ``map@k`` :math:`= \\frac{1}{\\min(|T|, k)} \\sum_{j \\le k} h_j\\,P@j` with
  :math:`P@j = \\sum_{i \\le j} h_i / j` (average precision truncated at ``k``);
* ``mrr`` :math:`= 1 / \\min\\{j : h_j = 1\\}` over the whole list given, 0 without a hit.

Users with no test items get NaN for every metric; drop them with ``~np.isnan``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PER_K_METRICS = ("recall", "recall_capped", "precision", "ndcg", "hr", "map")
"""Metrics reported at each cut-off ``k`` (keys ``"<name>@<k>"``)."""


def rank_metrics(
    topk: np.ndarray,
    test_indptr: np.ndarray,
    test_indices: np.ndarray,
    ks: Sequence[int] = (10,),
    *,
    n_items: int,
) -> dict[str, np.ndarray]:
    """Per-user top-k ranking metrics (see the module docstring for the definitions).

    Parameters
    ----------
    topk : int ndarray of shape (n_users, K)
        Recommended item indices, best first, distinct within a row. Negative entries are
        padding (no item recommended at that position) and never hit.
    test_indptr : int ndarray of shape (n_users + 1,)
    test_indices : int ndarray of shape (nnz,)
        Each user's relevant (held-out) items, CSR rows aligned with ``topk``'s rows.
        Repeated items in a row count once.
    ks : sequence of int
        Cut-offs, each >= 1. A ``k`` above ``K`` scores the list as is (missing positions miss).
    n_items : int
        Number of items; every index must be below it.

    Returns
    -------
    dict of str to float64 ndarray of shape (n_users,)
        ``"recall@k"``, ``"recall_capped@k"``, ``"precision@k"``, ``"ndcg@k"``, ``"hr@k"``,
        ``"map@k"`` for each ``k`` in ``ks``, and ``"mrr"``; NaN for users without test items.

    Examples
    --------
    >>> import numpy as np
    >>> m = rank_metrics(np.array([[3, 1, 2]]), np.array([0, 2]), np.array([1, 2]), ks=(3,),
    ...                  n_items=4)
    >>> m["recall@3"], m["precision@3"], m["mrr"]
    (array([1.]), array([0.66666667]), array([0.5]))
    """
    topk = np.asarray(topk)
    if topk.ndim != 2:
        raise ValueError(f"topk must be 2-D (n_users, K), got shape {topk.shape}")
    n_users, K = topk.shape
    indptr = np.asarray(test_indptr, dtype=np.int64)
    indices = np.asarray(test_indices, dtype=np.int64)
    ks = _check_ks(ks)
    _check_csr(indptr, indices, n_users, n_items)
    if topk.size and topk.max() >= n_items:
        raise ValueError(f"topk holds item index {topk.max()} >= n_items={n_items}")
    topk = topk.astype(np.int64, copy=False)
    if K > 1:
        srt = np.sort(topk, axis=1)
        if np.any((srt[:, 1:] == srt[:, :-1]) & (srt[:, 1:] >= 0)):
            raise ValueError("topk rows must not repeat an item")

    # membership of each listed item in its user's test set, via sorted (user, item) keys
    rows = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(indptr))
    keys = rows * n_items + indices
    if len(keys) > 1 and not np.all(keys[1:] > keys[:-1]):  # unsorted rows or repeats
        keys = np.unique(keys)
    n_rel = np.bincount(keys // n_items, minlength=n_users) if len(keys) else np.zeros(n_users)
    n_rel = n_rel.astype(np.float64)
    hit = np.zeros((n_users, K), dtype=bool)
    if len(keys) and K:
        query = np.arange(n_users, dtype=np.int64)[:, None] * n_items + topk
        pos = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
        hit = (topk >= 0) & (keys[pos] == query)

    positions = np.arange(1, K + 1, dtype=np.float64)
    discount = 1.0 / np.log2(positions + 1.0)
    n_hits = _cum0(hit.astype(np.float64))  # n_hits[:, j] = hits among the first j items
    dcg = _cum0(hit * discount)
    ap_sum = _cum0(hit * (n_hits[:, 1:] / positions))
    kmax = max(ks)
    ideal = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(2, kmax + 2.0)))])

    out: dict[str, np.ndarray] = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for k in ks:
            kk = min(k, K)
            nh = n_hits[:, kk]
            capped = np.minimum(n_rel, k)
            out[f"recall@{k}"] = nh / n_rel
            out[f"recall_capped@{k}"] = nh / capped
            out[f"precision@{k}"] = nh / k
            out[f"ndcg@{k}"] = dcg[:, kk] / ideal[capped.astype(np.int64)]
            out[f"hr@{k}"] = (nh > 0).astype(np.float64)
            out[f"map@{k}"] = ap_sum[:, kk] / capped
    first = np.argmax(hit, axis=1) if K else np.zeros(n_users, dtype=np.int64)
    out["mrr"] = np.where(hit.any(axis=1), 1.0 / (first + 1.0), 0.0)
    empty = n_rel == 0
    for v in out.values():
        v[empty] = np.nan
    return out


def auc_per_user(
    scores: np.ndarray, positives: np.ndarray, exclude: np.ndarray | None = None
) -> np.ndarray:
    """Per-user ROC AUC of the positive items against all other items.

    For a user with positives :math:`P` and negatives :math:`N` (items neither positive nor
    excluded),

    .. math:: \\mathrm{AUC} = \\frac{1}{|P|\\,|N|} \\sum_{p \\in P} \\sum_{n \\in N}
              \\left([s_p > s_n] + \\tfrac12 [s_p = s_n]\\right),

    the Mann-Whitney statistic: ties count one half. An excluded item is neither positive nor
    negative, even if marked positive. Computed from per-row sorted negative scores
    (``np.sort``) and a binary search of each positive score (a loop over rows of one
    ``searchsorted`` call each; no all-pairs comparison and no full argsort).

    Parameters
    ----------
    scores : float ndarray of shape (n_users, n_items)
        Must not be NaN at positive or negative items (excluded entries may hold anything).
    positives : bool ndarray of shape (n_users, n_items)
        The relevant (test) items of each user.
    exclude : bool ndarray of shape (n_users, n_items), optional
        Items to leave out of the comparison (the training items).

    Returns
    -------
    float64 ndarray of shape (n_users,)
        NaN for users without a positive or without a negative.
    """
    scores = np.asarray(scores, dtype=np.float64)
    positives = np.asarray(positives, dtype=bool)
    if scores.ndim != 2 or positives.shape != scores.shape:
        raise ValueError(
            f"scores and positives must be 2-D of one shape, got {scores.shape}, {positives.shape}"
        )
    if exclude is None:
        exclude = np.zeros_like(positives)
    else:
        exclude = np.asarray(exclude, dtype=bool)
        if exclude.shape != scores.shape:
            raise ValueError(f"exclude has shape {exclude.shape}, scores {scores.shape}")
    n_users = scores.shape[0]
    pos = positives & ~exclude
    neg = ~positives & ~exclude
    if np.isnan(scores).any() and np.isnan(scores[pos | neg]).any():
        raise ValueError("scores are NaN at compared (positive or negative) items")

    # each row's negative scores, sorted; +inf fills the other slots at the end of the row
    n_neg = neg.sum(axis=1)
    srt = np.sort(np.where(neg, scores, np.inf), axis=1)
    r, c = np.nonzero(pos)  # row-major: each row's positives are contiguous
    values = scores[r, c]
    bounds = np.searchsorted(r, np.arange(n_users + 1))
    below = np.zeros(len(r), dtype=np.int64)  # negatives scoring lower than each positive
    upto = np.zeros(len(r), dtype=np.int64)  # ... lower or equal
    for u in np.flatnonzero((bounds[1:] > bounds[:-1]) & (n_neg > 0)):
        # one C-level search per row: measured ~4x faster than a batched search over
        # (row, score) pairs, and the same O(n log n) sort dominates either way
        lo, hi = bounds[u], bounds[u + 1]
        below[lo:hi] = np.searchsorted(srt[u], values[lo:hi], side="left")
        upto[lo:hi] = np.searchsorted(srt[u], values[lo:hi], side="right")
    # +inf placeholders sit after the n_neg negatives; a +inf positive must not count them
    upto = np.minimum(upto, n_neg[r])
    wins = below + 0.5 * (upto - below)  # ties count one half
    total = np.bincount(r, weights=wins, minlength=n_users)
    pairs = pos.sum(axis=1) * n_neg.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(pairs > 0, total / pairs, np.nan)


def rmse(predictions: np.ndarray, truths: np.ndarray) -> float:
    """Root mean squared error :math:`\\sqrt{\\frac1n \\sum_i (\\hat r_i - r_i)^2}`.

    Parameters
    ----------
    predictions, truths : float ndarray of shape (n,), n >= 1
    """
    p, t = _pair(predictions, truths)
    return float(np.sqrt(np.mean((p - t) ** 2)))


def mae(predictions: np.ndarray, truths: np.ndarray) -> float:
    """Mean absolute error :math:`\\frac1n \\sum_i |\\hat r_i - r_i|`.

    Parameters
    ----------
    predictions, truths : float ndarray of shape (n,), n >= 1
    """
    p, t = _pair(predictions, truths)
    return float(np.mean(np.abs(p - t)))


def _pair(predictions: np.ndarray, truths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(predictions, dtype=np.float64).ravel()
    t = np.asarray(truths, dtype=np.float64).ravel()
    if p.shape != t.shape:
        raise ValueError(f"{len(p)} predictions for {len(t)} truths")
    if len(p) == 0:
        raise ValueError("no ratings to compare")
    return p, t


def _cum0(a: np.ndarray) -> np.ndarray:
    """Cumulative sum along axis 1 with a leading zero column: out[:, j] = a[:, :j].sum(1)."""
    out = np.zeros((a.shape[0], a.shape[1] + 1), dtype=np.float64)
    np.cumsum(a, axis=1, out=out[:, 1:])
    return out


def _check_ks(ks: Sequence[int]) -> list[int]:
    ks = [ks] if isinstance(ks, (int, np.integer)) else list(ks)
    if not ks:
        raise ValueError("ks must name at least one cut-off")
    for k in ks:
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
            raise ValueError(f"every k must be an integer >= 1, got {k!r}")
    return [int(k) for k in dict.fromkeys(ks)]


def _check_csr(indptr: np.ndarray, indices: np.ndarray, n_rows: int, n_items: int) -> None:
    if indptr.shape != (n_rows + 1,) or indptr[0] != 0 or indptr[-1] != len(indices):
        raise ValueError(f"test_indptr must have shape ({n_rows + 1},), start at 0, end at nnz")
    if np.any(np.diff(indptr) < 0):
        raise ValueError("test_indptr must be non-decreasing")
    if len(indices) and (indices.min() < 0 or indices.max() >= n_items):
        raise ValueError(f"test item indices must lie in [0, {n_items})")


__all__ = ["PER_K_METRICS", "auc_per_user", "mae", "rank_metrics", "rmse"]
