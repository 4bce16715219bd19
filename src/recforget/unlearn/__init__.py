"""Forgetting: deletion requests, the :func:`forget` entry point and the methods behind it.

The ALS methods live in :mod:`recforget.unlearn.als`, the neural ones in the subpackage
:mod:`recforget.unlearn.ncf`; both register themselves in :mod:`recforget.unlearn.registry`.
"""

from __future__ import annotations

import sys
import types
import warnings
from typing import Any

from recforget.unlearn.api import UnlearnResult, forget
from recforget.unlearn.registry import methods
from recforget.unlearn.requests import DeletionRequest

__all__ = ["DeletionRequest", "UnlearnResult", "forget", "methods"]


class _Package(types.ModuleType):
    """This package, callable for one release: ``recforget.unlearn(model, data, request, ...)``.

    Before 0.2 the entry point was a function named ``unlearn`` that shadowed this package.
    Old calls still work, with a FutureWarning that names the new spelling.
    """

    def __call__(self, model: Any, data: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        warnings.warn(
            "recforget.unlearn(model, data, request, method) is now "
            "recforget.forget(model, request, method, data=data); "
            "the old spelling will be removed in 0.3",
            FutureWarning,
            stacklevel=2,
        )
        return forget(model, request, *args, data=data, **kwargs)


sys.modules[__name__].__class__ = _Package
