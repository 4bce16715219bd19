"""The incremental multiset digests' element hashes against a plain numpy splitmix64."""

from __future__ import annotations

import numpy as np
import pytest

from recforget._digest import LANES, MultisetDigest, element_hashes, row_hashes, row_words


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, elementwise, written out with numpy's wrapping uint64."""
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _reference(*columns: np.ndarray) -> np.ndarray:
    h = np.broadcast_to(LANES, (len(columns[0]), 4)).copy()
    for c in columns:
        h = _mix(h ^ np.asarray(c, dtype=np.uint64)[:, None])
    return h


def test_known_value_of_splitmix64():
    # splitmix64's first output from seed 0 is 0xE220A8397B1DCDAF (the published sequence)
    assert _mix(np.zeros(1, np.uint64))[0] == np.uint64(0xE220A8397B1DCDAF)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_hashes_equal_the_reference(dtype):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(37, 9)).astype(dtype)
    tag = np.full(37, 2, np.uint64)
    ids = rng.integers(0, 2**63, 37).astype(np.uint64)
    want = _reference(tag, ids, *row_words(X))
    assert np.array_equal(row_hashes(X, tag, ids), want)
    assert np.array_equal(element_hashes(tag, ids, *row_words(X)), want)


def test_hashes_see_every_word_and_its_position():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(5, 6)).astype(np.float32)
    base = row_hashes(X, np.arange(5, dtype=np.uint64))
    Y = X.copy()
    Y[3, 5] = np.nextafter(Y[3, 5], np.float32(np.inf))  # one bit of one word
    changed = row_hashes(Y, np.arange(5, dtype=np.uint64))
    assert (changed[3] != base[3]).all()
    assert np.array_equal(changed[[0, 1, 2, 4]], base[[0, 1, 2, 4]])
    swapped = row_hashes(X[:, ::-1], np.arange(5, dtype=np.uint64))
    assert (swapped != base).all()


def test_multiset_digest_is_order_free_and_removes_exactly():
    rng = np.random.default_rng(2)
    h = element_hashes(rng.integers(0, 2**63, 50).astype(np.uint64))
    a, b = MultisetDigest("s"), MultisetDigest("s")
    a.add(h)
    b.add(h[::-1][:30])
    b.add(h[::-1][30:])
    assert a.hexdigest() == b.hexdigest()
    a.remove(h[:10])
    c = MultisetDigest("s")
    c.add(h[10:])
    assert a.hexdigest() == c.hexdigest() and a.count == 40
