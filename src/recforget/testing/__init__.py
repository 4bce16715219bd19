"""Reusable behavioural contracts for models and unlearning methods (pytest mixins)."""

from recforget.testing.contracts import UnlearnerContract

__all__ = ["UnlearnerContract"]
