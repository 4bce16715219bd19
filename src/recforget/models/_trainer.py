"""Negative sampling and the epoch-wise NCF trainer (``train_epoch() -> dict``, ``finalize()``).

Every stored entry of an :class:`~recforget.data.interactions.Interactions` is a positive
(implicit feedback: the value is ignored). A negative of user ``u`` is an item that is not a
positive of ``u`` in the *exclusion* data (by default the training data itself).

Fitting, fine-tuning on retained data and gradient ascent on a forget set all run the same
:class:`NCFTrainer`, built on different data.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recforget._rng import check_random_state
from recforget.data.interactions import Interactions

_EXACT_AFTER = 64  # rejection rounds before the remaining collisions are drawn exactly
SCHEDULES = ("constant", "cosine")  # step-size schedules of NCFTrainer


def _pair_keys(data: Interactions) -> np.ndarray:
    """Sorted int64 keys ``u * n_items + i`` of the entries (CSR order is sorted by (u, i))."""
    return data.row_of_entry.astype(np.int64) * data.n_items + data.indices


def _is_positive(keys: np.ndarray, u: np.ndarray, i: np.ndarray, n_items: int) -> np.ndarray:
    if len(keys) == 0:
        return np.zeros(len(u), dtype=bool)
    q = u * n_items + i
    pos = np.searchsorted(keys, q)
    return keys[np.minimum(pos, len(keys) - 1)] == q


def sample_negatives(
    data: Interactions,
    n_neg: int,
    rng: int | np.random.Generator | None = None,
    *,
    exclude: Interactions | None = None,
    keys: np.ndarray | None = None,
) -> np.ndarray:
    """``n_neg`` negative item indices per positive of ``data``, none a positive of ``exclude``.

    Uniform over each user's non-positive items, drawn by vectorised rejection sampling: draw
    uniformly, look the pairs up in the sorted entry keys with :func:`numpy.searchsorted`, redraw
    the collisions (after a few rounds the rest are drawn exactly from the complement).

    Parameters
    ----------
    data : Interactions
        The positives; entry ``e`` belongs to user ``data.row_of_entry[e]``.
    n_neg : int
    rng : int, Generator or None
    exclude : Interactions, optional
        Whose positives are never negatives (same shape as ``data``); default ``data``.
    keys : ndarray, optional
        Pre-computed sorted keys of ``exclude`` (internal cache).

    Returns
    -------
    negatives : int64 ndarray of shape (data.nnz, n_neg)
        Row ``e`` holds the negatives of entry ``e``, aligned with ``data.indices``.
    """
    rng = check_random_state(rng)
    exclude = data if exclude is None else exclude
    if exclude.shape != data.shape:
        raise ValueError(f"exclude has shape {exclude.shape}, the data {data.shape}")
    n_items = data.n_items
    if keys is None:
        keys = _pair_keys(exclude)
    users = np.repeat(data.row_of_entry.astype(np.int64), n_neg)
    if len(users) == 0:
        return np.empty((data.nnz, n_neg), dtype=np.int64)
    full = exclude.user_counts()[users] >= n_items
    if full.any():
        u = int(users[np.flatnonzero(full)[0]])
        raise ValueError(f"user {data.users.ids[u]!r} has every item as a positive: no negatives")
    items = rng.integers(0, n_items, size=len(users), dtype=np.int64)
    todo = np.flatnonzero(_is_positive(keys, users, items, n_items))
    rounds = 0
    while len(todo) and rounds < _EXACT_AFTER:
        items[todo] = rng.integers(0, n_items, size=len(todo), dtype=np.int64)
        todo = todo[_is_positive(keys, users[todo], items[todo], n_items)]
        rounds += 1
    for k in todo:  # users with almost every item as a positive: draw from the complement
        u = users[k]
        seen = exclude.indices[exclude.indptr[u] : exclude.indptr[u + 1]]
        items[k] = rng.choice(np.setdiff1d(np.arange(n_items), seen))
    return items.reshape(data.nnz, n_neg)


def training_pairs(
    data: Interactions, negatives: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(users, items, labels)`` of the positives followed by their negatives.

    ``negatives`` is the (nnz, n_neg) array of :func:`sample_negatives`; labels are float32
    1 (positives) and 0 (negatives).
    """
    negatives = np.asarray(negatives, dtype=np.int64)
    if negatives.ndim != 2 or negatives.shape[0] != data.nnz:
        raise ValueError(f"negatives must have shape ({data.nnz}, n_neg), got {negatives.shape}")
    rows = data.row_of_entry.astype(np.int64)
    n_neg = negatives.shape[1]
    users = np.concatenate([rows, np.repeat(rows, n_neg)])
    items = np.concatenate([data.indices.astype(np.int64), negatives.ravel()])
    labels = np.concatenate([np.ones(data.nnz, np.float32), np.zeros(data.nnz * n_neg, np.float32)])
    return users, items, labels


class NCFTrainer:
    """AdamW on binary cross-entropy with fresh negatives every epoch.

    Each epoch draws ``negatives`` negatives per positive of ``data`` (never a positive of
    ``exclude``), shuffles positives and negatives together and takes one AdamW step per batch
    on the mean of

    .. math:: -y \\log \\sigma(z_{ui}) - (1 - y) \\log (1 - \\sigma(z_{ui})).

    Parameters
    ----------
    module : NCFModule
        Trained in place, on the device it lives on.
    data : Interactions
        Positives to train on (any stored entry; values ignored). Same shape as the module.
    negatives, batch_size, lr, weight_decay : see :class:`~recforget.models.ncf.NCF`
    exclude : Interactions, optional
        Whose positives are never sampled as negatives; default ``data``.
    ascent : bool
        Step along the gradient instead of against it (gradient ascent on a forget set); the
        reported loss is still the BCE.
    parameters : iterable of Parameter, optional
        What to optimise; default every parameter of ``module``.
    random_state : int, Generator or None
        Drives negative sampling and shuffling (the only randomness of training).
    schedule : {"constant", "cosine"}
        Step size per batch: ``lr`` throughout, or cosine-annealed from ``lr`` to 0 over
        ``total_epochs`` epochs (the last batch of the last epoch steps with almost 0).
    total_epochs : int, optional
        Length of the cosine schedule; required with ``schedule="cosine"``.
    """

    def __init__(
        self,
        module: nn.Module,
        data: Interactions,
        *,
        negatives: int = 4,
        batch_size: int = 4096,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        exclude: Interactions | None = None,
        ascent: bool = False,
        parameters: Iterable[nn.Parameter] | None = None,
        random_state: int | np.random.Generator | None = None,
        schedule: str = "constant",
        total_epochs: int | None = None,
    ) -> None:
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
        if schedule == "cosine" and (total_epochs is None or total_epochs < 1):
            raise ValueError(f"schedule='cosine' needs total_epochs >= 1, got {total_epochs!r}")
        n_users, n_items = module.n_users, module.n_items  # type: ignore[attr-defined]
        if data.shape != (n_users, n_items):
            raise ValueError(f"data has shape {data.shape}, the module {(n_users, n_items)}")
        self.module = module
        self.data = data
        self.exclude = data if exclude is None else exclude
        self.negatives = int(negatives)
        self.batch_size = int(batch_size)
        self.ascent = bool(ascent)
        self.rng = check_random_state(random_state)
        self.device = next(module.parameters()).device
        params = list(module.parameters() if parameters is None else parameters)
        self.optimizer: torch.optim.Optimizer | None = torch.optim.AdamW(
            params, lr=lr, weight_decay=weight_decay
        )
        self.lr = float(lr)
        self.schedule = schedule
        self.total_epochs = total_epochs
        self._keys = _pair_keys(self.exclude)
        self.epochs_done = 0
        self.history: list[dict[str, float]] = []

    def train_epoch(self) -> dict[str, float]:
        """One pass over the positives (and fresh negatives); returns loss, seconds, samples."""
        if self.optimizer is None:
            raise RuntimeError("the trainer was finalized")
        start = time.perf_counter()
        neg = sample_negatives(
            self.data, self.negatives, self.rng, exclude=self.exclude, keys=self._keys
        )
        users, items, labels = training_pairs(self.data, neg)
        order = self.rng.permutation(len(users))
        dev = self.device
        u = torch.from_numpy(users[order]).to(dev)
        i = torch.from_numpy(items[order]).to(dev)
        y = torch.from_numpy(labels[order]).to(dev)
        self.module.train()
        total = 0.0
        sign = -1.0 if self.ascent else 1.0
        n_batches = -(-len(order) // self.batch_size)
        for b, s in enumerate(range(0, len(order), self.batch_size)):
            e = s + self.batch_size
            if self.schedule == "cosine":
                self._set_lr(self.epochs_done * n_batches + b, n_batches * self.total_epochs)
            loss = F.binary_cross_entropy_with_logits(self.module(u[s:e], i[s:e]), y[s:e])
            self.optimizer.zero_grad(set_to_none=True)
            (sign * loss).backward()
            self.optimizer.step()
            total += float(loss.detach()) * len(y[s:e])
        self.module.eval()
        self.epochs_done += 1
        stats = {
            "epoch": float(self.epochs_done),
            "loss": total / len(order) if len(order) else float("nan"),
            "seconds": time.perf_counter() - start,
            "samples": float(len(order)),
        }
        self.history.append(stats)
        return stats

    def _set_lr(self, step: int, total: int) -> None:
        lr = 0.5 * self.lr * (1.0 + math.cos(math.pi * min(step, total) / total))
        for group in self.optimizer.param_groups:  # type: ignore[union-attr]
            group["lr"] = lr

    def finalize(self) -> nn.Module:
        """Release the optimizer state and leave the module in eval mode; returns the module."""
        self.optimizer = None
        self.module.eval()
        return self.module


@torch.no_grad()
def mean_bce(
    module: nn.Module,
    users: np.ndarray,
    items: np.ndarray,
    labels: np.ndarray,
    *,
    batch_size: int = 65536,
) -> float:
    """Mean binary cross-entropy of the module's logits on fixed (user, item, label) triples."""
    if len(users) == 0:
        return float("nan")
    device = next(module.parameters()).device
    total = 0.0
    for s in range(0, len(users), batch_size):
        u = torch.from_numpy(np.ascontiguousarray(users[s : s + batch_size])).to(device)
        i = torch.from_numpy(np.ascontiguousarray(items[s : s + batch_size])).to(device)
        y = torch.from_numpy(np.ascontiguousarray(labels[s : s + batch_size])).to(device)
        z = module(u, i)
        total += float(F.binary_cross_entropy_with_logits(z, y, reduction="sum"))
    return total / len(users)


__all__ = ["NCFTrainer", "mean_bce", "sample_negatives", "training_pairs"]
