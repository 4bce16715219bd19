import numpy as np
import pytest

from recforget.kernels.negatives import merge_negatives, merge_negatives_reference


@pytest.mark.parametrize("seed", range(5))
def test_merge_negatives_matches_sorting(seed):
    rng = np.random.default_rng(seed)
    n_users = 7
    old_items, old_keys, new_items, new_keys, need = [], [], [], [], []
    for _ in range(n_users):
        n_old, n_new = int(rng.integers(0, 12)), int(rng.integers(0, 4))
        items = rng.choice(100, n_old + n_new, replace=False)
        ko = np.sort(rng.integers(0, 50, n_old)).astype(np.uint64)  # ties with the new keys
        kn = np.sort(rng.integers(0, 50, n_new)).astype(np.uint64)
        old_items.append(items[:n_old])
        old_keys.append(ko)
        new_items.append(items[n_old:])
        new_keys.append(kn)
        need.append(int(rng.integers(0, n_old + 1)))
    ptr = lambda parts: np.r_[0, np.cumsum([len(p) for p in parts])].astype(np.int64)  # noqa: E731
    out_ptr = np.r_[0, np.cumsum(need)[:-1]].astype(np.int64)
    out = np.full(sum(need), -1, dtype=np.int64)
    cap = sum(map(len, old_items)) + sum(map(len, new_items))
    dropped, dropped_k = np.empty(cap, np.int64), np.empty(cap, np.int64)
    added, added_k = np.empty(cap, np.int64), np.empty(cap, np.int64)
    nd, na = merge_negatives(
        np.concatenate(old_items).astype(np.int64),
        np.concatenate(old_keys),
        ptr(old_items),
        np.concatenate(new_items).astype(np.int64),
        np.concatenate(new_keys),
        ptr(new_items),
        np.array(need, dtype=np.int64),
        out,
        out_ptr,
        dropped,
        dropped_k,
        added,
        added_k,
    )
    for k in range(n_users):
        merged, gone, taken = merge_negatives_reference(
            old_items[k].tolist(),
            old_keys[k].tolist(),
            new_items[k].tolist(),
            new_keys[k].tolist(),
            need[k],
        )
        assert out[out_ptr[k] : out_ptr[k] + need[k]].tolist() == merged
        assert dropped[:nd][dropped_k[:nd] == k].tolist() == gone
        assert added[:na][added_k[:na] == k].tolist() == taken
