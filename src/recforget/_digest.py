"""Incremental multiset digests: fingerprints that follow small changes at small cost.

A stream of deletions needs a fingerprint of the data and a hash of the model after every
request; recomputing either from scratch costs ``O(nnz)`` or ``O(n k)``. :class:`MultisetDigest`
is an additive multiset hash (Clarke, Devadas, van Dijk, Gassend & Suh, "Incremental Multiset
Hash Functions and Their Application to Memory Integrity Checking", 2003): the digest of a
multiset is the sum, in four independent 64-bit lanes, of a hash of each element, so adding or
removing an element costs one element hash. Elements are keyed by raw-id hashes (blake2b of
the id's text), so the digest depends on content, not on layout or index order.

The per-element mixing is splitmix64 (vectorised numpy), which is fast but not a cryptographic
hash: these digests detect accidental divergence and let two parties compare states cheaply;
for a cryptographic commitment use :meth:`Interactions.fingerprint` and ``ALS.model_hash``
(``O(size)``, available at any time).
"""

from __future__ import annotations

import hashlib

import numpy as np

LANES = np.array(
    [0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93],
    dtype=np.uint64,
)


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, elementwise on uint64 (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


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
    h = np.broadcast_to(LANES, (n, 4)).copy()
    for c in columns:
        h = _mix(h ^ np.asarray(c, dtype=np.uint64)[:, None])
    return h


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


__all__ = ["MultisetDigest", "element_hashes", "id_hashes", "row_words"]
