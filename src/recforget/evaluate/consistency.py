"""Consistency of an unlearned model with the retrained oracle.

Each function compares two fitted recommenders ``a`` and ``b`` (typically an unlearned model
and ``clone(model).fit(remaining)``), or measures where deleted data still sit in one model.
Models are matched by **raw ids**, so their vocabularies may differ (a retrain after deleting
users or items knows fewer ids).

Definitions
-----------
* :func:`score_agreement`: for pairs :math:`(u_j, i_j)`, with :math:`a_j = s^A_{u_j i_j}` and
  :math:`b_j = s^B_{u_j i_j}`: Pearson's :math:`r(a, b)`; Spearman's :math:`\\rho` = Pearson
  of the average (mid) ranks; Kendall's :math:`\\tau_b` (ties corrected, as
  ``scipy.stats.kendalltau``); and ``mean_abs_gap`` :math:`= \\frac1n \\sum_j |a_j - b_j|`.
  A correlation is NaN when either side is constant or there are fewer than two pairs.
* :func:`topk_overlap`: for each user, :math:`J(L^A_u, L^B_u) = |L^A_u \\cap L^B_u| /
  |L^A_u \\cup L^B_u|` of the two top-``k`` lists (raw item ids; each model ranks its own
  items minus the user's ``exclude`` items, ties broken by the lower item index); the mean
  over users with a non-empty union.
* :func:`neighbour_overlap`: for each item :math:`i`, :math:`N^A_k(i)` = the ``k`` items
  :math:`j \\ne i` of highest cosine similarity :math:`\\cos(v^A_i, v^A_j)` (ties by lower
  index; a zero vector has similarity 0 to everything); the mean over items of
  :math:`J(N^A_k(i), N^B_k(i))`.
* :func:`deleted_item_ranks`: for a pair :math:`(u, i)` with candidates
  :math:`C_u` = every item of the model that is not in ``exclude``'s row of :math:`u`, the
  rank :math:`1 + |\\{j \\in C_u \\setminus \\{i\\} : s_{uj} > s_{ui}\\}| + \\tfrac12
  |\\{j \\in C_u \\setminus \\{i\\} : s_{uj} = s_{ui}\\}|` (1 = top; ties count one half, as in
  the AUC). :func:`rank_summary` averages them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
import scipy.stats

from recforget.data.interactions import Interactions
from recforget.data.vocab import Vocabulary
from recforget.kernels.topk import topk_rows
from recforget.models.base import Recommender

Pairs = Sequence[tuple[object, object]] | np.ndarray | Interactions


# ---------------------------------------------------------------------- score agreement
def score_agreement(
    a: Recommender,
    b: Recommender,
    users: Iterable[object],
    items: Iterable[object],
) -> dict[str, float]:
    """Agreement of two models' scores on the same (user, item) pairs.

    Parameters
    ----------
    a, b : Recommender
        Fitted; both must know every user and item given (matched by raw id).
    users, items : sequences of raw ids of shape (n,)
        The pairs ``(users[j], items[j])``, e.g. held-out pairs or deleted pairs.

    Returns
    -------
    dict
        ``{"pearson", "spearman", "kendall_tau", "mean_abs_gap"}`` (see the module docstring);
        NaN correlations for constant inputs or ``n < 2``; all NaN when ``n == 0``.
    """
    users = list(users)
    items = list(items)
    if len(users) != len(items):
        raise ValueError(f"{len(users)} users but {len(items)} items: pass one item per user")
    sa = np.asarray(a.score(users, items), dtype=np.float64)
    sb = np.asarray(b.score(users, items), dtype=np.float64)
    return _agreement(sa, sb)


def _agreement(sa: np.ndarray, sb: np.ndarray) -> dict[str, float]:
    n = len(sa)
    out = {"pearson": np.nan, "spearman": np.nan, "kendall_tau": np.nan, "mean_abs_gap": np.nan}
    if n == 0:
        return out
    out["mean_abs_gap"] = float(np.mean(np.abs(sa - sb)))
    if n < 2 or np.ptp(sa) == 0 or np.ptp(sb) == 0:
        return out
    out["pearson"] = _pearson(sa, sb)
    out["spearman"] = _pearson(scipy.stats.rankdata(sa), scipy.stats.rankdata(sb))
    out["kendall_tau"] = float(scipy.stats.kendalltau(sa, sb).statistic)  # tau-b, O(n log n)
    return out


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    x = x - x.mean()
    y = y - y.mean()
    denom = np.sqrt(np.dot(x, x) * np.dot(y, y))
    return float(np.clip(np.dot(x, y) / denom, -1.0, 1.0)) if denom > 0 else np.nan


# ---------------------------------------------------------------------- top-k overlap
def topk_overlap(
    a: Recommender,
    b: Recommender,
    users: Iterable[object],
    k: int = 10,
    exclude: Interactions | None = None,
    *,
    batch_size: int = 1024,
) -> float:
    """Mean per-user Jaccard similarity of the two models' top-``k`` lists.

    Parameters
    ----------
    a, b : Recommender
        Fitted; both must know every user given. Each ranks its own item vocabulary.
    users : sequence of raw user ids of shape (n_users,)
    k : int >= 1
    exclude : Interactions, optional
        Items never recommended to a user (matched by raw ids; typically the remaining
        training data). Users or items it does not know exclude nothing. Default: nothing is
        excluded (unlike :meth:`Recommender.recommend`, the models' own ``seen_`` are *not*
        used, so both lists are drawn from the same candidates).
    batch_size : int
        Users scored at once.

    Returns
    -------
    float
        Mean Jaccard over users whose two lists are not both empty (NaN if none).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    users = np.asarray(list(users))
    if len(users) == 0:
        return np.nan
    union = Vocabulary(pd.unique(np.concatenate([a.items_.ids, b.items_.ids])), name="item")
    lists = []
    for m in (a, b):
        top = _topk_codes(m, users, k, exclude, batch_size)
        code = union.index(m.items_.ids)
        lists.append(np.where(top >= 0, code[np.maximum(top, 0)], -1))
    jac = _row_jaccard(lists[0], lists[1])
    return float(np.nanmean(jac)) if not np.isnan(jac).all() else np.nan


def _topk_codes(
    model: Recommender,
    users: np.ndarray,
    k: int,
    exclude: Interactions | None,
    batch_size: int,
) -> np.ndarray:
    """Top-k item indices of the model per user (-1 pads), exclude items masked out."""
    rows = model.users_.index(users)
    mask = _exclusion(model, users, exclude)
    kk = min(k, len(model.items_))
    out = np.full((len(users), k), -1, dtype=np.int64)
    for s in range(0, len(users), batch_size):
        scores = np.array(model._score_rows(rows[s : s + batch_size]), dtype=np.float64)
        if mask is not None:
            scores[mask[s : s + batch_size].toarray()] = -np.inf
        top, val = topk_rows(scores, kk)
        top[np.isneginf(val)] = -1
        out[s : s + len(top), :kk] = top
    return out


def _exclusion(
    model: Recommender, users: np.ndarray, exclude: Interactions | None
) -> sp.csr_array | None:
    """Boolean CSR (len(users), model items): the exclude items of each user, by raw id."""
    if exclude is None:
        return None
    erow = exclude.users.index(users, missing="ignore")
    col = model.items_.index(exclude.items.ids, missing="ignore")
    counts = np.where(erow >= 0, exclude.indptr[erow + 1] - exclude.indptr[erow], 0)
    starts = exclude.indptr[np.maximum(erow, 0)]
    ends = np.cumsum(counts)
    pos = np.repeat(starts - (ends - counts), counts) + np.arange(ends[-1] if len(ends) else 0)
    r = np.repeat(np.arange(len(users)), counts)
    c = col[exclude.indices[pos]]
    keep = c >= 0
    return sp.csr_array(
        (np.ones(int(keep.sum()), dtype=bool), (r[keep], c[keep])),
        shape=(len(users), len(model.items_)),
    )


def _row_jaccard(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Jaccard of the sets in each row of x and y (rows distinct, -1 = padding); NaN if empty."""
    both = np.sort(np.concatenate([x, y], axis=1), axis=1)
    inter = ((both[:, 1:] == both[:, :-1]) & (both[:, 1:] >= 0)).sum(axis=1)
    union = (x >= 0).sum(axis=1) + (y >= 0).sum(axis=1) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, np.nan)


# ---------------------------------------------------------------------- item neighbours
def item_vectors(model: Recommender) -> np.ndarray:
    """The model's item representation, rows in ``model.items_`` order.

    ALS (or any model with ``item_factors_``): the item factors. NCF (a model with
    ``module_``): ``module_.all_item_vectors()``, the concatenated item embedding tables of its
    branches, detached to numpy.

    Returns
    -------
    float ndarray of shape (n_items, d)
    """
    module = getattr(model, "module_", None)
    if module is not None and hasattr(module, "all_item_vectors"):
        return np.asarray(module.all_item_vectors().detach().cpu().numpy())
    factors = getattr(model, "item_factors_", None)
    if factors is None:
        raise TypeError(f"{type(model).__name__} has no item vectors (item_factors_ or module_)")
    return np.asarray(factors)


def common_item_vectors(
    a: Recommender, b: Recommender
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Item vectors of two models on their common items, aligned by raw item id.

    Returns
    -------
    ids : ndarray of shape (n_common,)
        Common raw item ids, in ``a``'s order.
    vectors_a : ndarray of shape (n_common, d_a)
    vectors_b : ndarray of shape (n_common, d_b)
    """
    ib = b.items_.index(a.items_.ids, missing="ignore")
    ia = np.flatnonzero(ib >= 0)
    return a.items_.ids[ia], item_vectors(a)[ia], item_vectors(b)[ib[ia]]


def neighbour_overlap(
    item_vectors_a: np.ndarray,
    item_vectors_b: np.ndarray,
    k: int = 200,
    *,
    batch_size: int = 512,
) -> float:
    """Mean Jaccard of each item's ``k`` nearest neighbours (cosine) in two embeddings.

    Parameters
    ----------
    item_vectors_a : float ndarray of shape (n_items, d_a)
    item_vectors_b : float ndarray of shape (n_items, d_b)
        Row ``i`` of both is the same item (see :func:`common_item_vectors`); ``d_a`` and
        ``d_b`` may differ.
    k : int >= 1
        Neighbours per item, capped at ``n_items - 1``.
    batch_size : int
        Items whose similarity rows are computed at once (memory ``batch_size * n_items``).

    Returns
    -------
    float
        NaN with fewer than two items.
    """
    A = _unit_rows(item_vectors_a)
    B = _unit_rows(item_vectors_b)
    if A.shape[0] != B.shape[0]:
        raise ValueError(f"{A.shape[0]} items in A but {B.shape[0]} in B: align them first")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    n = A.shape[0]
    if n < 2:
        return np.nan
    k = min(k, n - 1)
    total = 0.0
    for s in range(0, n, batch_size):
        rows = np.arange(s, min(s + batch_size, n))
        na = _neighbours(A, rows, k)
        nb = _neighbours(B, rows, k)
        mark = np.zeros((len(rows), n), dtype=bool)
        np.put_along_axis(mark, na, True, axis=1)
        inter = np.take_along_axis(mark, nb, axis=1).sum(axis=1)
        total += float(np.sum(inter / (2 * k - inter)))
    return total / n


def _unit_rows(V: np.ndarray) -> np.ndarray:
    V = np.asarray(V, dtype=np.float64)
    if V.ndim != 2:
        raise ValueError(f"item vectors must be 2-D (n_items, d), got shape {V.shape}")
    norm = np.linalg.norm(V, axis=1, keepdims=True)
    return np.divide(V, norm, out=np.zeros_like(V), where=norm > 0)


def _neighbours(U: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    sim = U[rows] @ U.T  # cosine similarities, (b, n)
    sim[np.arange(len(rows)), rows] = -np.inf  # never one's own neighbour
    return topk_rows(sim, k)[0]


# ---------------------------------------------------------------------- deleted-item ranks
def deleted_item_ranks(
    model: Recommender,
    pairs: Pairs,
    exclude: Interactions | None,
    *,
    batch_size: int = 1024,
) -> np.ndarray:
    """Rank of each deleted item among its user's candidate items (1 = top).

    Parameters
    ----------
    model : Recommender
        Fitted; it must know every user and item of ``pairs``.
    pairs : sequence of (user, item) raw-id pairs of length n, an (n, 2) array, or Interactions
    exclude : Interactions or None
        Non-candidates (matched by raw id): typically the remaining training data, so each
        item competes with the items the user could still be recommended. ``None``: every item
        is a candidate.
    batch_size : int
        Pairs ranked at once (memory ``batch_size * n_items``).

    Returns
    -------
    float64 ndarray of shape (n,)
        :math:`1 + \\#\\{\\text{higher}\\} + \\tfrac12 \\#\\{\\text{tied}\\}` over the candidates
        other than the item itself (whether or not the item is itself excluded).
    """
    pu, pi = as_pairs(pairs)
    rows = model.users_.index(pu)
    cols = model.items_.index(pi)
    ranks = np.empty(len(rows), dtype=np.float64)
    for s in range(0, len(rows), batch_size):
        r, c = rows[s : s + batch_size], cols[s : s + batch_size]
        uniq, inv = np.unique(r, return_inverse=True)
        scores = np.asarray(model._score_rows(uniq), dtype=np.float64)[inv]
        b = np.arange(len(r))
        own = scores[b, c].copy()  # read before masking: the item may itself be excluded
        if exclude is not None:
            scores[_exclusion(model, pu[s : s + batch_size], exclude).toarray()] = np.nan
        scores[b, c] = np.nan  # the item is not its own competitor; NaN compares False
        higher = (scores > own[:, None]).sum(axis=1)
        tied = (scores == own[:, None]).sum(axis=1)
        ranks[s : s + len(r)] = 1.0 + higher + 0.5 * tied
    return ranks


def rank_summary(ranks: np.ndarray, ks: Sequence[int] = (10,)) -> dict[str, float]:
    """Summary of :func:`deleted_item_ranks`.

    Returns
    -------
    dict
        ``"mean_rank"``, ``"median_rank"``, ``"top@<k>"`` (fraction of ranks ``<= k``) for
        each ``k``, and ``"n"``; NaN statistics when ``ranks`` is empty.
    """
    ranks = np.asarray(ranks, dtype=np.float64).ravel()
    n = len(ranks)
    out = {
        "mean_rank": float(ranks.mean()) if n else np.nan,
        "median_rank": float(np.median(ranks)) if n else np.nan,
    }
    for k in [ks] if isinstance(ks, (int, np.integer)) else ks:
        out[f"top@{int(k)}"] = float(np.mean(ranks <= k)) if n else np.nan
    out["n"] = n
    return out


# ---------------------------------------------------------------------- helpers
def as_pairs(pairs: Pairs) -> tuple[np.ndarray, np.ndarray]:
    """Raw user ids and raw item ids of ``pairs``, two arrays of shape (n,).

    ``pairs`` is a sequence of (user, item) tuples, an (n, 2) array or an Interactions.
    """
    if isinstance(pairs, Interactions):
        return pairs.users.ids[pairs.row_of_entry], pairs.items.ids[pairs.indices]
    pairs = list(pairs) if not isinstance(pairs, np.ndarray) else pairs
    if len(pairs) == 0:
        return np.empty(0, dtype=object), np.empty(0, dtype=object)
    for p in pairs[:1]:
        if len(p) != 2:
            raise ValueError(f"a pair must be (user, item), got {p!r}")
    return np.asarray([p[0] for p in pairs]), np.asarray([p[1] for p in pairs])


__all__ = [
    "as_pairs",
    "common_item_vectors",
    "deleted_item_ranks",
    "item_vectors",
    "neighbour_overlap",
    "rank_summary",
    "score_agreement",
    "topk_overlap",
]
