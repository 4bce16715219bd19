"""The method registry: which unlearning implementation serves which model kind.

Method modules register themselves here (``@register("unlearn-als", "als")``); the entry
point :func:`recforget.forget` looks them up. Neither imports the other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from recforget.models.base import Recommender

# method name -> model kind -> implementation(model, removal, **options) -> (model, info)
UnlearnFn = Callable[..., tuple[Recommender, dict[str, Any]]]
_METHODS: dict[str, dict[str, UnlearnFn]] = {}


def register(method: str, kind: str) -> Callable[[UnlearnFn], UnlearnFn]:
    """Register an unlearning implementation for models of ``kind`` ("als", "ncf")."""

    def deco(fn: UnlearnFn) -> UnlearnFn:
        _METHODS.setdefault(method, {})[kind] = fn
        return fn

    return deco


def _load_methods() -> None:
    from recforget.unlearn import als, sharded  # noqa: F401  (registers the methods)

    try:
        from recforget.unlearn import ncf  # noqa: F401
    except ImportError:  # torch missing: neural methods unavailable
        pass


def methods(kind: str | None = None) -> list[str]:
    """Names of the registered methods (for one model kind, or all)."""
    _load_methods()
    return sorted(m for m, impls in _METHODS.items() if kind is None or kind in impls)


def model_kind(model: Recommender) -> str:
    """The registry key of a model: "als", "ncf", or its lower-cased class name."""
    from recforget.models.als import ALS

    if isinstance(model, ALS):
        return "als"
    return getattr(model, "kind", type(model).__name__.lower())


def lookup(method: str, model: Recommender) -> UnlearnFn:
    """The implementation of ``method`` for ``model``'s kind, or a ValueError naming the choices."""
    _load_methods()
    kind = model_kind(model)
    if method not in _METHODS or kind not in _METHODS[method]:
        raise ValueError(
            f"unknown method {method!r} for a {kind} model; choose from {methods(kind)}"
        )
    return _METHODS[method][kind]


__all__ = ["UnlearnFn", "lookup", "methods", "model_kind", "register"]
