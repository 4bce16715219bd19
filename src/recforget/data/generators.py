"""Synthetic interaction data with known structure, for tests and examples.

:func:`synthetic` plants a low-rank signal, :func:`block_diagonal` users who only touch their
own block of items (deleting a block's users must remove its signal), :func:`random_ratings`
a dense matrix of 1-5 ratings on a random support. All are seeded.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from recforget._rng import check_random_state
from recforget.data.interactions import Interactions
from recforget.data.vocab import Vocabulary


def random_ratings(m: int, n: int, density: float, seed: int) -> np.ndarray:
    """Dense m x n matrix of integer ratings 1..5 on a random support (0 = unobserved).

    Every user has at least one rating.
    """
    r = np.random.default_rng(seed)
    R = (r.random((m, n)) < density) * r.integers(1, 6, (m, n))
    R[np.arange(m), r.integers(0, n, m)] = r.integers(1, 6, m)
    return R.astype(np.float64)


def synthetic(
    n_users: int = 200,
    n_items: int = 100,
    rank: int = 4,
    density: float = 0.1,
    *,
    noise: float = 0.0,
    feedback: Literal["implicit", "explicit"] = "implicit",
    random_state: int | np.random.Generator | None = None,
) -> Interactions:
    """Interactions with a planted low-rank structure.

    Draw factors :math:`U \\in \\mathbb{R}^{n_{users} \\times r}`,
    :math:`V \\in \\mathbb{R}^{n_{items} \\times r}` with i.i.d. :math:`N(0, r^{-1/2})` entries,
    so the scores :math:`S = U V^\\top` have unit variance.

    * ``feedback="implicit"``: user :math:`u` interacts with the
      :math:`m = \\max(1, \\mathrm{round}(\\mathrm{density} \\cdot n_{items}))` items of highest
      :math:`S_{ui} + \\mathrm{noise} \\cdot \\varepsilon_{ui}`; values are 1.0.
    * ``feedback="explicit"``: entries are observed uniformly at random with probability
      ``density`` (each user gets at least one) and hold
      :math:`S_{ui} + \\mathrm{noise} \\cdot \\varepsilon_{ui}`, so with ``noise=0`` the
      observed values are exactly those of a rank-``rank`` matrix.

    Parameters
    ----------
    n_users, n_items, rank : int
    density : float in (0, 1]
    noise : float >= 0
        Standard deviation of the Gaussian noise :math:`\\varepsilon`.
    feedback : {"implicit", "explicit"}
    random_state : int, numpy.random.Generator or None

    Returns
    -------
    Interactions
        Of shape (n_users, n_items), ids ``0..n-1``, no timestamps. Items may have no entries.
    """
    if min(n_users, n_items, rank) < 1:
        raise ValueError("n_users, n_items and rank must be >= 1")
    if not 0 < density <= 1:
        raise ValueError(f"density must be in (0, 1], got {density}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    if feedback not in ("implicit", "explicit"):
        raise ValueError(f"feedback must be 'implicit' or 'explicit', got {feedback!r}")
    rng = check_random_state(random_state)
    scale = rank**-0.25
    U = rng.normal(0.0, scale, (n_users, rank))
    V = rng.normal(0.0, scale, (n_items, rank))
    S = U @ V.T + noise * rng.standard_normal((n_users, n_items))
    if feedback == "implicit":
        m = max(1, round(density * n_items))
        top = np.argpartition(-S, m - 1, axis=1)[:, :m] if m < n_items else None
        mask = np.zeros((n_users, n_items), dtype=bool)
        if top is None:
            mask[:] = True
        else:
            np.put_along_axis(mask, top, True, axis=1)
        values = np.ones(int(mask.sum()))
    else:
        mask = rng.random((n_users, n_items)) < density
        empty = ~mask.any(axis=1)
        mask[np.flatnonzero(empty), rng.integers(0, n_items, int(empty.sum()))] = True
        values = S[mask]
    return _from_mask(mask, values)


def block_diagonal(
    n_blocks: int,
    users_per_block: int,
    items_per_block: int,
    density: float = 1.0,
    *,
    random_state: int | np.random.Generator | None = None,
) -> Interactions:
    """Implicit interactions where users only touch the items of their own block.

    User ``u`` is in block ``u // users_per_block`` and item ``i`` in block
    ``i // items_per_block`` (ids are these integers). Each in-block pair is an interaction
    with probability ``density``; every user and every item keeps at least one. Deleting the
    users of a block must remove that block's signal from a model.

    Returns
    -------
    Interactions
        Of shape (n_blocks * users_per_block, n_blocks * items_per_block), values 1.0.
    """
    if min(n_blocks, users_per_block, items_per_block) < 1:
        raise ValueError("n_blocks, users_per_block and items_per_block must be >= 1")
    if not 0 < density <= 1:
        raise ValueError(f"density must be in (0, 1], got {density}")
    rng = check_random_state(random_state)
    n_users, n_items = n_blocks * users_per_block, n_blocks * items_per_block
    ub = np.arange(n_users) // users_per_block
    ib = np.arange(n_items) // items_per_block
    same = ub[:, None] == ib[None, :]
    mask = same & (rng.random((n_users, n_items)) < density)
    for u in np.flatnonzero(~mask.any(axis=1)):
        mask[u, ub[u] * items_per_block + rng.integers(items_per_block)] = True
    for i in np.flatnonzero(~mask.any(axis=0)):
        mask[ib[i] * users_per_block + rng.integers(users_per_block), i] = True
    return _from_mask(mask, np.ones(int(mask.sum())))


def _from_mask(mask: np.ndarray, values: np.ndarray) -> Interactions:
    rows, cols = np.nonzero(mask)  # row-major, so sorted by (user, item)
    indptr = np.zeros(mask.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=mask.shape[0]), out=indptr[1:])
    return Interactions(
        indptr,
        cols,
        values,
        Vocabulary(np.arange(mask.shape[0]), name="user"),
        Vocabulary(np.arange(mask.shape[1]), name="item"),
    )


__all__ = ["block_diagonal", "random_ratings", "synthetic"]
