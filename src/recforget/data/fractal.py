"""Fractal (Kronecker) expansion of a real interaction matrix into a larger, realistic one.

Belletti, Lakshmanan, Krichene, Chen & Anderson, "Scalable Realistic Recommendation Datasets
through Fractal Expansions" (arXiv 1901.08910), grow a real users x items matrix ``R`` of shape
``(m, n)`` into one of shape ``(a m, b n)`` that keeps its fat-tailed degree distributions and
the shape of its singular value spectrum:

1. **Reduction** (their Algorithm 2). Take the top ``k = min(a, b)`` singular triplets
   ``R ~ U diag(s) V^T``. Shrink ``U`` (``m x k``) to ``a x k`` and ``V`` (``n x k``) to
   ``b x k`` by averaging contiguous blocks of rows (an anti-aliased resize), replace each by
   its closest matrix with orthonormal columns (the polar factor ``M (M^T M)^{-1/2}``), and form
   the small seed ``S = U' diag(s) V'^T`` of shape ``(a, b)``, whose singular values are
   exactly the top ``k`` of ``R``. Fold it into ``[0, 1]``: ``P = |S| / max |S|``.
2. **Randomised Kronecker product** (their section III.4). Block ``(p, q)`` of the result is
   ``R`` with its rows and its columns independently shuffled at random and a random subset of
   ``round(P[p, q] nnz)`` of its entries kept (the rest dropped out), the keep rate clipped to
   ``[min_keep, max_keep]`` as in the reference implementation (dropout between 5% and 99%).

Every kept entry is a real interaction of ``R`` (its value and timestamp are copied); the
expanded users' degrees are sums of ``b`` thinned copies of real users' degrees, so the
degree distributions keep their shape, scaled by the mean keep rate, while the expanded
matrix's density is the original's times ``mean(P)``. The result is synthetic growth of real
data, for measuring how methods scale: it is not a larger real data set.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from recforget._rng import check_random_state
from recforget.data.interactions import Interactions
from recforget.data.vocab import Vocabulary

MIN_KEEP = 0.01  # the reference implementation's maximum dropout rate is 0.99
MAX_KEEP = 0.95  # ... and its minimum dropout rate 0.05


def _block_means(M: np.ndarray, n_out: int) -> np.ndarray:
    """``M`` (``n x k``) shrunk to ``n_out x k`` by averaging ``n_out`` contiguous row blocks."""
    edges = np.linspace(0, M.shape[0], n_out + 1).round().astype(np.int64)
    sums = np.add.reduceat(M, edges[:-1], axis=0)
    return sums / np.diff(edges)[:, None]


def _polar(M: np.ndarray) -> np.ndarray:
    """Closest matrix with orthonormal columns to ``M`` (Frobenius norm): ``P W^T``."""
    P, _, Wt = np.linalg.svd(M, full_matrices=False)
    return P @ Wt


def seed_matrix(data: Interactions, factors: tuple[int, int], *, random_state=None) -> np.ndarray:
    """The reduced matrix ``P`` (values in ``[0, 1]``, shape ``factors``) of step 1.

    Its singular values before the folding into ``[0, 1]`` are the top ``min(factors)``
    singular values of the data's matrix.
    """
    a, b = factors
    k = min(a, b)
    R = data.to_csr().astype(np.float64)
    if k >= min(R.shape) - 1:  # svds needs k < min(shape); tiny data: dense SVD
        U, s, Vt = np.linalg.svd(R.toarray(), full_matrices=False)
        U, s, Vt = U[:, :k], s[:k], Vt[:k]
    else:
        rng = check_random_state(random_state)
        v0 = rng.standard_normal(min(R.shape))
        U, s, Vt = svds(sp.csr_matrix(R), k=k, v0=v0)
        order = np.argsort(-s)
        U, s, Vt = U[:, order], s[order], Vt[order]
    Ur = _polar(_block_means(U, a))
    Vr = _polar(_block_means(Vt.T, b))
    S = Ur @ np.diag(s) @ Vr.T
    top = np.abs(S).max()
    return np.abs(S) / top if top > 0 else np.ones((a, b))


def kronecker_expand(
    data: Interactions,
    factors: tuple[int, int],
    *,
    random_state: int | np.random.Generator | None = None,
    min_keep: float = MIN_KEEP,
    max_keep: float = MAX_KEEP,
) -> Interactions:
    """Randomised fractal expansion of ``data`` by ``factors = (a, b)`` (see the module doc).

    Returns
    -------
    Interactions
        Of shape ``(a n_users, b n_items)``, integer ids ``0..``: expanded user ``p m + r`` is
        row ``r`` of block row ``p`` (after that block's shuffle), likewise items. Values and
        timestamps are those of the copied entries. Users or items left with no entries by the
        dropout stay in the vocabularies.
    """
    a, b = _check_factors(factors)
    if not 0 < min_keep <= max_keep <= 1:
        raise ValueError(f"need 0 < min_keep <= max_keep <= 1, got {min_keep}, {max_keep}")
    if data.nnz == 0:
        raise ValueError("cannot expand empty data")
    rng = check_random_state(random_state)
    m, n = data.shape
    P = seed_matrix(data, (a, b), random_state=rng)
    keep = np.clip(P, min_keep, max_keep)
    rows = data.row_of_entry.astype(np.int64)
    cols = data.indices.astype(np.int64)
    vals, ts = data.values, data.timestamps
    nnz = data.nnz
    N = b * n
    out_rows, out_cols, out_vals, out_ts = [], [], [], []
    for p in range(a):
        br, bc, bv, bt = [], [], [], []
        for q in range(b):
            row_perm = rng.permutation(m)
            col_perm = rng.permutation(n)
            size = min(max(int(nnz * keep[p, q]), 1), nnz)
            pick = np.sort(rng.choice(nnz, size=size, replace=False))
            br.append(row_perm[rows[pick]])
            bc.append(q * n + col_perm[cols[pick]])
            bv.append(vals[pick])
            if ts is not None:
                bt.append(ts[pick])
        r = np.concatenate(br)
        c = np.concatenate(bc)
        order = np.argsort(r * N + c, kind="stable")
        out_rows.append(p * m + r[order])
        out_cols.append(c[order])
        out_vals.append(np.concatenate(bv)[order])
        if ts is not None:
            out_ts.append(np.concatenate(bt)[order])
    R = np.concatenate(out_rows)
    indptr = np.zeros(a * m + 1, dtype=np.int64)
    np.cumsum(np.bincount(R, minlength=a * m), out=indptr[1:])
    del R
    return Interactions(
        indptr,
        np.concatenate(out_cols).astype(np.int32),
        np.concatenate(out_vals),
        Vocabulary(np.arange(a * m, dtype=np.int64), name="user"),
        Vocabulary(np.arange(b * n, dtype=np.int64), name="item"),
        np.concatenate(out_ts) if ts is not None else None,
    )


def _check_factors(factors) -> tuple[int, int]:
    try:
        a, b = factors
    except (TypeError, ValueError):
        raise ValueError(f"factors must be a pair of positive integers, got {factors!r}") from None
    for f in (a, b):
        if not isinstance(f, (int, np.integer)) or isinstance(f, bool) or f < 1:
            raise ValueError(f"factors must be a pair of positive integers, got {factors!r}")
    return int(a), int(b)


__all__ = ["MAX_KEEP", "MIN_KEEP", "kronecker_expand", "seed_matrix"]
