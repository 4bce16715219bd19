"""Forgetting: deletion requests, the ``unlearn`` entry point and the methods behind it."""

from recforget.unlearn.api import UnlearnResult, methods, unlearn
from recforget.unlearn.requests import DeletionRequest

__all__ = ["DeletionRequest", "UnlearnResult", "methods", "unlearn"]
