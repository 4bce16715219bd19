"""One-time compilation, kept out of every timed section.

The numba kernels compile on their first call (and cache the machine code on disk, so only a
fresh checkout pays). A benchmark that timed that first call would charge the compilation to
whichever method happened to run first: on a fresh clone the first ``make demo`` showed
Unlearn-ALS slower than a retrain. :func:`warm_up` runs the same model type with the same
parameters, and every method with its options, once on a tiny seeded problem, untimed by the
caller's clock, so the timed sections that follow see compiled kernels; it returns the seconds
it took, which benchmarks report as ``compile_seconds``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from recforget.data.interactions import Interactions
from recforget.models.base import Recommender, clone
from recforget.unlearn import DeletionRequest, forget
from recforget.unlearn.registry import methods as registered
from recforget.unlearn.registry import model_kind

_SHORT = {"iterations": 2, "epochs": 1}  # a fit that reaches every kernel, and no further


def tiny_task(random_state: int = 0) -> Interactions:
    """A small seeded implicit-feedback problem (24 users x 16 items) for warm-ups."""
    rng = np.random.default_rng(random_state)
    R = (rng.random((24, 16)) < 0.3).astype(np.float64)
    R[np.arange(24), rng.integers(0, 16, 24)] = 1.0
    return Interactions.from_csr(R)


def warm_up(
    model: Recommender,
    methods: Sequence[str] = (),
    method_options: dict[str, dict[str, Any]] | None = None,
) -> float:
    """Compile what fitting ``model`` and running ``methods`` on it call; return the seconds.

    ``model`` is only read: a clone with the same parameters (but a short fit) is trained on
    :func:`tiny_task`, then each method forgets a request with pairs and a whole user.
    """
    start = time.perf_counter()
    data = tiny_task()
    params = model.get_params()
    twin = clone(model).set_params(**{k: v for k, v in _SHORT.items() if k in params})
    twin.fit(data)
    pairs = [(data.users.ids[0], data.items.ids[data.indices[data.indptr[0]]])]
    request = DeletionRequest(pairs=pairs, users=[data.users.ids[1]])
    options = method_options or {}
    known = registered(model_kind(twin))  # others (partition baselines) run their own models
    for method in methods:
        if method in known:
            forget(twin, request, method, **options.get(method, {}))
    return time.perf_counter() - start


__all__ = ["tiny_task", "warm_up"]
