"""Seeded randomness (SPEC 7): every stochastic API goes through :func:`check_random_state`."""

from __future__ import annotations

import numpy as np

RandomState = "int | np.random.Generator | np.random.SeedSequence | None"


def check_random_state(random_state: int | np.random.Generator | None) -> np.random.Generator:
    """Turn ``random_state`` into a :class:`numpy.random.Generator`.

    ``None`` gives fresh OS entropy (not reproducible); an int or SeedSequence gives a
    reproducible generator; a Generator is returned as is (shared state).
    """
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None or isinstance(random_state, (int, np.integer, np.random.SeedSequence)):
        return np.random.default_rng(random_state)
    raise TypeError(
        f"random_state must be None, an int or a numpy Generator, got {type(random_state).__name__}"
    )


def resolve_seed(random_state: int | np.random.Generator | None) -> int:
    """Return a concrete integer seed for ``random_state`` so that it can be recorded.

    An int is kept; ``None`` or a Generator draws one (from entropy or from the generator).
    """
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
        return int(random_state)
    return int(check_random_state(random_state).integers(0, 2**31 - 1))
