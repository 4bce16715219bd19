"""Incremental multiset digests: fingerprints that follow small changes at small cost.

A stream of deletions needs a fingerprint of the data and a hash of the model after every
request; recomputing either from scratch costs ``O(nnz)`` or ``O(n k)``. :class:`MultisetDigest`
is an additive multiset hash (Clarke, Devadas, van Dijk, Gassend & Suh, "Incremental Multiset
Hash Functions and Their Application to Memory Integrity Checking", 2003): the digest of a
multiset is the sum, in four independent 64-bit lanes, of a hash of each element, so adding or
removing an element costs one element hash. Elements are keyed by raw-id hashes (blake2b of
the id's text), so the digest depends on content, not on layout or index order.

The per-element mixing is splitmix64 (a compiled loop over the element's words), which is
fast but not a cryptographic hash: these digests detect accidental divergence and let two
parties compare states cheaply; for a cryptographic commitment use
:meth:`Interactions.fingerprint` and ``ALS.model_hash`` (``O(size)``, available at any time).
"""

from __future__ import annotations

import hashlib

import numpy as np
from numba import njit

LANES = np.array(
    [0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93],
    dtype=np.uint64,
)


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)


@njit(cache=True)
def _hash_words(words, lanes):  # pragma: no cover - compiled
    """Each row of ``words`` (uint64) chained through splitmix64's finaliser, one chain per
    lane: ``h = lane; h = mix(h ^ word)`` for every word in order. Shape (n, 4)."""
    n, c = words.shape
    m = lanes.shape[0]
    out = np.empty((n, m), dtype=np.uint64)
    z = np.empty(m, dtype=np.uint64)
    for i in range(n):
        z[:] = lanes
        for f in range(c):  # the lanes' chains are independent: interleaved
            word = words[i, f]
            for lane in range(m):
                h = (z[lane] ^ word) + _GOLDEN
                h = (h ^ (h >> _S30)) * _M1
                h = (h ^ (h >> _S27)) * _M2
                z[lane] = h ^ (h >> _S31)
        out[i] = z
    return out


def id_hashes(ids: np.ndarray) -> np.ndarray:
    """64-bit blake2b hash of each raw id's text, uint64 array."""
    return np.fromiter(
        (
            int.from_bytes(hashlib.blake2b(str(x).encode(), digest_size=8).digest(), "little")
            for x in np.asarray(ids).tolist()
        ),
        dtype=np.uint64,
        count=len(ids),
    )


def element_hashes(*columns: np.ndarray) -> np.ndarray:
    """Hash of each element (a row across ``columns`` of uint64 words), shape (n, 4)."""
    n = len(columns[0])
    words = np.empty((n, len(columns)), dtype=np.uint64)
    for f, c in enumerate(columns):
        words[:, f] = np.asarray(c, dtype=np.uint64)
    return _hash_words(words, LANES)


def row_hashes(X: np.ndarray, *head: np.ndarray) -> np.ndarray:
    """``element_hashes(*head, *row_words(X))`` without the per-word columns: the ``head``
    words of each row, then the 32-bit words of its row of ``X``."""
    X = np.ascontiguousarray(X)
    n = len(X)
    width = X.shape[1] * X.itemsize // 4 if X.ndim == 2 else 0
    words = np.empty((n, len(head) + width), dtype=np.uint64)
    for f, c in enumerate(head):
        words[:, f] = np.asarray(c, dtype=np.uint64)
    words[:, len(head) :] = X.view(np.uint32).reshape(n, width)
    return _hash_words(words, LANES)


def row_words(X: np.ndarray) -> list[np.ndarray]:
    """The 32-bit words of each row of a float matrix, as uint64 columns."""
    X = np.ascontiguousarray(X)
    words = X.view(np.uint32).reshape(len(X), X.shape[1] * X.itemsize // 4)
    return [words[:, f].astype(np.uint64) for f in range(words.shape[1])]


class MultisetDigest:
    """Sum of element hashes in four 64-bit lanes, with a count; see the module docstring."""

    def __init__(self, scheme: str) -> None:
        self.scheme = scheme
        self.state = np.zeros(4, dtype=np.uint64)
        self.count = 0

    def add(self, hashes: np.ndarray) -> None:
        with np.errstate(over="ignore"):
            self.state += hashes.sum(axis=0, dtype=np.uint64)
        self.count += len(hashes)

    def remove(self, hashes: np.ndarray) -> None:
        with np.errstate(over="ignore"):
            self.state -= hashes.sum(axis=0, dtype=np.uint64)
        self.count -= len(hashes)

    def hexdigest(self) -> str:
        h = hashlib.sha256(self.scheme.encode() + b"\n")
        h.update(self.state.astype("<u8").tobytes())
        h.update(int(self.count).to_bytes(8, "little"))
        return h.hexdigest()


__all__ = ["MultisetDigest", "element_hashes", "id_hashes", "row_hashes", "row_words"]
