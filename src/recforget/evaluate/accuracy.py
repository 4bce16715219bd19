"""Held-out accuracy of a fitted recommender: full ranking with training items excluded.

:func:`evaluate_ranking` scores every item for every test user (in batches), removes the
user's training items from the ranking, and averages the per-user metrics of
:mod:`recforget.evaluate.ranking`. :func:`evaluate_ratings` gives RMSE/MAE of explicit ratings.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from recforget.data.interactions import Interactions
from recforget.data.vocab import Vocabulary
from recforget.evaluate.ranking import (
    PER_K_METRICS,
    _check_ks,
    auc_per_user,
    mae,
    rank_metrics,
    rmse,
)
from recforget.kernels.topk import topk_rows
from recforget.models.base import Recommender

RANKING_METRICS = (*PER_K_METRICS, "mrr", "auc")
DEFAULT_METRICS = ("recall", "precision", "ndcg", "hr", "map", "mrr", "auc")


def evaluate_ranking(
    model: Recommender,
    train: Interactions,
    test: Interactions,
    ks: Sequence[int] = (10,),
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    users: Iterable[object] | None = None,
    batch_size: int = 512,
) -> dict[str, float]:
    """Mean per-user ranking accuracy on ``test``, ranking all items but the training ones.

    For each evaluated user the model scores every item; the user's ``train`` items get
    ``-inf`` and never enter the top-``max(ks)`` list (a list may run short when fewer
    candidates remain). Test items that are also training items of the same user are dropped
    from the test set, since they cannot be recommended. Users without (remaining) test items
    are not evaluated. The metrics are defined in :mod:`recforget.evaluate.ranking`; ``"mrr"``
    is the reciprocal rank of the first hit within the top-``max(ks)`` list, and ``"auc"``
    compares each test item with every item that is neither a training nor a test item of the
    user (ties count 1/2).

    Parameters
    ----------
    model : Recommender
        Fitted. Its user/item vocabularies may differ from the data's: rows and columns are
        then matched by raw id, and an evaluated user or an item the model does not know is an
        error.
    train, test : Interactions of shape (n_users, n_items)
        Same user and item vocabularies (same indices).
    ks : sequence of int
        Cut-offs, each >= 1.
    metrics : sequence of str
        Any of ``"recall"``, ``"recall_capped"``, ``"precision"``, ``"ndcg"``, ``"hr"``,
        ``"map"`` (reported per ``k``), ``"mrr"`` and ``"auc"``.
    users : iterable of raw user ids, optional
        Evaluate only these users (default: every user with test items).
    batch_size : int
        Users scored at once; memory is about ``batch_size * n_items`` floats.

    Returns
    -------
    dict of str to float
        ``"<metric>@<k>"`` for the per-k metrics, ``"mrr"``, ``"auc"`` (mean over users with
        at least one negative item), and ``"n_users"`` (users evaluated). Means are NaN when
        no user is evaluated.
    """
    metrics = _check_metrics(metrics)
    ks = _check_ks(ks)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    _check_same_vocab(train, test)
    model._check_fitted()
    n_items = train.n_items
    test_indptr, test_indices = _without_train(test, train)

    n_test = np.diff(test_indptr)
    evaluated = np.flatnonzero(n_test > 0)
    if users is not None:
        chosen = np.unique(train.users.index(list(users)))
        evaluated = np.intersect1d(evaluated, chosen)
    model_rows, item_cols = _model_maps(model, train, evaluated)

    K = min(max(ks), n_items)
    want_auc = "auc" in metrics
    sums: dict[str, float] = {}
    auc_sum, auc_n = 0.0, 0
    for start in range(0, len(evaluated), batch_size):
        rows = evaluated[start : start + batch_size]
        b = len(rows)
        scores = np.array(model._score_rows(model_rows[start : start + batch_size]), np.float64)
        if item_cols is not None:
            scores = scores[:, item_cols]
        if scores.shape != (b, n_items):
            raise ValueError(f"model scored shape {scores.shape}, expected {(b, n_items)}")
        counts, seen = _gather(train.indptr, train.indices, rows)
        seen_rows = np.repeat(np.arange(b), counts)
        scores[seen_rows, seen] = -np.inf
        top, val = topk_rows(scores, K)
        top[np.isneginf(val)] = -1  # a training item (or a hopeless one) is no recommendation

        t_counts, t_items = _gather(test_indptr, test_indices, rows)
        t_indptr = np.concatenate([[0], np.cumsum(t_counts)])
        per_user = rank_metrics(top, t_indptr, t_items, ks, n_items=n_items)
        for key, v in per_user.items():
            sums[key] = sums.get(key, 0.0) + float(v.sum())
        if want_auc:
            exclude = np.zeros((b, n_items), dtype=bool)
            exclude[seen_rows, seen] = True
            positive = np.zeros((b, n_items), dtype=bool)
            positive[np.repeat(np.arange(b), t_counts), t_items] = True
            auc = auc_per_user(scores, positive, exclude)
            ok = ~np.isnan(auc)
            auc_sum += float(auc[ok].sum())
            auc_n += int(ok.sum())

    n = len(evaluated)
    out: dict[str, float] = {}
    for m in metrics:
        if m in PER_K_METRICS:
            for k in ks:
                out[f"{m}@{k}"] = sums.get(f"{m}@{k}", np.nan) / n if n else np.nan
        elif m == "mrr":
            out["mrr"] = sums["mrr"] / n if n else np.nan
        else:
            out["auc"] = auc_sum / auc_n if auc_n else np.nan
    out["n_users"] = n
    return out


def evaluate_ratings(model: Recommender, test: Interactions) -> dict[str, float]:
    """RMSE and MAE of the model's scores against the ratings stored in ``test``.

    Parameters
    ----------
    model : Recommender
        Fitted; every (user, item) of ``test`` must be in its vocabularies (matched by raw id).
    test : Interactions
        Explicit ratings as values.

    Returns
    -------
    dict
        ``{"rmse": float, "mae": float}``; see :func:`~recforget.evaluate.ranking.rmse`.
    """
    model._check_fitted()
    if test.nnz == 0:
        raise ValueError("the test set has no ratings")
    u = test.row_of_entry.astype(np.int64)
    i = test.indices.astype(np.int64)
    if model.users_ != test.users:
        u = _lookup(model.users_, test.users.ids, "user", "the test set")[u]
    if model.items_ != test.items:
        i = _lookup(model.items_, test.items.ids, "item", "the test set")[i]
    pred = model._score_pairs(u, i)
    return {"rmse": rmse(pred, test.values), "mae": mae(pred, test.values)}


# ---------------------------------------------------------------------- helpers
def _check_metrics(metrics: Sequence[str]) -> list[str]:
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    unknown = [m for m in metrics if m not in RANKING_METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {list(RANKING_METRICS)}")
    return list(dict.fromkeys(metrics))


def _check_same_vocab(train: Interactions, test: Interactions) -> None:
    if train.users != test.users:
        raise ValueError(
            f"train and test must share the user vocabulary (same ids, same order); got "
            f"{train.n_users} and {test.n_users} users"
        )
    if train.items != test.items:
        raise ValueError(
            f"train and test must share the item vocabulary (same ids, same order); got "
            f"{train.n_items} and {test.n_items} items"
        )


def _model_maps(
    model: Recommender, data: Interactions, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None]:
    """Model row of each evaluated user, and model column of each data item (None: identity)."""
    model_rows = rows
    if model.users_ != data.users:
        model_rows = model.users_.index(data.users.ids[rows], missing="ignore")
        if (model_rows < 0).any():
            lost = data.users.ids[rows[model_rows < 0]][:5].tolist()
            raise ValueError(f"the model does not know evaluated user(s) {lost} (first 5)")
    cols = None
    if model.items_ != data.items:
        cols = _lookup(model.items_, data.items.ids, "item", "the data")
    return model_rows, cols


def _lookup(vocab: Vocabulary, ids: np.ndarray, what: str, where: str) -> np.ndarray:
    idx = vocab.index(ids, missing="ignore")
    if (idx < 0).any():
        lost = ids[idx < 0][:5].tolist()
        raise ValueError(f"the model does not know {what}(s) {lost} (first 5) of {where}")
    return idx


def _gather(
    indptr: np.ndarray, indices: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Row lengths and the concatenated column indices of CSR ``rows``, without a loop."""
    starts = indptr[rows]
    counts = indptr[rows + 1] - starts
    ends = np.cumsum(counts)
    offsets = np.repeat(starts - (ends - counts), counts) + np.arange(ends[-1] if len(ends) else 0)
    return counts, indices[offsets].astype(np.int64)


def _without_train(test: Interactions, train: Interactions) -> tuple[np.ndarray, np.ndarray]:
    """Test CSR arrays minus the (user, item) pairs that are also in ``train``."""
    n = train.n_items
    test_keys = test.row_of_entry.astype(np.int64) * n + test.indices
    train_keys = train.row_of_entry.astype(np.int64) * n + train.indices  # sorted (CSR order)
    if len(train_keys):
        pos = np.minimum(np.searchsorted(train_keys, test_keys), len(train_keys) - 1)
        keep = train_keys[pos] != test_keys
    else:
        keep = np.ones(len(test_keys), dtype=bool)
    if keep.all():
        return test.indptr, test.indices.astype(np.int64)
    counts = np.bincount(test.row_of_entry[keep], minlength=test.n_users)
    indptr = np.concatenate([[0], np.cumsum(counts)])
    return indptr, test.indices[keep].astype(np.int64)


__all__ = ["DEFAULT_METRICS", "RANKING_METRICS", "evaluate_ranking", "evaluate_ratings"]
