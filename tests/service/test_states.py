"""The state machine table: allowed moves pass, every other move is refused."""

from __future__ import annotations

import itertools

import pytest

from recforget.service.states import ALLOWED, TERMINAL, IllegalTransition, State, check_move


def test_table_covers_every_state_and_the_happy_path():
    assert set(ALLOWED) == set(State)
    path = [State.RECEIVED, State.DATA_DELETED, State.BUILDING, State.STAGED, State.COMPLETED]
    for old, new in itertools.pairwise(path):
        assert check_move(old, new) == (old, new)
    assert TERMINAL == {State.COMPLETED, State.REJECTED}


@pytest.mark.parametrize("old", list(State))
@pytest.mark.parametrize("new", list(State))
def test_every_move_not_in_the_table_is_refused(old, new):
    if new in ALLOWED[old]:
        assert check_move(old.value, new.value) == (old, new)
    else:
        with pytest.raises(IllegalTransition, match=f"{old.value} -> {new.value}"):
            check_move(old, new)


def test_unknown_state_is_an_error():
    with pytest.raises(ValueError):
        check_move("RECEIVED", "DONE")
