"""RecEraser's attention aggregator over shard models, trained with the BPR loss (torch).

For user ``u`` with shard embeddings ``e_us`` (one per shard model),
``a_us = softmax_s(h^T tanh(W e_us + b))`` and the ensemble score is ``sum_s a_us s_s(u, i)``.
The shard models are fixed; only ``W, b, h`` are learned, by minimising

.. math::
    -\\frac{1}{n} \\sum_{(u,i,j)} \\log \\sigma\\Big(\\sum_s a_{us} (s_s(u,i) - s_s(u,j))\\Big)
        + \\rho (\\|W\\|^2 + \\|h\\|^2)

over ``attention_samples`` triples: an observed entry ``(u, i)`` of the data and an item ``j``
drawn uniformly among the items ``u`` has no entry for. Everything is seeded.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recforget.data.interactions import Interactions
from recforget.models.base import Recommender


def user_embeddings(model: Recommender, rows: np.ndarray | None = None) -> np.ndarray:
    """A shard model's user embeddings (float64): ALS factors or NCF embedding tables."""
    if hasattr(model, "user_factors_"):
        E = np.asarray(model.user_factors_, dtype=np.float64)
    elif hasattr(model, "module_"):
        import torch

        with torch.no_grad():
            E = torch.cat([t.weight for t in model.module_.user_embeddings], dim=1)
            E = E.detach().cpu().double().numpy()
    else:
        raise TypeError(f"no user embeddings in a {type(model).__name__}")
    return E if rows is None else E[rows]


def training_triples(
    data: Interactions, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(u, i, j)``: ``n`` distinct entries (all if fewer) and one unseen item each."""
    pick = np.sort(rng.choice(data.nnz, size=min(n, data.nnz), replace=False))
    u = data.row_of_entry[pick].astype(np.int64)
    i = data.indices[pick].astype(np.int64)
    j = rng.integers(0, data.n_items, size=len(u))
    for _ in range(50):  # rejection: redraw the items the user has an entry for
        bad = np.flatnonzero(data.entry_positions(u, j) >= 0)
        if len(bad) == 0:
            break
        j[bad] = rng.integers(0, data.n_items, size=len(bad))
    return u, i, j


def fit_attention(ensemble: Any, data: Interactions, *, seed: int) -> dict[str, np.ndarray]:
    """Learn ``W, b, h`` for ``ensemble``'s fitted shards on ``data`` (see the module docstring)."""
    import torch

    rng = np.random.default_rng([seed, 0xA77])
    u, i, j = training_triples(data, ensemble.attention_samples, rng)
    users, inv = np.unique(u, return_inverse=True)
    # score differences of every shard on every triple, fixed during training
    D = np.stack([m._score_pairs(u, i) - m._score_pairs(u, j) for m in ensemble.shards_], 1)
    E = np.stack([user_embeddings(m, users) for m in ensemble.shards_], 1)  # (n_u, S, d)
    scale = float(np.sqrt(np.mean(E**2))) or 1.0
    gen = torch.Generator().manual_seed(int(seed) % (2**63))
    d, a = E.shape[2], int(ensemble.attention_dim)
    W = (torch.randn(d, a, generator=gen, dtype=torch.float64) / np.sqrt(d)).requires_grad_()
    b = torch.zeros(a, dtype=torch.float64, requires_grad=True)
    h = (torch.randn(a, generator=gen, dtype=torch.float64) / np.sqrt(a)).requires_grad_()
    Et = torch.from_numpy(E / scale)
    Dt = torch.from_numpy(D)
    invt = torch.from_numpy(inv.astype(np.int64))
    opt = torch.optim.Adam([W, b, h], lr=float(ensemble.attention_lr))
    batch = 8192
    n = len(u)
    for _ in range(int(ensemble.attention_epochs)):
        order = torch.from_numpy(rng.permutation(n))
        for start in range(0, n, batch):
            idx = order[start : start + batch]
            alpha = torch.softmax(torch.tanh(Et @ W + b) @ h, dim=1)  # (n_users, S), per user
            margin = (alpha[invt[idx]] * Dt[idx]).sum(dim=1)
            loss = -torch.nn.functional.logsigmoid(margin).mean()
            loss = loss + float(ensemble.attention_reg) * ((W**2).sum() + (h**2).sum())
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        return {
            "W": (W / scale).numpy().copy(),  # folds the embedding scale into W
            "b": b.numpy().copy(),
            "h": h.numpy().copy(),
        }


__all__ = ["fit_attention", "training_triples"]
