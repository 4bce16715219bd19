"""Vocabulary lookups: the dict path for a few ids agrees with the vectorised index's."""

from __future__ import annotations

import numpy as np
import pytest

from recforget.data.errors import UnknownIdError
from recforget.data.vocab import Vocabulary


@pytest.mark.parametrize(
    "ids, queries",
    [
        (np.arange(0, 400, 3), [0, 3, "6", 7, 399, "x", 3.0, 3.5, -3]),
        (np.array([f"u{i}" for i in range(300)]), ["u0", "u299", "u300", 5, "U1", "u17"]),
    ],
)
def test_small_and_large_lookups_agree(ids, queries):
    vocab = Vocabulary(ids, name="user")
    small = vocab.index(queries, missing="ignore")  # at most SMALL ids: the dict
    assert len(queries) <= Vocabulary.SMALL
    padded = list(queries) * (Vocabulary.SMALL // len(queries) + 1)  # over SMALL: the index
    large = vocab.index(padded, missing="ignore")
    assert np.array_equal(large[: len(queries)], small)
    for k, q in enumerate(queries):  # each alone against a plain scan of the ids
        hits = [k for k, v in enumerate(ids.tolist()) if str(v) == str(q)]
        if isinstance(q, float) and q.is_integer():
            hits = [k for k, v in enumerate(ids.tolist()) if v == q]
        assert vocab.index([q], missing="ignore")[0] == (hits[0] if hits else -1)
        assert small[k] == (hits[0] if hits else -1)  # whatever else the query holds
    with pytest.raises(UnknownIdError):
        vocab.index(queries)
    assert vocab.ids is vocab.ids and not vocab.ids.flags.writeable  # cached, read-only


def test_one_unknown_id_leaves_the_others_found():
    """An integer vocabulary asked for known ids beside one that is not an integer finds the
    known ones and reports only the other (a request with ``missing="ignore"`` must not skip
    them)."""
    vocab = Vocabulary(np.array([7, 9, 2**62 + 1]), name="user")
    idx = vocab.index(["7", 9, "x", str(2**62 + 1), "9.0", True, 2**70], missing="ignore")
    assert idx.tolist() == [0, 1, -1, 2, 1, -1, -1]
    with pytest.raises(UnknownIdError) as info:
        vocab.index([7, "x", 9])
    assert "x" in str(info.value) and "'7'" not in str(info.value)
    assert vocab.unknown([7, "x", 9]) == ["x"]
