"""Fold-in probe: the trace that deleted *users* leave in a model's item side and shared weights.

When whole users are forgotten their rows leave the model, so none of their pairs can be
scored directly, yet the items they interacted with (and any shared network weights) were
trained with them. The probe asks what an attacker who knows part of a deleted user's history
can still learn:

1. :func:`fold_in_split` splits each probed user's history (in the data the *original* model
   was trained on) at random into a **fold-in** part and a **member** part, and draws as many
   **non-member** pairs of the same users (held-out positives first,
   :func:`~recforget.evaluate.attacks.sample_non_members`) plus seeded negatives for the
   fold-in (items outside the user's history, held-out and non-member pairs);
2. :func:`fold_in_trace` fits, for every model compared, a fresh block per user on the
   fold-in pairs and negatives with the model's item side and shared weights fixed: the
   model's own loss (BCE, ridge ``reg``), solved to a stationary point by batched block
   Newton from zero;
3. it scores the member and non-member pairs with the folded-in users: ``deleted_score`` is
   the members' mean probability, ``auc`` the rank AUC of members against non-members.

The split, the negatives and the start are the same for every model, so the numbers compare
like with like: a model retrained without the users has seen neither members nor
non-members (its AUC is near 0.5, up to generalisation), while the original's item vectors
were pulled towards the members. Neural (:class:`~recforget.models.ncf.NCF`) models only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from recforget._rng import check_random_state
from recforget.data.interactions import Interactions
from recforget.evaluate.attacks import rank_auc, sample_non_members

Pairs = list[tuple[Any, Any]]


@dataclass(frozen=True)
class FoldInProbe:
    """The pairs of a fold-in probe (raw ids); see :func:`fold_in_split`.

    Attributes
    ----------
    users : ndarray of raw user ids
        The probed users, in the order of the fold-in blocks.
    fold_users : int ndarray
        Position in ``users`` of each fold-in triple.
    fold_items : ndarray of raw item ids
    fold_labels : float32 ndarray
        1 for the user's fold-in history, 0 for a sampled negative.
    members, non_members : list of (user, item) raw-id pairs
    """

    users: np.ndarray
    fold_users: np.ndarray
    fold_items: np.ndarray
    fold_labels: np.ndarray
    members: Pairs
    non_members: Pairs


def fold_in_split(
    train_before_deletion: Interactions,
    test: Interactions | None,
    users: Iterable[object],
    rng: int | np.random.Generator | None = None,
    *,
    fold_in_fraction: float = 0.75,
    negatives: int = 4,
) -> FoldInProbe:
    """Split the ``users``' histories into fold-in and member pairs; draw non-members.

    Every user with at least two training pairs contributes ``ceil(fold_in_fraction * n)``
    (at least 1, at most ``n - 1``) random history pairs to the fold-in, with ``negatives``
    sampled negatives each (uniform over items neither in the user's history nor among their
    held-out or non-member pairs), and the rest to the members. When ``test`` holds fewer
    held-out positives of these users than there are members, the members are subsampled to
    that many, so members and non-members are both real positives of the same users (the
    default ``fold_in_fraction`` of 0.75 matches an 80/20 holdout). ``len(members)``
    non-members are then drawn from the same users
    (:func:`~recforget.evaluate.attacks.sample_non_members`). Users with fewer than two pairs
    are left out.
    """
    if not 0 < fold_in_fraction < 1:
        raise ValueError(f"fold_in_fraction must be in (0, 1), got {fold_in_fraction}")
    if negatives < 0:
        raise ValueError(f"negatives must be >= 0, got {negatives}")
    gen = check_random_state(rng)
    train = train_before_deletion
    idx = np.unique(train.users.index(list(users)))
    counts = train.user_counts()[idx]
    idx = idx[counts >= 2]
    if len(idx) == 0:
        raise ValueError("no probed user has two or more training pairs")
    indptr, indices = train.indptr, train.indices
    fold_u, fold_i, mem_u, mem_i = [], [], [], []
    for k, u in enumerate(idx):
        hist = indices[indptr[u] : indptr[u + 1]]
        perm = gen.permutation(len(hist))
        n_fold = min(max(int(np.ceil(fold_in_fraction * len(hist))), 1), len(hist) - 1)
        fold_u.append(np.full(n_fold, k))
        fold_i.append(hist[perm[:n_fold]])
        mem_u.append(np.full(len(hist) - n_fold, u))
        mem_i.append(hist[perm[n_fold:]])
    mu, mi = np.concatenate(mem_u), np.concatenate(mem_i)
    uid, iid = train.users.ids, train.items.ids
    tu, ti = _test_pairs(train, test, idx)
    n = int((train.entry_positions(tu, ti) < 0).sum())  # held-out positives of these users
    if 0 < n < len(mu):  # as many members as held-out positives: like against like
        keep = np.sort(gen.choice(len(mu), size=n, replace=False))
        mu, mi = mu[keep], mi[keep]
    members = list(zip(uid[mu].tolist(), iid[mi].tolist(), strict=True))
    non_members = sample_non_members(train, test, len(members), gen, users=uid[idx])
    # the negatives avoid every pair the probe scores or the user is known to like
    taken: dict[int, set[int]] = {
        int(u): set(indices[indptr[u] : indptr[u + 1]].tolist()) for u in idx
    }
    nu = train.users.index([p[0] for p in non_members])
    ni = train.items.index([p[1] for p in non_members], missing="ignore")
    for u, i in zip(np.r_[tu, nu].tolist(), np.r_[ti, ni].tolist(), strict=True):
        if i >= 0:
            taken[u].add(i)
    neg_u, neg_i = [], []
    for k, u in enumerate(idx):
        want = negatives * len(fold_i[k])
        free = np.setdiff1d(np.arange(train.n_items), np.fromiter(taken[int(u)], np.int64))
        if want and len(free):
            neg_u.append(np.full(want, k))
            neg_i.append(gen.choice(free, size=want, replace=len(free) < want))
    fu = np.concatenate([*fold_u, *neg_u])
    fi = np.concatenate([*fold_i, *neg_i])
    labels = np.concatenate(
        [np.ones(sum(len(a) for a in fold_u)), np.zeros(sum(len(a) for a in neg_u))]
    ).astype(np.float32)
    return FoldInProbe(uid[idx], fu.astype(np.int64), iid[fi], labels, members, non_members)


def _test_pairs(
    train: Interactions, test: Interactions | None, users: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``test``'s pairs of ``users`` (indices) as training-data indices, unknown items left out."""
    if test is None or not test.nnz:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    u = train.users.index(test.users.ids[test.row_of_entry], missing="ignore")
    i = train.items.index(test.items.ids[test.indices], missing="ignore")
    ok = np.isin(u, users) & (i >= 0)
    return u[ok], i[ok]


def fold_in_trace(
    model: Any, probe: FoldInProbe, *, reg: float | None = None, steps: int = 30
) -> dict[str, float]:
    """Fold the probed users into ``model`` and score the members and non-members.

    Parameters
    ----------
    model : fitted NCF
        Its item side and shared weights stay fixed (the model is not modified).
    probe : FoldInProbe
    reg : float, optional
        Ridge of the fold-in blocks (sum form). Default: the model's objective ridge; pass
        one value when comparing models, so only their item sides differ.
    steps : int
        Newton steps at most (each block stops at a stationary point).

    Returns
    -------
    dict
        ``deleted_score`` (members' mean probability), ``auc`` (members against
        non-members), ``gradient_norm`` (largest fold-in block gradient at the end),
        ``n_members`` and ``n_non_members`` (pairs whose item the model still knows).
    """
    import torch

    from recforget.models._ncf_objective import FixedSample, data_gradients, objective_reg
    from recforget.models.ncf import NCF
    from recforget.unlearn.ncf.solvers import block_newton

    if not isinstance(model, NCF):
        raise TypeError(f"fold_in_trace supports NCF models, got {type(model).__name__}")
    model._check_fitted()
    reg = objective_reg(model, reg)
    src = model.module_
    dev = next(src.parameters()).device
    n = len(probe.users)
    items = model.items_.index(probe.fold_items, missing="ignore")
    known = items >= 0
    with model._threads():
        module = src.take(users=torch.zeros(n, dtype=torch.int64, device=dev))
        module.set_user_vectors(
            torch.arange(n, device=dev), torch.zeros(n, module.user_dim, device=dev)
        )
        sample = FixedSample(
            torch.as_tensor(probe.fold_users[known], device=dev),
            torch.as_tensor(items[known], device=dev),
            torch.as_tensor(probe.fold_labels[known], device=dev),
        )
        block_newton(module, sample, "users", np.arange(n), reg, steps=steps, gtol=1e-7)
        gU = data_gradients(module, sample)[0].double()
        gU += reg * module.all_user_vectors().detach().double()
        where = {u: k for k, u in enumerate(probe.users.tolist())}
        scores = []
        for pairs in (probe.members, probe.non_members):
            u = np.array([where[p[0]] for p in pairs], dtype=np.int64)
            i = model.items_.index([p[1] for p in pairs], missing="ignore")
            ok = i >= 0
            with torch.no_grad():
                z = module.pair_scorer()(
                    torch.as_tensor(u[ok], device=dev), torch.as_tensor(i[ok], device=dev)
                )
            scores.append(torch.sigmoid(z.double()).cpu().numpy())
    return {
        "deleted_score": float(np.mean(scores[0])) if len(scores[0]) else float("nan"),
        "auc": rank_auc(scores[0], scores[1]),
        "gradient_norm": float(gU.norm(dim=1).max()) if n else 0.0,
        "n_members": len(scores[0]),
        "n_non_members": len(scores[1]),
    }
