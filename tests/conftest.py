"""Shared fixtures: seeded randomness and tiny data sets with known structure."""

from __future__ import annotations

import numpy as np
import pytest

from recforget import Interactions
from recforget.data.generators import random_ratings


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(42)


@pytest.fixture
def small_ratings() -> np.ndarray:
    return random_ratings(30, 20, 0.3, seed=7)


@pytest.fixture
def small_data(small_ratings) -> Interactions:
    return Interactions.from_csr(small_ratings)
