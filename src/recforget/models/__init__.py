"""Recommender models: ALS (numpy/numba) and neural models (optional torch extra).

``NCF``, ``GMF``, ``MLP`` and ``NeuMF`` load lazily so that ``import recforget`` never
imports torch.
"""

from __future__ import annotations

from typing import Any

from recforget.models.als import ALS
from recforget.models.base import NotFittedError, Recommender, clone

_NEURAL = ("NCF", "GMF", "MLP", "NeuMF")

__all__ = ["ALS", "GMF", "MLP", "NCF", "NeuMF", "NotFittedError", "Recommender", "clone"]


def __getattr__(name: str) -> Any:
    if name in _NEURAL:
        from recforget.models import ncf

        return getattr(ncf, name)
    raise AttributeError(f"module 'recforget.models' has no attribute {name!r}")
