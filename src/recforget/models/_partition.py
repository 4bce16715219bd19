"""Partitions of a data set's entries into shards (SISA's random ones, RecEraser's balanced ones).

Every function returns ``shard_of_entry``: an int array of shape (nnz,) with values in
``0 .. n_shards - 1``, a pure function of the data, the number of shards and the seed.

* ``"user"`` / ``"item"`` / ``"interaction"``: a seeded random permutation of the users (items,
  entries) cut into ``n_shards`` near-equal groups; entries follow their user (item).
* ``"balanced-user"`` / ``"balanced-item"`` / ``"balanced-interaction"``: RecEraser's UBP, IBP
  and InBP (Chen et al., "Recommendation Unlearning", WWW 2022, Algorithms 1-2): balanced
  k-means on embeddings from a truncated SVD of the interaction matrix (the paper uses a
  pretrained model's embeddings; an SVD is a pretrained bi-linear model that needs no
  choice of trainer). ``n_shards`` random anchors, then ``iterations`` rounds of: assign
  points to anchors in order of increasing distance, each anchor holding at most
  ``ceil(n / n_shards)`` points; move each anchor to the mean of its points. Interaction
  embeddings are the pair ``(e_u, e_i)``, distances the sum of both parts.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from recforget.data.interactions import Interactions
from recforget.kernels.partition import balanced_assign

PARTITIONS = (
    "user",
    "item",
    "interaction",
    "balanced-user",
    "balanced-item",
    "balanced-interaction",
)


def _cut(n: int, n_shards: int, rng: np.random.Generator) -> np.ndarray:
    """Shard of each of ``n`` objects: a random permutation cut into near-equal groups."""
    shard = np.empty(n, dtype=np.int64)
    shard[rng.permutation(n)] = np.arange(n) % n_shards
    return shard


def embeddings(data: Interactions, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """User and item embeddings ``U sqrt(S)``, ``V sqrt(S)`` of a rank-``dim`` SVD of the
    binary interaction matrix (seeded start vector, so deterministic)."""
    csr = sp.csr_array(
        (np.ones(data.nnz), data.indices, data.indptr), shape=(data.n_users, data.n_items)
    )
    k = max(1, min(dim, min(csr.shape) - 1))
    v0 = np.random.default_rng(seed).standard_normal(min(csr.shape))
    u, s, vt = svds(csr.astype(np.float64), k=k, v0=v0)
    root = np.sqrt(s)
    return u * root, vt.T * root


def _balanced_kmeans(
    points: list[np.ndarray], n_shards: int, iterations: int, rng: np.random.Generator
) -> np.ndarray:
    """Balanced k-means on the concatenation of ``points`` (each (n, d_j)); shard per point."""
    n = len(points[0])
    capacity = -(-n // n_shards)
    anchors = [p[rng.choice(n, size=n_shards, replace=False)] for p in points]
    assign = np.zeros(n, dtype=np.int64)
    for _ in range(iterations):
        dist = np.zeros((n, n_shards))
        for p, a in zip(points, anchors, strict=True):
            # ||p - a||^2 = ||p||^2 - 2 p.a + ||a||^2
            dist += (p * p).sum(1)[:, None] - 2.0 * (p @ a.T) + (a * a).sum(1)[None, :]
        assign = balanced_assign(dist, capacity)
        counts = np.bincount(assign, minlength=n_shards).astype(np.float64)
        for j, p in enumerate(points):
            sums = np.zeros((n_shards, p.shape[1]))
            np.add.at(sums, assign, p)
            anchors[j] = sums / np.maximum(counts, 1)[:, None]
    return assign


def partition(
    data: Interactions,
    n_shards: int,
    kind: str,
    seed: int,
    *,
    iterations: int = 5,
    dim: int = 16,
) -> np.ndarray:
    """``shard_of_entry`` (shape (nnz,)) for partition ``kind`` (see the module docstring)."""
    if kind not in PARTITIONS:
        raise ValueError(f"partition must be one of {PARTITIONS}, got {kind!r}")
    rng = np.random.default_rng(seed)
    rows, cols = data.row_of_entry, data.indices
    if kind == "user":
        return _cut(data.n_users, n_shards, rng)[rows]
    if kind == "item":
        return _cut(data.n_items, n_shards, rng)[cols]
    if kind == "interaction":
        return _cut(data.nnz, n_shards, rng)
    eu, ei = embeddings(data, dim, seed)
    if kind == "balanced-user":
        return _balanced_kmeans([eu], n_shards, iterations, rng)[rows]
    if kind == "balanced-item":
        return _balanced_kmeans([ei], n_shards, iterations, rng)[cols]
    return _balanced_kmeans([eu[rows], ei[cols]], n_shards, iterations, rng)


__all__ = ["PARTITIONS", "embeddings", "partition"]
