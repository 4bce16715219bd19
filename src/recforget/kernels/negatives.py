"""Updating a user's key-ordered negative sample after some of its positives are deleted."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def merge_negatives(
    old_items: np.ndarray,
    old_keys: np.ndarray,
    old_ptr: np.ndarray,
    new_items: np.ndarray,
    new_keys: np.ndarray,
    new_ptr: np.ndarray,
    need: np.ndarray,
    out: np.ndarray,
    out_ptr: np.ndarray,
    dropped: np.ndarray,
    dropped_user: np.ndarray,
    added: np.ndarray,
    added_user: np.ndarray,
) -> tuple[int, int]:
    """Per user, the ``need[k]`` smallest-key items of an old list merged with new ones.

    User ``k``'s old list ``old_items[old_ptr[k]:old_ptr[k+1]]`` and the items that became
    eligible ``new_items[new_ptr[k]:new_ptr[k+1]]`` are each sorted by their keys (ties: old
    first), and ``need[k]`` is at most the old list's length. The merged prefix goes to
    ``out[out_ptr[k]:out_ptr[k] + need[k]]``; the old items left out are appended to
    ``dropped`` and the new items taken to ``added`` (``k`` to ``dropped_user`` and
    ``added_user``).

    Returns
    -------
    n_dropped, n_added : int
        How much of ``dropped`` and ``added`` was written.
    """
    nd = 0
    na = 0
    for k in range(len(need)):
        a, a_end = old_ptr[k], old_ptr[k + 1]
        b, b_end = new_ptr[k], new_ptr[k + 1]
        o = out_ptr[k]
        for _ in range(need[k]):
            if b < b_end and (a >= a_end or new_keys[b] < old_keys[a]):
                out[o] = new_items[b]
                added[na] = new_items[b]
                added_user[na] = k
                na += 1
                b += 1
            else:
                out[o] = old_items[a]
                a += 1
            o += 1
        while a < a_end:
            dropped[nd] = old_items[a]
            dropped_user[nd] = k
            nd += 1
            a += 1
    return nd, na


def merge_negatives_reference(
    old_items: list, old_keys: list, new_items: list, new_keys: list, need: int
) -> tuple[list, list, list]:
    """One user, by sorting: (merged prefix, old items left out, new items taken)."""
    pool = sorted(
        [(k, 0, j, i) for j, (k, i) in enumerate(zip(old_keys, old_items, strict=True))]
        + [(k, 1, j, i) for j, (k, i) in enumerate(zip(new_keys, new_items, strict=True))]
    )
    taken = pool[:need]
    merged = [i for *_, i in taken]
    dropped = [i for _, src, _, i in pool[need:] if src == 0]
    added = [i for _, src, _, i in taken if src == 1]
    return merged, dropped, added
