"""Forgetting thoroughness by membership inference: can an attacker tell deleted data apart?

Two documented attack models. Both report a rank-based ROC AUC (Mann-Whitney; ties count one
half): 0.5 means the attacker cannot tell members from non-members. After *perfect*
unlearning the attack should do no better on the unlearned model than on the retrained oracle,
so compare an unlearned model's AUC with the oracle's, not with 0.5 alone (a retrained model
may still generalise to deleted pairs, which is not memorisation).

Interaction-level attack (:func:`interaction_mia`)
--------------------------------------------------
*Threat model.* The attacker can query the model's score of any (user, item) pair (or the
item's rank in the user's list) and holds two sets of pairs: **members**, the deleted pairs
(which were in the original training set), and **non-members**, pairs that were never
training data. The attack predicts "member" for higher scores (or better ranks); no training
is involved, so the AUC is the best a threshold on that single feature can do.
Non-members should follow the members' distribution, otherwise the AUC measures the
difference of the two samples instead of memorisation: :func:`sample_non_members` draws them
from held-out *positives* of the same users (pairs a user really interacted with but that no
model saw), and only falls back to random unobserved pairs when there are too few.

User-level attack (:func:`user_mia`), after MIARS
-------------------------------------------------
Zhang et al., "Membership Inference Attacks Against Recommender Systems", CCS 2021.
*Threat model.* The target system is a black box that returns top-``k`` recommendations for a
user; a user it does not know (never trained on, or deleted) is served the ``k`` most popular
items of its training data, as a deployed system serves a cold user. The attacker

1. knows the interaction histories of the users it asks about (``histories``), and owns a
   *shadow* data set of other users from the same distribution (``shadow_data``);
2. factorises its shadow data (an ALS fit) to obtain item vectors; items without shadow
   interactions have no vector and are ignored;
3. splits the shadow users into shadow members and shadow non-members and trains a shadow
   recommender (:class:`recforget.ALS` with few factors and iterations) on the members only;
4. describes a user by the difference :math:`c_h - c_r` of the centroid :math:`c_h` of their
   history items' vectors and the centroid :math:`c_r` of their top-``k`` recommended items'
   vectors, and appends :math:`\\lVert c_h - c_r \\rVert` and :math:`\\cos(c_h, c_r)` (MIARS
   feeds the difference alone to an MLP; the two scalars let a linear model use the distance);
5. standardises the features with the shadow statistics and fits an L2-regularised logistic
   regression (:func:`fit_logistic`, L-BFGS) on shadow members (label 1) vs shadow
   non-members (label 0);
6. scores the target model's member and non-member users; the attack AUC is over those scores.

Assumptions: shadow and target users come from one distribution; the shadow recommender is a
reasonable stand-in for the target's (the features measure *how* personal the list is, which
transfers across model families better than raw scores); the target's ``recommend`` excludes
the items it trained on for a known user.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp

from recforget._rng import check_random_state
from recforget.data.interactions import Interactions
from recforget.data.vocab import Vocabulary
from recforget.evaluate.consistency import Pairs, as_pairs, deleted_item_ranks
from recforget.evaluate.logistic import fit_logistic, logistic_decision
from recforget.evaluate.ranking import auc_per_user
from recforget.models.base import Recommender


# ---------------------------------------------------------------------- interaction level
def interaction_mia(
    model: Recommender,
    members: Pairs,
    non_members: Pairs,
    feature: Literal["score", "rank"] = "score",
    *,
    exclude: Interactions | None = None,
) -> dict[str, float]:
    """Membership-inference AUC of member pairs against non-member pairs.

    Parameters
    ----------
    model : Recommender
        Fitted; must know every user and item of both pair sets.
    members : pairs of raw ids, length n_members
        Pairs that were training data of the original model (the deleted pairs).
    non_members : pairs of raw ids, length n_non_members
        Pairs never used for training (see :func:`sample_non_members`).
    feature : {"score", "rank"}
        ``"score"``: the model's score of the pair. ``"rank"``: the item's rank among the
        user's candidates (:func:`~recforget.evaluate.consistency.deleted_item_ranks`), a
        better (smaller) rank meaning "member".
    exclude : Interactions, optional
        With ``feature="rank"``: non-candidate items (by raw id). Pass the same data (e.g. the
        remaining training data) for every model compared. Default: every item competes.

    Returns
    -------
    dict
        ``{"auc", "n_members", "n_non_members"}``; ``auc`` is
        :math:`P(f(m) > f(n)) + \\tfrac12 P(f(m) = f(n))` over member/non-member pairs, NaN
        when either set is empty.
    """
    if feature not in ("score", "rank"):
        raise ValueError(f"feature must be 'score' or 'rank', got {feature!r}")
    feats = []
    for pairs in (members, non_members):
        u, i = as_pairs(pairs)
        if len(u) == 0:
            feats.append(np.empty(0))
        elif feature == "score":
            feats.append(np.asarray(model.score(u, i), dtype=np.float64))
        else:
            feats.append(-deleted_item_ranks(model, pairs, exclude))
    return {
        "auc": rank_auc(feats[0], feats[1]),
        "n_members": len(feats[0]),
        "n_non_members": len(feats[1]),
    }


def rank_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Mann-Whitney AUC :math:`P(p > n) + \\tfrac12 P(p = n)` of two score samples.

    Parameters
    ----------
    positive : float ndarray of shape (n_pos,)
    negative : float ndarray of shape (n_neg,)

    Returns
    -------
    float
        NaN when either sample is empty.
    """
    p = np.asarray(positive, dtype=np.float64).ravel()
    n = np.asarray(negative, dtype=np.float64).ravel()
    if len(p) == 0 or len(n) == 0:
        return np.nan
    scores = np.concatenate([p, n])[None, :]
    is_pos = np.zeros_like(scores, dtype=bool)
    is_pos[0, : len(p)] = True
    return float(auc_per_user(scores, is_pos)[0])


def sample_non_members(
    train_before_deletion: Interactions,
    test: Interactions | None,
    n: int,
    rng: int | np.random.Generator | None = None,
    *,
    users: Iterable[object] | None = None,
) -> list[tuple[object, object]]:
    """Draw ``n`` non-member pairs for :func:`interaction_mia`.

    First, uniformly without replacement, from the pairs of ``test`` (held-out positives) that
    are not in ``train_before_deletion`` and whose user is one of ``users`` (default: any
    user). If there are fewer than ``n`` of those, all are taken and the rest are random
    *unobserved* pairs: a user drawn uniformly from ``users`` (default: the users with training
    data) and an item uniformly from the training item vocabulary, neither in the training nor
    in the test data, all distinct.

    Parameters
    ----------
    train_before_deletion : Interactions
        The original model's training data (so no sampled pair is a member).
    test : Interactions or None
        Held-out positives (matched to the training data by raw id).
    n : int >= 0
    rng : int, numpy.random.Generator or None
    users : iterable of raw user ids, optional
        Typically the users of the deleted pairs, so the two samples match.

    Returns
    -------
    list of (user, item) raw-id tuples, length ``n``
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    gen = check_random_state(rng)
    train = train_before_deletion
    wanted = None
    if users is not None:
        wanted = np.unique(train.users.index(list(users), missing="ignore"))
        wanted = wanted[wanted >= 0]
    n_items = train.n_items
    test_keys = np.empty(0, dtype=np.int64)
    chosen: list[tuple[object, object]] = []
    if test is not None and test.nnz:
        tu, ti = as_pairs(test)
        u = train.users.index(tu, missing="ignore")
        i = train.items.index(ti, missing="ignore")
        in_train = np.zeros(len(u), dtype=bool)
        ok = (u >= 0) & (i >= 0)
        in_train[ok] = train.entry_positions(u[ok], i[ok]) >= 0
        test_keys = u[ok] * n_items + i[ok]
        keep = ~in_train & (u >= 0)
        if wanted is not None:
            keep &= np.isin(u, wanted)
        pool = np.flatnonzero(keep)
        pick = gen.choice(pool, size=min(n, len(pool)), replace=False) if len(pool) else pool
        pick = np.sort(pick)
        chosen = list(zip(tu[pick].tolist(), ti[pick].tolist(), strict=True))
    missing = n - len(chosen)
    if missing > 0:
        chosen += _random_unobserved(train, missing, gen, wanted, test_keys)
    return chosen


def _random_unobserved(
    train: Interactions,
    n: int,
    gen: np.random.Generator,
    users: np.ndarray | None,
    test_keys: np.ndarray,
) -> list[tuple[object, object]]:
    n_items = train.n_items
    if users is None:
        users = np.flatnonzero(train.user_counts() > 0)
    if len(users) == 0 or n_items == 0:
        raise ValueError("no users or items to draw unobserved pairs from")
    keys: list[int] = []
    seen = set(test_keys.tolist())  # test pairs (taken or not) are no unobserved pairs
    for _ in range(100):
        u = gen.choice(users, size=2 * n)
        i = gen.integers(0, n_items, size=2 * n)
        free = train.entry_positions(u, i) < 0
        for key in (u[free] * n_items + i[free]).tolist():
            if key not in seen:
                seen.add(key)
                keys.append(key)
        if len(keys) >= n:
            break
    if len(keys) < n:
        raise ValueError(f"could only find {len(keys)} unobserved pairs of the {n} needed")
    k = np.asarray(keys[:n], dtype=np.int64)
    uid = train.users.ids[k // n_items]
    iid = train.items.ids[k % n_items]
    return list(zip(uid.tolist(), iid.tolist(), strict=True))


# ---------------------------------------------------------------------- user level (MIARS)
@dataclass(frozen=True)
class MIASplit:
    """Users carved for :func:`user_mia` by :func:`split_users_for_mia`.

    Attributes
    ----------
    shadow : Interactions
        The attacker's data (shadow users only; item vocabulary of the input).
    target : Interactions
        The target model's training data (member users only).
    members, non_members : ndarray of raw user ids
        Target users trained on, and held-out users from the same distribution.
    histories : Interactions
        The input data: every user's history, for ``user_mia(histories=...)``.
    """

    shadow: Interactions
    target: Interactions
    members: np.ndarray
    non_members: np.ndarray
    histories: Interactions


def split_users_for_mia(
    data: Interactions,
    rng: int | np.random.Generator | None = None,
    *,
    shadow_fraction: float = 0.5,
    member_fraction: float = 0.5,
) -> MIASplit:
    """Split the users with interactions into shadow, target-member and non-member users.

    ``round(shadow_fraction * n)`` random users form the shadow set; of the others,
    ``round(member_fraction * rest)`` are target members and the remainder non-members.
    """
    for name, f in (("shadow_fraction", shadow_fraction), ("member_fraction", member_fraction)):
        if not 0 < f < 1:
            raise ValueError(f"{name} must be in (0, 1), got {f}")
    gen = check_random_state(rng)
    active = gen.permutation(np.flatnonzero(data.user_counts() > 0))
    n_shadow = round(shadow_fraction * len(active))
    rest = active[n_shadow:]
    n_members = round(member_fraction * len(rest))
    ids = data.users.ids
    shadow_u = np.sort(active[:n_shadow])
    member_u = np.sort(rest[:n_members])
    non_u = np.sort(rest[n_members:])
    if min(len(shadow_u), len(member_u), len(non_u)) == 0:
        raise ValueError(f"too few users ({len(active)}) to split three ways")
    others = np.setdiff1d(np.arange(data.n_users), shadow_u)
    shadow = data.remove(users=ids[others]).data
    target = data.remove(users=ids[np.setdiff1d(np.arange(data.n_users), member_u)]).data
    return MIASplit(shadow, target, ids[member_u], ids[non_u], data)


def user_mia(
    target_model: Recommender,
    shadow_data: Interactions,
    member_users: Iterable[object],
    non_member_users: Iterable[object],
    *,
    histories: Interactions,
    k: int = 100,
    shadow_member_fraction: float = 0.5,
    shadow_factors: int = 16,
    shadow_iterations: int = 5,
    l2: float = 1e-2,
    random_state: int | np.random.Generator | None = None,
) -> dict[str, float]:
    """User-level membership inference in the style of MIARS (see the module docstring).

    Parameters
    ----------
    target_model : Recommender
        Fitted; queried only through top-``k`` recommendations (popular items for users it
        does not know).
    shadow_data : Interactions
        The attacker's own users (disjoint from the target users).
    member_users, non_member_users : iterables of raw user ids
        Users the target trained on (e.g. the deleted users, for an unlearned model) and users
        it never saw.
    histories : Interactions
        Holds the histories of every member and non-member user (e.g. the full data set).
    k : int >= 1
        Length of the recommendation lists.
    shadow_member_fraction : float in (0, 1)
        Share of the shadow users the shadow recommender trains on.
    shadow_factors, shadow_iterations : int
        Size of the attacker's ALS models (item vectors and shadow recommender).
    l2 : float >= 0
        Ridge weight of the logistic regression.
    random_state : int, numpy.random.Generator or None

    Returns
    -------
    dict
        ``"auc"`` (attack AUC on the target users), ``"shadow_auc"`` (on the shadow users the
        classifier trained on), ``"n_members"``, ``"n_non_members"``, ``"n_shadow_members"``,
        ``"n_shadow_non_members"``.
    """
    from recforget.models.als import ALS

    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not 0 < shadow_member_fraction < 1:
        raise ValueError(f"shadow_member_fraction must be in (0, 1), got {shadow_member_fraction}")
    gen = check_random_state(random_state)
    members = np.asarray(list(member_users))
    non_members = np.asarray(list(non_member_users))

    # attacker's item vectors: a factorisation of its own data
    seed_vec, seed_shadow = (int(s) for s in gen.integers(0, 2**31 - 1, size=2))
    vec_model = ALS(shadow_factors, iterations=shadow_iterations, random_state=seed_vec)
    vec_model.fit(shadow_data)
    has_data = shadow_data.item_counts() > 0
    vocab = shadow_data.items.take(np.flatnonzero(has_data))
    V = np.asarray(vec_model.item_factors_, dtype=np.float64)[has_data]

    # shadow recommender on the shadow members only
    active = gen.permutation(np.flatnonzero(shadow_data.user_counts() > 0))
    n_in = round(shadow_member_fraction * len(active))
    s_in, s_out = shadow_data.users.ids[active[:n_in]], shadow_data.users.ids[active[n_in:]]
    if len(s_in) == 0 or len(s_out) == 0:
        raise ValueError(f"too few shadow users ({len(active)}) for members and non-members")
    shadow_train = shadow_data.remove(users=s_out).data
    shadow_model = ALS(shadow_factors, iterations=shadow_iterations, random_state=seed_shadow)
    shadow_model.fit(shadow_train)

    X_shadow = np.vstack(
        [
            user_features(shadow_model, s_in, shadow_data, vocab, V, k),
            user_features(shadow_model, s_out, shadow_data, vocab, V, k),
        ]
    )
    y_shadow = np.concatenate([np.ones(len(s_in)), np.zeros(len(s_out))])
    mu = X_shadow.mean(axis=0)
    sd = X_shadow.std(axis=0)
    sd[sd == 0] = 1.0
    coef, intercept = fit_logistic((X_shadow - mu) / sd, y_shadow, l2=l2)

    def decide(users: np.ndarray) -> np.ndarray:
        if len(users) == 0:
            return np.empty(0)
        X = user_features(target_model, users, histories, vocab, V, k)
        return logistic_decision((X - mu) / sd, coef, intercept)

    shadow_dec = logistic_decision((X_shadow - mu) / sd, coef, intercept)
    return {
        "auc": rank_auc(decide(members), decide(non_members)),
        "shadow_auc": rank_auc(shadow_dec[: len(s_in)], shadow_dec[len(s_in) :]),
        "n_members": len(members),
        "n_non_members": len(non_members),
        "n_shadow_members": len(s_in),
        "n_shadow_non_members": len(s_out),
    }


def user_features(
    model: Recommender,
    users: np.ndarray,
    histories: Interactions,
    vocab: Vocabulary,
    vectors: np.ndarray,
    k: int,
) -> np.ndarray:
    """MIARS features of users: ``[c_h - c_r, ||c_h - c_r||, cos(c_h, c_r)]``.

    Parameters
    ----------
    model : Recommender
        Gives each user's top-``k`` list (popular items for users it does not know).
    users : ndarray of raw user ids of shape (n,)
        All present in ``histories``.
    histories : Interactions
    vocab : Vocabulary
        Raw ids of the rows of ``vectors``; other items are ignored.
    vectors : float ndarray of shape (len(vocab), d)
    k : int

    Returns
    -------
    float64 ndarray of shape (n, d + 2)
        Centroids of empty sets are zero vectors (cosine 0).
    """
    users = np.asarray(users)
    n = len(users)
    # history centroids
    hrow = histories.users.index(users)
    H = histories.to_csr()[hrow]
    col = vocab.index(histories.items.ids, missing="ignore")
    hr = np.repeat(np.arange(n), np.diff(H.indptr))
    hc = col[H.indices]
    c_h = _centroids(hr[hc >= 0], hc[hc >= 0], n, vectors)
    # recommendation centroids
    rec, valid = recommend_or_popular(model, users, k)
    rc = vocab.index(rec.ravel(), missing="ignore").reshape(rec.shape)
    ok = valid & (rc >= 0)
    rr = np.broadcast_to(np.arange(n)[:, None], rec.shape)
    c_r = _centroids(rr[ok], rc[ok], n, vectors)
    diff = c_h - c_r
    nh = np.linalg.norm(c_h, axis=1)
    nr = np.linalg.norm(c_r, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        cos = np.where(nh * nr > 0, np.sum(c_h * c_r, axis=1) / (nh * nr), 0.0)
    return np.hstack([diff, np.linalg.norm(diff, axis=1)[:, None], cos[:, None]])


def recommend_or_popular(
    model: Recommender, users: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` raw item ids per user; users the model does not know get popular items.

    Popularity is the item's number of entries in ``model.seen_`` (ties by lower index).

    Returns
    -------
    items : ndarray of shape (n, min(k, n_items))
        Raw item ids.
    valid : bool ndarray of the same shape
        False where a list ran short (padding).
    """
    users = np.asarray(users)
    n_items = len(model.items_)
    kk = min(k, n_items)
    rows = model.users_.index(users, missing="ignore")
    known = rows >= 0
    counts = model.seen_.item_counts()
    popular = np.lexsort((np.arange(n_items), -counts))[:kk]
    idx = np.broadcast_to(popular, (len(users), kk)).copy()
    valid = np.ones((len(users), kk), dtype=bool)
    if known.any():
        top, val = model._recommend_rows(rows[known], kk)
        idx[known] = np.maximum(top, 0)
        valid[known] = np.isfinite(val)
    return model.items_.ids[idx], valid


def _centroids(rows: np.ndarray, cols: np.ndarray, n: int, V: np.ndarray) -> np.ndarray:
    counts = np.bincount(rows, minlength=n).astype(np.float64)
    w = 1.0 / counts[rows] if len(rows) else np.empty(0)
    M = sp.csr_array((w, (rows, cols)), shape=(n, len(V)))
    return np.asarray(M @ V)


__all__ = [
    "MIASplit",
    "interaction_mia",
    "rank_auc",
    "recommend_or_popular",
    "sample_non_members",
    "split_users_for_mia",
    "user_features",
    "user_mia",
]
