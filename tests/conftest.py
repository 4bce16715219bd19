"""Shared fixtures: seeded randomness and tiny data sets with known structure."""

from __future__ import annotations

import numpy as np
import pytest

from recforget import Interactions


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(42)


def random_ratings(m: int, n: int, density: float, seed: int) -> np.ndarray:
    """Dense m x n matrix of integer ratings 1..5 on a random support (0 = unobserved)."""
    r = np.random.default_rng(seed)
    R = (r.random((m, n)) < density) * r.integers(1, 6, (m, n))
    R[np.arange(m), r.integers(0, n, m)] = r.integers(1, 6, m)  # every user has one rating
    return R.astype(np.float64)


@pytest.fixture
def small_ratings() -> np.ndarray:
    return random_ratings(30, 20, 0.3, seed=7)


@pytest.fixture
def small_data(small_ratings) -> Interactions:
    return Interactions.from_csr(small_ratings)
