"""Unlearning for NCF models (GMF, MLP, NeuMF): retrain, fine-tune, AltEraser and influence.

The retraining objective
------------------------
A neural model trained by AdamW on freshly drawn negatives is not the minimiser of any fixed
function, so "as if trained without the deleted data" needs a definition that can be checked.
Here it is the *fixed-sample retraining objective* on the remaining data :math:`D`:

.. math::

    F(\\theta) = \\sum_{(u, i, y) \\in S} \\ell(z_{ui}(\\theta), y)
        + \\frac{\\lambda}{2} \\lVert \\theta \\rVert^2, \\qquad
    J(\\theta) = F(\\theta) / |S|,

where :math:`\\ell` is the binary cross-entropy on logits, :math:`S` holds every positive of
:math:`D` (label 1) and, for each, ``model.negatives`` items (label 0) drawn once, with the
model's seed, uniformly (without replacement) among the items that are *not remaining
positives* of the user (:func:`stable_negatives` on :math:`D`: a user's draw depends only on
the seed, the ids and its own positives, so a deletion changes the sample only for the users it
touches). A deleted positive is therefore an ordinary
unobserved pair, eligible as a negative exactly as a retrain would see it. The ridge
:math:`\\lambda` ("sum" form: per row, like ALS's ``regularization``) covers every parameter:
embedding rows, head weights and biases. It stands in for AdamW's decoupled weight decay, which
is not the gradient of any penalty; without it a user's sub-problem (a logistic regression on a
few dozen samples) is often separable and has no finite minimiser. :meth:`NCF.fit` sets it to
the value under which the trained network is closest to stationary (:func:`calibrated_reg`,
stored as ``objective_reg_`` and saved with the model); :data:`DEFAULT_REG` otherwise.
:meth:`NCF.loss` reports the mean BCE alone; ``NCF.certify`` reports :math:`J` and the
stationarity certificate of :func:`stationarity`. The fixed sample's negatives are cached on
the model (not saved); :func:`transplant` carries them over, redrawing only the touched users.

The anchored objective
----------------------
A network trained by AdamW is far from stationary for :math:`F` (on ML-100K GMF the relative
residual of the original and of a retrain are both about 0.98), and minimising :math:`F` moves
every block towards an optimum that ranks worse than either (we measured NDCG@10 falling by
13-45% as rounds went on). What a deletion changes is the *difference* between the two fixed
samples. With :math:`\\theta_0` the original and :math:`c = \\nabla F_{full}(\\theta_0)` its
residual on the full data's objective, :math:`\\theta_0` is an exact stationary point of
:math:`F_{full}(\\theta) - c^\\top\\theta`, and the unlearning target is the corresponding
point of the *anchored* objective

.. math::

    \\tilde F(\\theta) = F_{rem}(\\theta) - c^\\top \\theta, \\qquad
    \\nabla \\tilde F(\\theta_0) = -\\delta,

where :math:`\\delta` is the gradient at :math:`\\theta_0` of the samples that left the fixed
sample minus those that joined it (:func:`_sample_delta`: the removed positives, the touched
users' changed negatives, every sample of a dropped user). Only the touched blocks feel a
gradient. The linear term holds the original's training residual, which includes the deleted
samples' gradient at :math:`\\theta_0`: this is an approximate unlearner (as influence
functions are), not a retrain; the plain objective is available with ``anchored=False``.

AltEraser (our reading of Liu et al., "Forgetting Fast in Recommender Systems", arXiv 2208.06875;
no public code)
------------------------------------------------------------------------------------------------
With the item blocks and the shared (head) weights fixed, :math:`F` separates over users: user
``u``'s block (its rows of all user tables, ``user_dim`` numbers) only meets its own samples.
AltEraser warm-starts from the trained network and alternates

a. damped Newton steps on every selected user block, all users in one batch: per-sample
   Jacobians :math:`J_s = \\partial z_s / \\partial p_u` (GMF: the closed form
   :math:`h \\odot q_i`; otherwise one backward pass, the head acting row by row), the block
   gradient :math:`g_u = \\sum_s (\\sigma(z_s) - y_s) J_s + \\lambda p_u - c_u` and Hessian
   :math:`H_u = \\sum_s \\sigma(z_s)(1 - \\sigma(z_s)) J_s J_s^\\top + \\lambda I` (samples
   padded per block, one ``bmm`` per chunk of similar-sized blocks), and ``torch.linalg.solve``
   on the batch of :math:`(H_u + \\mu I) s_u = -g_u`. The logit is piecewise linear in a block
   for all three architectures (products with the other side's block, then ReLU layers), so
   this is the exact Hessian almost everywhere. A backtracking line search per user (halving,
   Armijo) accepts a step only if the user's own (anchored) loss does not increase;
b. the same for item blocks;
c. optionally (``shared_steps``) L-BFGS iterations (strong Wolfe) on the shared weights,
   reverted if the objective rose;
d. optionally (``joint_steps``) L-BFGS iterations on *all* parameters at once, also reverted
   if the objective rose. Alternating block updates converge only linearly on this coupled
   problem (they zig-zag, like ALS); the joint phase removes most of that,

so the objective never increases. The first round touches only the users and items that lost
interactions; later rounds every block whose relative gradient exceeds ``tol`` (the selective
idea of :func:`recforget.unlearn.als.unlearn_als_selective`).

Stopping rule. By default AltEraser runs *one* round (``max_rounds=1``): one Newton step on
each affected user block, then on each affected item block (a single round needs only those
blocks' anchor rows, so it never passes over the whole data for :math:`c`). In our
measurements (``benchmarks/ncf_unlearn.py``, 1% of the interactions deleted) one round closed
83-105% of the original-to-retrain gap in the deleted pairs' mean score at 10-16 times
retrain's speed, with NDCG@10 within about 1% of a retrain. More rounds, iterating towards
the anchored stationary point, closed more of the gap on a strongly memorising ML-100K model
but lost ranking accuracy (two rounds: 98% of the gap, NDCG -2.1%; three: 120%, -6.5%) and
cost more: that point of a non-convex objective is not the retrain, and the original need
not be a minimum of it. So the default is an early-stopped Newton step, and the
receipt says so: ``stop_reason`` "max_rounds", ``certified`` False (the plain objective's
certificate is reported as measured). With ``max_rounds > 1`` rounds stop once the anchored
certificate's ``max_relative`` is at most ``tol`` (``anchored_residual``).
``anchored=False, max_rounds=60, joint_steps=20, shared_steps=10, tol=1e-3`` is the exact
mode: it iterates to a certified stationary point of :math:`F` itself (slow on real data).

The certificate
---------------
Per block :math:`b` (each user row block, each item row block, and all shared weights as one
block) the relative residual is :math:`\\lVert \\nabla_b F \\rVert / \\max(s_b, 10^{-3}
\\mathrm{rms}(s))` with :math:`s_b = \\lVert \\nabla_b \\sum \\ell \\rVert + \\lambda
\\lVert \\theta_b \\rVert` (the terms that cancel at a stationary point; plus
:math:`\\lVert c_b \\rVert` for the anchored objective); ``max_relative`` is the largest,
``relative`` the whole gradient's norm over :math:`\\lVert s \\rVert`.

.. note:: Experimental.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from recforget.data.interactions import Interactions, Removal
from recforget.models._ncf_module import GMFHead, NCFModule
from recforget.models._trainer import training_pairs
from recforget.models.base import clone
from recforget.models.ncf import NCF
from recforget.unlearn.api import register

DEFAULT_REG = 1.0
DEFAULT_TOL = 1e-2
DEFAULT_MAX_ROUNDS = 1
ROW_FLOOR = 1e-3
_CHUNK = 1 << 16  # samples per forward/backward chunk
_CELLS = 1 << 22  # floats per Hessian-assembly chunk


# ---------------------------------------------------------------------------- the objective
@dataclass
class FixedSample:
    """The fixed (user, item, label) triples of the retraining objective, as tensors."""

    users: torch.Tensor
    items: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.users)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on uint64 arrays (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def stable_negatives(
    data: Interactions, n_neg: int, seed: int, *, users: np.ndarray | None = None
) -> np.ndarray:
    """A fixed negative sample that a deletion only changes for the users it touches.

    User ``u`` ranks every item by a seeded hash of (seed, user id, item id), keeps the items
    that are not its positives in ``data`` and takes the first ``n_neg * |P_u|`` of them (cycling
    through them again when there are fewer), in entry order. The draw is uniform without
    replacement, and it depends only on the ids, the seed and the user's own positives: deleting
    another user's data, or whole users (which re-index the rest), leaves it unchanged, and a
    deleted positive of ``u`` simply becomes eligible (a removed item changes the draw of the
    users that had drawn it). This is what lets a certified model stay certified for every block
    a later deletion does not touch.

    Parameters
    ----------
    data : Interactions
    n_neg, seed : int
    users : int ndarray, optional
        Only fill the rows of these users' entries (the others are -1).

    Returns
    -------
    negatives : int64 ndarray of shape (data.nnz, n_neg)
    """
    from recforget.data.interactions import _id_hashes

    n_items = data.n_items
    counts = data.user_counts()
    todo = np.flatnonzero(counts > 0)
    if users is not None:
        todo = np.intersect1d(todo, np.asarray(users, dtype=np.int64))
    out = np.full((data.nnz, n_neg), -1, dtype=np.int64)
    if len(todo) == 0:
        return out
    hu = _id_hashes(data.users)[todo]
    hi = _id_hashes(data.items)
    base = _mix(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))[0]
    top = np.iinfo(np.uint64).max
    step = max(1, (1 << 22) // max(n_items, 1))
    for s in range(0, len(todo), step):
        block = todo[s : s + step]
        with np.errstate(over="ignore"):
            keys = _mix((hu[s : s + step][:, None] * np.uint64(0x9E3779B97F4A7C15)) ^ base)
            keys = _mix(keys ^ hi[None, :])
        for r, u in enumerate(block):
            lo, hi_ = data.indptr[u], data.indptr[u + 1]
            k = keys[r]
            k[data.indices[lo:hi_]] = top
            free = n_items - (hi_ - lo)
            if free <= 0:
                raise ValueError(f"user {data.users.ids[u]!r} has every item as a positive")
            need = (hi_ - lo) * n_neg
            if need < free:  # the `need` smallest keys, in key order
                part = np.argpartition(k, need - 1)[:need]
                order = part[np.argsort(k[part], kind="stable")]
            else:
                order = np.argsort(k, kind="stable")[:free]
            out[lo:hi_] = np.resize(order, need).reshape(hi_ - lo, n_neg)
    return out


def model_negatives(model: NCF) -> np.ndarray:
    """:func:`stable_negatives` of ``model.seen_``, cached on the model (not saved)."""
    key = (int(model.negatives), int(model.seed_))
    cache = model.__dict__.get("_negatives_cache")
    if cache is not None and cache[0] == key and cache[1] is model.seen_:
        return cache[2]
    neg = stable_negatives(model.seen_, *key)
    model._negatives_cache = (key, model.seen_, neg)
    return neg


def _carry_negatives(model: NCF, removal: Removal, new: NCF) -> None:
    """Cache ``new``'s negatives from ``model``'s: rows of untouched users are unchanged.

    Only the users that lost interactions, and those that had drawn a removed item, are drawn
    again (:func:`stable_negatives` with ``users=``).
    """
    old, data = model.seen_, removal.data
    old_neg = model_negatives(model)
    inv_u = np.flatnonzero(removal.user_map >= 0)[
        np.argsort(removal.user_map[removal.user_map >= 0])
    ]
    inv_i = np.flatnonzero(removal.item_map >= 0)[
        np.argsort(removal.item_map[removal.item_map >= 0])
    ]
    rows = data.row_of_entry.astype(np.int64)
    old_keys = old.row_of_entry.astype(np.int64) * old.n_items + old.indices
    pos = np.searchsorted(old_keys, inv_u[rows] * old.n_items + inv_i[data.indices])
    neg = removal.item_map[old_neg[pos]]
    redo = np.zeros(data.n_users, dtype=bool)
    redo[removal.user_map[removal.affected_users]] = True
    redo[np.unique(rows[(neg < 0).any(axis=1)])] = True
    if redo.any():
        fresh = stable_negatives(
            data, int(new.negatives), int(new.seed_), users=np.flatnonzero(redo)
        )
        mine = redo[rows]
        neg[mine] = fresh[mine]
    new._negatives_cache = ((int(new.negatives), int(new.seed_)), data, neg)


def fixed_sample(
    model: NCF, data: Interactions | None = None, negatives: np.ndarray | None = None
) -> FixedSample:
    """Positives of ``data`` (default ``model.seen_``) and their fixed, seeded negatives.

    The negatives default to :func:`stable_negatives` (``model.negatives`` per positive, seeded
    by ``model.seed_``, never a positive of ``data``; cached on the model for ``seen_``).
    """
    if negatives is None:
        negatives = (
            model_negatives(model)
            if data is None
            else stable_negatives(data, int(model.negatives), int(model.seed_))
        )
    data = model.seen_ if data is None else data
    u, i, y = training_pairs(data, negatives)
    dev = next(model.module_.parameters()).device
    return FixedSample(
        torch.from_numpy(u).to(dev), torch.from_numpy(i).to(dev), torch.from_numpy(y).to(dev)
    )


def _shared(module: NCFModule) -> dict[str, torch.Tensor]:
    return {k: v.detach() for k, v in module.shared_parameters().items()}


def _sq_norm(tensors: list[torch.Tensor] | Any) -> float:
    return float(sum(float((t.double() ** 2).sum()) for t in tensors))


@dataclass
class Anchor:
    """The linear term :math:`c` of the anchored objective :math:`F(\\theta) - c^\\top\\theta`.

    ``users`` (n_users, user_dim) and ``items`` (n_items, item_dim) hold the rows of the user and
    item blocks, ``shared`` one tensor per shared weight (names as in
    :meth:`~recforget.models._ncf_module.NCFModule.shared_parameters`); float64.
    """

    users: torch.Tensor
    items: torch.Tensor
    shared: dict[str, torch.Tensor]

    def dot(self, module: NCFModule) -> float:
        """:math:`c^\\top \\theta` at the module's parameters."""
        out = float((self.users * module.all_user_vectors().detach().double()).sum())
        out += float((self.items * module.all_item_vectors().detach().double()).sum())
        params = module.shared_parameters()
        return out + sum(
            float((c * params[k].detach().double()).sum()) for k, c in self.shared.items()
        )


@torch.no_grad()
def objective(
    module: NCFModule, sample: FixedSample, reg: float, anchor: Anchor | None = None
) -> float:
    """:math:`F(\\theta)`: summed BCE on the fixed sample plus the ridge (sum form).

    With an ``anchor``, the anchored objective :math:`F(\\theta) - c^\\top \\theta`.
    """
    total = 0.0
    for s in range(0, len(sample), _CHUNK):
        sl = slice(s, s + _CHUNK)
        z = module(sample.users[sl], sample.items[sl])
        total += float(F.binary_cross_entropy_with_logits(z, sample.labels[sl], reduction="sum"))
    total += 0.5 * reg * _sq_norm(module.parameters())
    return total - anchor.dot(module) if anchor is not None else total


def _data_gradients(
    module: NCFModule, sample: FixedSample
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Gradient of the summed BCE (no ridge) by user rows, item rows and shared weights."""
    U = module.all_user_vectors().detach().requires_grad_()
    V = module.all_item_vectors().detach().requires_grad_()
    shared = {
        k: v.requires_grad_() for k, v in ((k, v.clone()) for k, v in _shared(module).items())
    }
    for s in range(0, len(sample), _CHUNK):
        sl = slice(s, s + _CHUNK)
        z = module.logits(U[sample.users[sl]], V[sample.items[sl]], shared)
        F.binary_cross_entropy_with_logits(z, sample.labels[sl], reduction="sum").backward()

    def grad(t: torch.Tensor) -> torch.Tensor:
        return t.grad if t.grad is not None else torch.zeros_like(t)

    return grad(U), grad(V), {k: grad(v) for k, v in shared.items()}


def gradients(
    module: NCFModule, sample: FixedSample, reg: float, anchor: Anchor | None = None
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Full gradient of :math:`F` (or of the anchored objective), by block kind.

    Keys ``{"users", "items", "shared"}``; each value is ``(grad, scale)``: per-row gradient
    norms and per-row scales :math:`s_b` (data-gradient norm plus ridge-term norm, plus the
    anchor's norm), float64; ``"shared"`` has one row.
    """
    gU, gV, gS = _data_gradients(module, sample)
    th_s = torch.cat([v.double().ravel() for v in _shared(module).values()])
    gd_s = torch.cat([v.double().ravel() for v in gS.values()])
    parts = {
        "users": (module.all_user_vectors().detach().double(), gU.double()),
        "items": (module.all_item_vectors().detach().double(), gV.double()),
        "shared": (th_s[None, :], gd_s[None, :]),
    }
    out = {}
    for name, (th, gd) in parts.items():
        full = gd + reg * th
        scale = gd.norm(dim=1) + reg * th.norm(dim=1)
        if anchor is not None:
            c = (
                torch.cat([v.ravel() for v in anchor.shared.values()])[None, :]
                if name == "shared"
                else getattr(anchor, name)
            )
            full = full - c
            scale = scale + c.norm(dim=1)
        out[name] = (full.norm(dim=1), scale)
    return out


def stationarity(
    module: NCFModule, sample: FixedSample, reg: float, anchor: Anchor | None = None
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """The certificate (see the module docstring) and each kind's per-row relative residuals."""
    grads = gradients(module, sample, reg, anchor)
    scales = torch.cat([grads[k][1] for k in ("users", "items", "shared")])
    rms = float(torch.sqrt(torch.mean(scales**2))) if len(scales) else 1.0
    floor = ROW_FLOOR * (rms if rms > 0 else 1.0)
    rel = {k: (g / torch.clamp(s, min=floor)).cpu().numpy() for k, (g, s) in grads.items()}
    g_all = torch.cat([grads[k][0] for k in ("users", "items", "shared")])
    total = float(scales.norm()) or 1.0
    cert = {
        "max_residual": float(g_all.max()) / len(sample),
        "max_relative": float(max(r.max() if len(r) else 0.0 for r in rel.values())),
        "relative": float(g_all.norm()) / total,
    }
    return cert, rel


def calibrated_reg(model: NCF) -> float:
    """The ridge under which the trained network is closest to a stationary point of :math:`F`.

    AdamW's decoupled weight decay is not a ridge, but the embedding rows of a trained network
    still balance their data gradient :math:`g` against a shrinkage; the least-squares
    :math:`\\lambda^* = -\\langle g, \\theta \\rangle / \\lVert \\theta \\rVert^2` over all
    embedding rows makes :math:`\\lVert g + \\lambda\\theta \\rVert` smallest. :meth:`NCF.fit`
    stores it as ``objective_reg_`` (:data:`DEFAULT_REG` when it is not a positive number).
    """
    with model._threads():
        gU, gV, _ = _data_gradients(model.module_, fixed_sample(model))
        th = torch.cat(
            [model.module_.all_user_vectors().detach(), model.module_.all_item_vectors().detach()]
        ).double()
        g = torch.cat([gU, gV]).double()
        lam = -float((g * th).sum()) / max(float((th * th).sum()), 1e-300)
    return lam if np.isfinite(lam) and lam > 0 else DEFAULT_REG


def certify_model(model: NCF, tol: float | None = None) -> dict[str, Any]:
    """What :meth:`NCF.certify` returns: objective :math:`J`, residual and certificate."""
    reg = float(getattr(model, "objective_reg_", DEFAULT_REG))
    with model._threads():
        sample = fixed_sample(model)
        cert, _ = stationarity(model.module_, sample, reg)
        obj = objective(model.module_, sample, reg) / max(len(sample), 1)
    out: dict[str, Any] = {
        "objective": obj,
        "residual": cert["relative"],
        "certificate": {**cert, "reg": reg, "tol": tol},
    }
    if tol is not None:
        out["certified"] = bool(cert["max_relative"] <= tol)
    return out


# ---------------------------------------------------------------------------- block Newton
def _select(index: torch.Tensor, rows: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples whose ``index`` is in ``rows``, and each one's position in ``rows``."""
    pos = torch.full((n,), -1, dtype=torch.int64, device=index.device)
    pos[rows] = torch.arange(len(rows), device=index.device)
    local = pos[index]
    keep = torch.nonzero(local >= 0).squeeze(1)
    return keep, local[keep]


def _block_losses(
    module: NCFModule,
    which: str,
    blocks: torch.Tensor,
    other: torch.Tensor,
    local: torch.Tensor,
    labels: torch.Tensor,
    shared: dict[str, torch.Tensor],
    reg: float,
    tilt: torch.Tensor | None = None,
) -> torch.Tensor:
    """Each block's own loss: its samples' BCE plus its ridge term, minus ``tilt . block``."""
    out = 0.5 * reg * (blocks.double() ** 2).sum(1)
    if tilt is not None:
        out -= (tilt * blocks.double()).sum(1)
    for s in range(0, len(local), _CHUNK):
        sl = slice(s, s + _CHUNK)
        mine = blocks[local[sl]]
        z = (
            module.logits(mine, other[sl], shared)
            if which == "users"
            else module.logits(other[sl], mine, shared)
        )
        ell = F.binary_cross_entropy_with_logits(z, labels[sl], reduction="none")
        out.index_add_(0, local[sl], ell.double())
    return out


def _block_jacobians(
    module: NCFModule,
    which: str,
    mine: torch.Tensor,
    other: torch.Tensor,
    shared: dict[str, torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``z`` (b,) and per-sample Jacobians ``dz_s / d(own block)`` (b, d), detached.

    GMF's logit :math:`h^\\top (p \\odot q) + c` is linear in either block, with Jacobian
    :math:`h \\odot q` (user side) or :math:`h \\odot p` (item side): closed form, no autograd.
    Otherwise one backward pass of ``z.sum()`` (the head acts row by row, so row ``s`` of the
    gradient is sample ``s``'s Jacobian).
    """
    if isinstance(module.head, GMFHead):
        h = shared["out.weight"][0]
        z = (mine * other) @ h + shared["out.bias"][0]
        return z, other * h
    leaf = mine.detach().requires_grad_()
    z = (
        module.logits(leaf, other, shared)
        if which == "users"
        else module.logits(other, leaf, shared)
    )
    (J,) = torch.autograd.grad(z.sum(), leaf)
    return z.detach(), J


@dataclass
class _Groups:
    """Samples sorted by block, blocks in chunks of similar size (for padded ``bmm``).

    ``order`` sorts the selected samples so that each chunk's samples are the contiguous range
    ``lo:hi``; each chunk is ``(blocks, lo, hi, slot, pos, width)``: positions (in ``rows``) of
    its blocks, the range, each sample's block slot in the chunk and position within its
    block, and the largest block's sample count.
    """

    order: torch.Tensor
    chunks: list[tuple[torch.Tensor, int, int, torch.Tensor, torch.Tensor, int]]


def _group(local: torch.Tensor, b: int, d: int) -> _Groups:
    counts = torch.bincount(local, minlength=b)
    by_size = torch.argsort(counts, stable=True)
    rank = torch.empty_like(by_size)
    rank[by_size] = torch.arange(b, device=local.device)
    order = torch.argsort(rank[local], stable=True)  # samples of smaller blocks first
    slot_all = rank[local[order]]
    sizes = counts[by_size]
    starts = torch.cumsum(sizes, 0) - sizes
    pos_all = torch.arange(len(local), device=local.device) - starts[slot_all]
    chunks, lo = [], 0
    sizes_l, starts_l = sizes.tolist(), starts.tolist()
    while lo < b:
        hi = lo + 1
        # sizes ascend, so the chunk's width is its last block's count
        while hi < b and (hi + 1 - lo) * max(sizes_l[hi], 1) * d <= _CELLS:
            hi += 1
        s0, s1 = starts_l[lo], starts_l[hi - 1] + sizes_l[hi - 1]
        chunks.append(
            (by_size[lo:hi], s0, s1, slot_all[s0:s1] - lo, pos_all[s0:s1], max(sizes_l[hi - 1], 1))
        )
        lo = hi
    return _Groups(order, chunks)


def block_newton(
    module: NCFModule,
    sample: FixedSample,
    which: str,
    rows: torch.Tensor | np.ndarray,
    reg: float,
    *,
    steps: int = 3,
    damping: float = 0.0,
    max_halvings: int = 12,
    gtol: float = 1e-6,
    anchor: Anchor | None = None,
    tilt: torch.Tensor | None = None,
    start_tilt: torch.Tensor | None = None,
) -> dict[str, float]:
    """Damped Newton steps with per-block backtracking on the blocks ``rows`` of one side.

    The other side and the shared weights are fixed, so :math:`F` separates over the blocks;
    each block's loss never increases. Updates ``module`` in place. All blocks are solved in
    one batch: per Newton step, one pass over their samples gives the Jacobians (closed form
    for GMF, one backward pass otherwise), the gradients (``index_add``) and the Hessians
    :math:`\\sum_s w_s J_s J_s^\\top` (samples padded per block, one ``bmm`` per chunk of
    blocks of similar size), then ``torch.linalg.solve`` on the batch.

    Parameters
    ----------
    module : NCFModule
    sample : FixedSample
    which : {"users", "items"}
    rows : int tensor or array of shape (b,)
        Block (row) indices to update.
    reg, damping : float
        Ridge :math:`\\lambda` and extra Levenberg-Marquardt damping :math:`\\mu`.
    steps : int
        Newton steps per block (at most; a block stops once its gradient norm is below
        ``gtol`` times its number of samples plus one).
    anchor : Anchor, optional
        Minimise the anchored block losses (each block's rows of ``anchor`` as linear term).
    tilt : float64 tensor of shape (b, d), optional
        The linear terms of the blocks ``rows`` directly (instead of ``anchor``).
    start_tilt : float64 tensor of shape (b, d), optional
        Anchor the blocks at their start: the linear term is the block gradient at the start
        plus ``start_tilt`` (so the first Newton step sees the gradient ``-start_tilt``).

    Returns
    -------
    dict
        ``{"blocks": b, "decrease": total loss decrease}``.
    """
    dev = sample.users.device
    rows = torch.as_tensor(np.asarray(rows) if not torch.is_tensor(rows) else rows, device=dev)
    rows = rows.to(torch.int64)
    if len(rows) == 0:
        return {"blocks": 0, "decrease": 0.0}
    if which == "users":
        mine_idx, other_idx, n = sample.users, sample.items, module.n_users
        table = module.all_user_vectors().detach()
        other_all = module.all_item_vectors().detach()
    else:
        mine_idx, other_idx, n = sample.items, sample.users, module.n_items
        table = module.all_item_vectors().detach()
        other_all = module.all_user_vectors().detach()
    keep, local = _select(mine_idx, rows, n)
    B = table[rows].clone()
    b, d = B.shape
    groups = _group(local, b, d)
    keep, local = keep[groups.order], local[groups.order]  # chunks are contiguous ranges now
    other = other_all[other_idx[keep]]
    labels = sample.labels[keep]
    shared = _shared(module)
    if tilt is None and anchor is not None:
        tilt = getattr(anchor, which)[rows]
    size = torch.bincount(local, minlength=b).double() + 1.0
    eye = torch.eye(d, dtype=torch.float64, device=dev)
    active = torch.ones(b, dtype=torch.bool, device=dev)
    J_dtype = other.dtype
    f_old = f_start = None
    for _ in range(steps):
        gd = torch.zeros(b, d, dtype=J_dtype, device=dev)  # data gradient (float32 sums)
        fz = torch.zeros(b, dtype=torch.float64, device=dev) if f_old is None else None
        H = (reg + damping) * eye.expand(b, d, d).clone()
        for blocks, lo, hi, slot, pos, width in groups.chunks:
            mine, lab = local[lo:hi], labels[lo:hi]
            z, J = _block_jacobians(module, which, B[mine], other[lo:hi], shared)
            if fz is not None:  # the blocks' losses at the start, from the same pass
                ell = F.binary_cross_entropy_with_logits(z, lab, reduction="none")
                fz.index_add_(0, mine, ell.double())
            p = torch.sigmoid(z)
            gd.index_add_(0, mine, (p - lab)[:, None] * J)
            P = torch.zeros(len(blocks), width, d, dtype=J.dtype, device=dev)
            P[slot, pos] = torch.sqrt(p * (1 - p))[:, None] * J  # H_b = P_b^T P_b
            H[blocks] += (P.transpose(1, 2) @ P).double()
        g = gd.double() + reg * B.double()
        if start_tilt is not None and tilt is None:  # first step: fix the linear term
            tilt = g + start_tilt
        if tilt is not None:
            g = g - tilt
        if f_old is None:
            f_old = fz + 0.5 * reg * (B.double() ** 2).sum(1)
            if tilt is not None:
                f_old -= (tilt * B.double()).sum(1)
            f_start = f_old.clone()
        active &= g.norm(dim=1) > gtol * size
        if not bool(active.any()):
            break
        step = torch.linalg.solve(H, -g.unsqueeze(-1)).squeeze(-1)
        step[~active] = 0.0
        slope = (g * step).sum(1)  # < 0: H is positive definite
        t = torch.ones(b, dtype=torch.float64, device=dev)
        todo = active.clone()
        newB = B.clone()
        for _ in range(max_halvings):
            trial = torch.where(todo[:, None], B + (t[:, None] * step).to(B.dtype), newB)
            if bool(todo.all()):
                f_new = _block_losses(module, which, trial, other, local, labels, shared, reg, tilt)
            else:  # only the undecided blocks' samples
                sel = torch.nonzero(todo[local]).squeeze(1)
                f_new = _block_losses(
                    module, which, trial, other[sel], local[sel], labels[sel], shared, reg, tilt
                )
            ok = todo & (f_new <= f_old + 1e-4 * t * slope)
            newB[ok] = trial[ok]
            f_old = torch.where(ok, f_new, f_old)
            todo &= ~ok
            if not bool(todo.any()):
                break
            t = torch.where(todo, 0.5 * t, t)
        active &= ~todo  # a block whose line search failed is at its (float32) optimum
        B = newB
    setter = module.set_user_vectors if which == "users" else module.set_item_vectors
    setter(rows, B)
    decrease = 0.0 if f_start is None else float((f_start - f_old).sum())
    return {"blocks": int(b), "decrease": decrease}


def _block_gradient(
    module: NCFModule, sample: FixedSample, which: str, rows: np.ndarray, reg: float
) -> torch.Tensor:
    """:math:`\\nabla_b F` of the blocks ``rows`` of one side (float64, (b, d)); one pass."""
    dev = sample.users.device
    rows = torch.as_tensor(rows, dtype=torch.int64, device=dev)
    mine_idx, other_idx, n = (
        (sample.users, sample.items, module.n_users)
        if which == "users"
        else (sample.items, sample.users, module.n_items)
    )
    table, other_all = (
        (module.all_user_vectors().detach(), module.all_item_vectors().detach())
        if which == "users"
        else (module.all_item_vectors().detach(), module.all_user_vectors().detach())
    )
    B = table[rows]
    g = reg * B.double()
    keep, local = _select(mine_idx, rows, n)
    shared = _shared(module)
    for s in range(0, len(keep), _CHUNK):
        k, loc = keep[s : s + _CHUNK], local[s : s + _CHUNK]
        z, J = _block_jacobians(module, which, B[loc], other_all[other_idx[k]], shared)
        r = torch.sigmoid(z.double()) - sample.labels[k].double()
        g.index_add_(0, loc, r[:, None] * J.double())
    return g


def _param_tilts(module: NCFModule, anchor: Anchor, joint: bool) -> list[torch.Tensor]:
    """The anchor's part for each parameter of ``module`` (joint) or of its head, in order."""
    if not joint:
        return [anchor.shared[k].float() for k in module.shared_parameters()]

    def split(c: torch.Tensor, tables: list) -> list[torch.Tensor]:
        widths = [t.embedding_dim for t in tables]
        return [part.float() for part in torch.split(c, widths, dim=1)]

    by_param = dict(
        zip(
            [t.weight for t in module.user_embeddings] + [t.weight for t in module.item_embeddings],
            split(anchor.users, module.user_embeddings)
            + split(anchor.items, module.item_embeddings),
            strict=True,
        )
    )
    head = {id(p): anchor.shared[k].float() for k, p in module.shared_parameters().items()}
    return [by_param[p] if p in by_param else head[id(p)] for p in module.parameters()]


def shared_lbfgs(
    module: NCFModule,
    sample: FixedSample,
    reg: float,
    *,
    iterations: int = 10,
    joint: bool = False,
    anchor: Anchor | None = None,
) -> dict[str, float]:
    """L-BFGS (strong Wolfe) on the shared weights, blocks fixed; reverted if :math:`F` rose.

    ``joint=True`` optimises every parameter (blocks too) at once: near the optimum a few
    joint quasi-Newton iterations remove the slow zig-zag of alternating block updates. With an
    ``anchor`` the anchored objective is minimised.
    """
    params = list(module.parameters() if joint else module.head.parameters())
    tilts = _param_tilts(module, anchor, joint) if anchor is not None else None
    before = [p.detach().clone() for p in params]
    U = module.all_user_vectors().detach()
    V = module.all_item_vectors().detach()
    opt = torch.optim.LBFGS(
        params,
        lr=1.0,
        max_iter=iterations,
        tolerance_grad=0.0,
        tolerance_change=0.0,
        history_size=10,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        total = 0.0
        for s in range(0, len(sample), _CHUNK):
            sl = slice(s, s + _CHUNK)
            u, i = sample.users[sl], sample.items[sl]
            z = module(u, i) if joint else module.head(U[u], V[i])
            loss = F.binary_cross_entropy_with_logits(z, sample.labels[sl], reduction="sum")
            loss.backward()
            total += float(loss.detach())
        extra = 0.5 * reg * sum((p**2).sum() for p in params)
        if tilts is not None:
            extra = extra - sum((c * p).sum() for c, p in zip(tilts, params, strict=True))
        extra.backward()
        return torch.tensor(total + float(extra.detach()))

    f0 = objective(module, sample, reg, anchor)
    opt.step(closure)
    f1 = objective(module, sample, reg, anchor)
    if not np.isfinite(f1) or f1 > f0:
        with torch.no_grad():
            for p, old in zip(params, before, strict=True):
                p.copy_(old)
        f1 = f0
    for p in module.parameters():
        p.grad = None
    return {"decrease": f0 - f1}


# ---------------------------------------------------------------------------- helpers
def _kept(index_map: np.ndarray) -> torch.Tensor:
    """Old indices of the kept rows, in their new order."""
    old = np.flatnonzero(index_map >= 0)
    return torch.as_tensor(old[np.argsort(index_map[old])], dtype=torch.int64)


def transplant(model: NCF, removal: Removal, **params: Any) -> NCF:
    """A copy of ``model`` on the remaining data, removed users'/items' rows dropped.

    The copy keeps the objective's ridge (``objective_reg_``) and, when ``model`` has them
    cached, its fixed negatives (redrawn only for the users the removal touches).
    """
    dev = next(model.module_.parameters()).device
    module = model.module_.take(_kept(removal.user_map).to(dev), _kept(removal.item_map).to(dev))
    new = NCF.from_module(
        module, removal.data, **{**model.get_params(), "random_state": model.seed_, **params}
    )
    new.seed_ = model.seed_
    if hasattr(model, "objective_reg_"):
        new.objective_reg_ = model.objective_reg_
    if "_negatives_cache" in model.__dict__ and not params:
        _carry_negatives(model, removal, new)
    return new


def _sample_delta(model: NCF, removal: Removal, new: NCF) -> Anchor:
    """:math:`\\delta = \\nabla F_{full}(\\theta_0) - \\nabla F_{rem}(\\theta_0)` (new index space).

    The two fixed samples differ only for the users the removal touches (the negatives are
    stable): the removed positives, the negatives those users gained or lost, and every sample
    of a dropped user. :math:`\\delta` is the summed BCE gradient, at the original network, of
    the samples only in the old sample minus those only in the new one (multiset difference;
    the ridge terms cancel), so it costs a pass over a few samples, not over the data.
    """
    old, data = model.seen_, removal.data
    neg_old, neg_new = model_negatives(model), model_negatives(new)
    n_items = old.n_items
    changed = np.zeros(old.n_users, dtype=bool)
    changed[removal.affected_users] = True
    changed[removal.dropped_users] = True
    if len(removal.dropped_items):
        gone = np.zeros(n_items, dtype=bool)
        gone[removal.dropped_items] = True
        changed[old.row_of_entry[gone[neg_old].any(axis=1)]] = True
    inv_u, inv_i = _kept(removal.user_map).numpy(), _kept(removal.item_map).numpy()

    def keys(users: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
        k_pos = (users * n_items + pos) * 2 + 1
        k_neg = (np.repeat(users, neg.shape[1]) * n_items + neg.ravel()) * 2
        return np.concatenate([k_pos, k_neg])

    e = np.flatnonzero(changed[old.row_of_entry])
    k_old = keys(old.row_of_entry[e].astype(np.int64), old.indices[e].astype(np.int64), neg_old[e])
    rows_new = inv_u[data.row_of_entry]
    e = np.flatnonzero(changed[rows_new])
    k_new = keys(rows_new[e], inv_i[data.indices[e]], inv_i[neg_new[e]])
    uniq, inverse = np.unique(np.concatenate([k_old, k_new]), return_inverse=True)
    weight = np.bincount(
        inverse, weights=np.r_[np.ones(len(k_old)), -np.ones(len(k_new))], minlength=len(uniq)
    )
    nz = weight != 0
    uniq, weight = uniq[nz], weight[nz]
    module = model.module_
    dev = next(module.parameters()).device
    pair = torch.as_tensor(uniq // 2, device=dev)
    y = torch.as_tensor((uniq % 2).astype(np.float32), device=dev)
    w = torch.as_tensor(weight.astype(np.float32), device=dev)
    U = module.all_user_vectors().detach().requires_grad_()
    V = module.all_item_vectors().detach().requires_grad_()
    sh = {k: v.clone().requires_grad_() for k, v in _shared(module).items()}
    if len(pair):
        z = module.logits(U[pair // n_items], V[pair % n_items], sh)
        ell = F.binary_cross_entropy_with_logits(z, y, reduction="none")
        (w * ell).sum().backward()

    def grad(t: torch.Tensor) -> torch.Tensor:
        return (t.grad if t.grad is not None else torch.zeros_like(t)).double()

    return Anchor(
        grad(U)[_kept(removal.user_map).to(dev)],
        grad(V)[_kept(removal.item_map).to(dev)],
        {k: grad(v) for k, v in sh.items()},
    )


def anchor_of(model: NCF, removal: Removal, new: NCF, reg: float) -> Anchor:
    """The original's gradient :math:`c = \\nabla F_{full}(\\theta_0)`, rows in the new index space.

    :math:`F_{full}` is the retraining objective of ``model.seen_`` (the data *before*
    removal); dropped users' and items' rows are left out. ``new`` is the warm start (the
    original's kept rows, :func:`transplant`): :math:`c = \\nabla F_{rem}(\\theta_0) + \\delta`
    (one pass over the remaining data, plus :func:`_sample_delta`).
    """
    delta = _sample_delta(model, removal, new)
    module = new.module_
    gU, gV, gS = _data_gradients(module, fixed_sample(new))
    params = module.shared_parameters()
    return Anchor(
        gU.double() + reg * module.all_user_vectors().detach().double() + delta.users,
        gV.double() + reg * module.all_item_vectors().detach().double() + delta.items,
        {
            k: g.double() + reg * params[k].detach().double() + delta.shared[k]
            for k, g in gS.items()
        },
    )


def _affected(removal: Removal) -> tuple[np.ndarray, np.ndarray]:
    """New indices of kept users / items that lost interactions."""
    return removal.user_map[removal.affected_users], removal.item_map[removal.affected_items]


def _tol(tol: float | None) -> float:
    tol = DEFAULT_TOL if tol is None else float(tol)
    if not (np.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    return tol


def _reg(model: NCF, reg: float | None) -> float:
    reg = float(getattr(model, "objective_reg_", DEFAULT_REG)) if reg is None else float(reg)
    if not (np.isfinite(reg) and reg > 0):
        raise ValueError(f"reg must be a positive number, got {reg!r}")
    return reg


# ---------------------------------------------------------------------------- methods
@register("retrain", "ncf")
def retrain(model: NCF, removal: Removal) -> tuple[NCF, dict]:
    """The oracle: same parameters and seed, trained from scratch on the remaining data."""
    new = clone(model).set_params(random_state=model.seed_).fit(removal.data)
    if hasattr(model, "objective_reg_"):
        new.objective_reg_ = model.objective_reg_
    return new, {"tol": None, "epochs": new.n_iter_}


@register("finetune", "ncf")
def finetune(
    model: NCF, removal: Removal, *, epochs: int = 5, lr: float | None = None
) -> tuple[NCF, dict]:
    """Warm start, then ``epochs`` AdamW epochs of the model's own trainer on the remaining data.

    Negatives are drawn afresh each epoch among the items that are not remaining positives.

    .. note:: Experimental (approximate).
    """
    new = transplant(model, removal)
    rng = np.random.default_rng([new.seed_, 1])
    new.train_epochs(removal.data, int(epochs), lr=lr, random_state=rng)
    return new, {"tol": None, "epochs": int(epochs)}


@register("alteraser", "ncf")
def alteraser(
    model: NCF,
    removal: Removal,
    *,
    tol: float | None = None,
    max_rounds: int = DEFAULT_MAX_ROUNDS,
    max_seconds: float | None = None,
    newton_steps: int = 1,
    shared_steps: int = 0,
    joint_steps: int = 0,
    damping: float = 0.0,
    reg: float | None = None,
    anchored: bool = True,
) -> tuple[NCF, dict]:
    """AltEraser: alternating block Newton on the (anchored) retraining objective.

    See the module docstring. Options: ``tol`` (target of the relative residual
    ``max_relative`` of the objective minimised, default :data:`DEFAULT_TOL`), ``max_rounds``
    (default :data:`DEFAULT_MAX_ROUNDS`), ``max_seconds`` (time budget), ``newton_steps`` per
    block per round, ``shared_steps`` (L-BFGS iterations per round on the shared weights),
    ``joint_steps`` (L-BFGS iterations per round on all parameters; 0, the default, switches
    them off), ``damping`` (added to every block Hessian), ``reg`` (the objective's ridge;
    default the model's ``objective_reg_`` or :data:`DEFAULT_REG`) and ``anchored`` (minimise
    :math:`F - c^\\top\\theta` with :math:`c` the original's residual; ``False``: :math:`F`).
    Defaults (one Newton step on the affected blocks, anchored) are the fast approximate
    unlearner; ``anchored=False`` with many rounds and joint steps the exact mode.
    The info holds ``rounds``, ``blocks_solved`` (users, items), ``anchored_residual`` (the
    ``max_relative`` of the anchored objective, when a stopping test computed it),
    ``loss_history`` (the change of the minimised objective over :math:`|S|` since the warm
    start, after each round: 0 first, then non-increasing; from the exact per-block decreases,
    so it costs no extra pass) and ``stop_reason``. The receipt's ``certificate`` is always the
    plain objective's.

    .. note:: Experimental.
    """
    tol = _tol(tol)
    reg = _reg(model, reg)
    start = time.perf_counter()
    new = transplant(model, removal)
    new.objective_reg_ = reg
    module = new.module_
    au, ai = _affected(removal)
    solved_u = solved_i = rounds = 0
    stop = "max_rounds"
    cert: dict[str, float] = {}
    with new._threads():
        sample = fixed_sample(new)
        n = max(len(sample), 1)
        anchor, user_kw, item_kw = None, {}, {}
        if anchored and (max_rounds > 1 or shared_steps > 0 or joint_steps > 0):
            anchor = anchor_of(model, removal, new, reg)
        elif anchored:  # a single round on the affected blocks needs their anchor rows only
            delta = _sample_delta(model, removal, new)
            item_kw = {"tilt": _block_gradient(module, sample, "items", ai, reg) + delta.items[ai]}
            user_kw = {"start_tilt": delta.users[au]}
        history = [0.0]
        rel: dict[str, np.ndarray] = {}
        while True:
            if rounds >= max_rounds:
                break
            if max_seconds is not None and time.perf_counter() - start > max_seconds:
                stop = "max_seconds"
                break
            first = rounds == 0
            users = au if first else np.flatnonzero(rel["users"] > tol)
            opts = {"steps": newton_steps, "damping": damping, "anchor": anchor}
            res = block_newton(module, sample, "users", users, reg, **opts, **user_kw)
            solved_u, decrease = solved_u + res["blocks"], res["decrease"]
            if first:
                items = ai
            else:
                _, rel = stationarity(module, sample, reg, anchor)
                items = np.flatnonzero(rel["items"] > tol)
            res = block_newton(module, sample, "items", items, reg, **opts, **item_kw)
            solved_i, decrease = solved_i + res["blocks"], decrease + res["decrease"]
            user_kw, item_kw = {}, {}
            if shared_steps > 0 and (first or rel["shared"][0] > tol):
                decrease += shared_lbfgs(
                    module, sample, reg, iterations=shared_steps, anchor=anchor
                )["decrease"]
            if joint_steps > 0:
                decrease += shared_lbfgs(
                    module, sample, reg, iterations=joint_steps, joint=True, anchor=anchor
                )["decrease"]
            rounds += 1
            history.append(history[-1] - decrease / n)
            if rounds >= max_rounds:  # no stopping test left to run
                break
            cert, rel = stationarity(module, sample, reg, anchor)
            if cert["max_relative"] <= tol:
                stop = "tol"
                break
    new.n_iter_ = rounds
    return new, {
        "tol": tol,
        "rounds": rounds,
        "anchored": anchor is not None,
        # max_relative of the objective minimised, when a stopping test computed it
        "anchored_residual": cert.get("max_relative") if anchor is not None else None,
        "blocks_solved": solved_u + solved_i,
        "blocks_solved_users": solved_u,
        "blocks_solved_items": solved_i,
        "loss_history": history,
        "stop_reason": stop,
    }


@register("influence", "ncf")
def influence(
    model: NCF,
    removal: Removal,
    *,
    damping: float = 0.0,
    reg: float | None = None,
    shared: bool = False,
    cg_steps: int = 20,
    max_halvings: int = 10,
) -> tuple[NCF, dict]:
    """One-step influence-function removal (as IFRU / SCIF), restricted to affected parameters.

    With :math:`\\theta_0` the trained network and :math:`\\delta` the gradient at
    :math:`\\theta_0` of the samples that left the fixed sample minus those that joined it (the
    removed positives and the affected users' changed negatives, :func:`_sample_delta`), the
    step is

    .. math:: \\Delta\\theta_A = (H_{AA} + \\mu I)^{-1} \\delta_A,

    the Newton step on the anchored objective :math:`F_{rem}(\\theta) - c^\\top\\theta`
    (module docstring) restricted to :math:`A`: the blocks of the kept users and items that
    lost interactions, plus the shared weights when ``shared=True``. :math:`H_{AA}` is the
    Hessian of the remaining data's :math:`F` at :math:`\\theta_0`, inverted by conjugate
    gradient (``cg_steps``, stopped at a direction of non-positive curvature, which ReLU kinks
    can produce) with Hessian-vector products (double backward). Safeguard: the step is halved
    (at most ``max_halvings`` times, else not taken) until the anchored objective decreases
    (Armijo); the info's ``step`` is the fraction taken.

    .. note:: Experimental (approximate).
    """
    reg = _reg(model, reg)
    au, ai = _affected(removal)
    new = transplant(model, removal)
    new.objective_reg_ = reg
    module = new.module_
    dev = next(module.parameters()).device
    with new._threads():
        delta = _sample_delta(model, removal, new)
        tu = torch.as_tensor(au, dtype=torch.int64, device=dev)
        ti = torch.as_tensor(ai, dtype=torch.int64, device=dev)
        names = list(module.shared_parameters()) if shared else []
        b = torch.cat(
            [delta.users[tu].ravel(), delta.items[ti].ravel()]
            + [delta.shared[k].ravel() for k in names]
        )
        sample = fixed_sample(new)
        step = _cg(lambda v: _hvp(module, sample, reg, tu, ti, names, v) + damping * v, b, cg_steps)
        # anchored objective along the step: phi(t) = F(theta0 + t step) - t c_A . step
        gU, gV, gS = _data_gradients(module, sample)
        params = module.shared_parameters()
        grad_a = torch.cat(
            [
                (gU.double() + reg * module.all_user_vectors().detach().double())[tu].ravel(),
                (gV.double() + reg * module.all_item_vectors().detach().double())[ti].ravel(),
            ]
            + [(gS[k].double() + reg * params[k].detach().double()).ravel() for k in names]
        )
        c_dot = float((grad_a + b) @ step)
        slope = -float(b @ step)  # phi'(0) = (grad F - c)_A . step = -delta_A . step
        f0 = objective(module, sample, reg)
        t, taken = 1.0, 0.0
        if slope < 0:
            for _ in range(max_halvings + 1):
                _apply(module, tu, ti, names, t * step)
                if objective(module, sample, reg) - t * c_dot <= f0 + 1e-4 * t * slope:
                    taken = t
                    break
                _apply(module, tu, ti, names, -t * step)
                t *= 0.5
    return new, {
        "tol": None,
        "blocks_solved": len(au) + len(ai),
        "shared": bool(shared),
        "step": taken,
    }


def _unpack(module: NCFModule, nu: int, ni: int, names: list[str], vec: torch.Tensor) -> list:
    shapes = [(nu, module.user_dim), (ni, module.item_dim)]
    params = module.shared_parameters()
    shapes += [tuple(params[k].shape) for k in names]
    out, s = [], 0
    for shp in shapes:
        k = int(np.prod(shp))
        out.append(vec[s : s + k].reshape(shp))
        s += k
    return out


def _hvp(
    module: NCFModule,
    sample: FixedSample,
    reg: float,
    tu: torch.Tensor,
    ti: torch.Tensor,
    names: list[str],
    vec: torch.Tensor,
) -> torch.Tensor:
    """Hessian of :math:`F` restricted to the affected parameters, times ``vec`` (float64)."""
    U0 = module.all_user_vectors().detach()
    V0 = module.all_item_vectors().detach()
    sh0 = _shared(module)
    Ua = U0[tu].clone().requires_grad_()
    Va = V0[ti].clone().requires_grad_()
    sa = {k: sh0[k].clone().requires_grad_() for k in names}
    leaves = [Ua, Va, *sa.values()]
    vs = [v.to(torch.float32) for v in _unpack(module, len(tu), len(ti), names, vec)]
    if names:
        keep = torch.arange(len(sample), device=tu.device)
    else:
        mu = torch.zeros(module.n_users, dtype=torch.bool, device=tu.device)
        mi = torch.zeros(module.n_items, dtype=torch.bool, device=tu.device)
        mu[tu], mi[ti] = True, True
        keep = torch.nonzero(mu[sample.users] | mi[sample.items]).squeeze(1)
    out = [torch.zeros_like(v, dtype=torch.float64) for v in vs]
    for s in range(0, len(keep), _CHUNK):
        k = keep[s : s + _CHUNK]
        U = U0.index_put((tu,), Ua)
        V = V0.index_put((ti,), Va)
        shared = {**sh0, **sa}
        z = module.logits(U[sample.users[k]], V[sample.items[k]], shared)
        loss = F.binary_cross_entropy_with_logits(z, sample.labels[k], reduction="sum")
        grads = torch.autograd.grad(loss, leaves, create_graph=True, allow_unused=True)
        dot = sum((g * v).sum() for g, v in zip(grads, vs, strict=True) if g is not None)
        if not torch.is_tensor(dot) or not dot.requires_grad:
            continue
        hv = torch.autograd.grad(dot, leaves, allow_unused=True)
        for o, h in zip(out, hv, strict=True):
            if h is not None:
                o += h.double()
    return torch.cat([o.ravel() for o in out]) + reg * vec


def _cg(matvec: Any, b: torch.Tensor, steps: int) -> torch.Tensor:
    """Conjugate gradient for ``matvec(x) = b`` from zero (``steps`` iterations at most)."""
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rr = float(r @ r)
    stop = 1e-20 * max(rr, 1e-300)
    for _ in range(steps):
        if rr <= stop:
            break
        Ap = matvec(p)
        pAp = float(p @ Ap)
        if pAp <= 0:
            break
        a = rr / pAp
        x += a * p
        r -= a * Ap
        rr_new = float(r @ r)
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


@torch.no_grad()
def _apply(
    module: NCFModule, tu: torch.Tensor, ti: torch.Tensor, names: list[str], delta: torch.Tensor
) -> None:
    parts = _unpack(module, len(tu), len(ti), names, delta)
    if len(tu):
        module.set_user_vectors(tu, module.all_user_vectors()[tu] + parts[0].float())
    if len(ti):
        module.set_item_vectors(ti, module.all_item_vectors()[ti] + parts[1].float())
    params = module.shared_parameters()
    for k, d in zip(names, parts[2:], strict=True):
        params[k].add_(d.to(params[k].dtype))


__all__ = [
    "DEFAULT_MAX_ROUNDS",
    "DEFAULT_REG",
    "DEFAULT_TOL",
    "Anchor",
    "FixedSample",
    "anchor_of",
    "block_newton",
    "calibrated_reg",
    "certify_model",
    "fixed_sample",
    "gradients",
    "model_negatives",
    "objective",
    "shared_lbfgs",
    "stable_negatives",
    "stationarity",
    "transplant",
]
