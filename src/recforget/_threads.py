"""BLAS thread control.

The ALS kernels run their row loops in parallel with numba and call BLAS only for small
products (``k x k`` Grams, ``n x k @ k x k``). A multi-threaded BLAS adds nothing there and,
when the cores are busy, its spinning threads make a 5 ms product take hundreds of
milliseconds. Numerical code paths therefore run under one BLAS thread.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

from threadpoolctl import ThreadpoolController

F = TypeVar("F", bound=Callable)
_CONTROLLER: ThreadpoolController | None = None


def one_blas_thread():
    """Context manager limiting BLAS to one thread (the library scan is done once)."""
    global _CONTROLLER
    if _CONTROLLER is None:
        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1, user_api="blas")


def single_blas(fn: F) -> F:
    """Run ``fn`` with BLAS limited to one thread."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with one_blas_thread():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
