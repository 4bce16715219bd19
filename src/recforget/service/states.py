"""The deletion request's state machine: the states and the moves allowed between them.

Every write of a request's state goes through :func:`recforget.service.ledger.move`, which
calls :func:`check_move` first. The table is also written out in ``docs/service.md``.
"""

from __future__ import annotations

from enum import Enum


class State(str, Enum):
    """Where a deletion request stands."""

    RECEIVED = "RECEIVED"  # request row committed (then acknowledged)
    DATA_DELETED = "DATA_DELETED"  # rows gone from the store, subjects suppressed
    BUILDING = "BUILDING"  # claimed by a worker under a lease, unlearning pass running
    STAGED = "STAGED"  # new model version written, fsynced, renamed, registered
    COMPLETED = "COMPLETED"  # serving pointer switched, receipt written (terminal)
    REJECTED = "REJECTED"  # unknown subject or legal hold, with the reason (terminal)
    FAILED = "FAILED"  # retried up to the limit, surfaced to the operator


ALLOWED: dict[State, frozenset[State]] = {
    State.RECEIVED: frozenset({State.DATA_DELETED, State.REJECTED}),
    State.DATA_DELETED: frozenset({State.BUILDING}),
    # back to DATA_DELETED: the lease was lost or the pass failed and will be retried
    State.BUILDING: frozenset({State.STAGED, State.DATA_DELETED, State.FAILED}),
    State.STAGED: frozenset({State.COMPLETED, State.DATA_DELETED, State.FAILED}),
    State.FAILED: frozenset({State.DATA_DELETED}),  # operator retry, or a full retrain
    State.COMPLETED: frozenset(),
    State.REJECTED: frozenset(),
}

TERMINAL = frozenset(s for s, moves in ALLOWED.items() if not moves)
PENDING = frozenset({State.DATA_DELETED, State.BUILDING, State.STAGED, State.FAILED})


class IllegalTransition(ValueError):
    """A state change the table does not allow."""

    def __init__(self, old: State, new: State) -> None:
        allowed = ", ".join(sorted(s.value for s in ALLOWED[old])) or "none (terminal)"
        super().__init__(f"illegal move {old.value} -> {new.value}; allowed from there: {allowed}")
        self.old, self.new = old, new


def check_move(old: State | str, new: State | str) -> tuple[State, State]:
    """Both states as :class:`State`; raises :class:`IllegalTransition` for a forbidden move."""
    old, new = State(old), State(new)
    if new not in ALLOWED[old]:
        raise IllegalTransition(old, new)
    return old, new


__all__ = ["ALLOWED", "PENDING", "TERMINAL", "IllegalTransition", "State", "check_move"]
