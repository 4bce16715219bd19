"""The method registry: which unlearning implementation serves which model kind.

Method modules register themselves here (``@register("unlearn-als", "als")``); the entry
point :func:`recforget.forget` looks them up. Neither imports the other.
"""

from __future__ import annotations

import importlib
import sys
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


# the modules that register the methods of each model kind, imported by name on first use (the
# neural ones need torch, so an ALS-only process never imports it); a module registers itself,
# so the registry imports none of them
_PROVIDERS: dict[str, tuple[str, ...]] = {
    "als": ("recforget.unlearn.als",),
    "ncf": ("recforget.unlearn.ncf",),
    "sharded": ("recforget.unlearn.sharded",),
}


def _load_methods(kind: str | None = None) -> None:
    kinds = list(_PROVIDERS) if kind is None else [kind]
    for name in (m for k in kinds for m in _PROVIDERS.get(k, ())):
        if name in sys.modules:
            continue
        try:
            importlib.import_module(name)
        except ImportError as exc:  # torch missing: the neural methods are unavailable
            if exc.name != "torch":
                raise


def methods(kind: str | None = None) -> list[str]:
    """Names of the registered methods (for one model kind, or all)."""
    _load_methods(kind)
    return sorted(m for m, impls in _METHODS.items() if kind is None or kind in impls)


def model_kind(model: Recommender) -> str:
    """The registry key of a model: "als", "ncf", or its lower-cased class name."""
    from recforget.models.als import ALS

    if isinstance(model, ALS):
        return "als"
    return getattr(model, "kind", type(model).__name__.lower())


def lookup(method: str, model: Recommender) -> UnlearnFn:
    """The implementation of ``method`` for ``model``'s kind, or a ValueError naming the choices."""
    kind = model_kind(model)
    _load_methods(kind)
    if method not in _METHODS or kind not in _METHODS[method]:
        raise ValueError(
            f"unknown method {method!r} for a {kind} model; choose from {methods(kind)}"
        )
    return _METHODS[method][kind]


__all__ = ["UnlearnFn", "lookup", "methods", "model_kind", "register"]
