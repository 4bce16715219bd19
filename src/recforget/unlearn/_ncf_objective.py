"""The fixed-sample retraining objective of NCF unlearning, its anchored form and certificate.

Used by the unlearners of :mod:`recforget.unlearn.ncf` and the sub-problem solvers of
:mod:`recforget.unlearn._ncf_solvers`.

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

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from recforget.data.interactions import Interactions, Removal
from recforget.models._ncf_module import NCFModule
from recforget.models._trainer import training_pairs
from recforget.models.ncf import NCF

DEFAULT_REG = 1.0
ROW_FLOOR = 1e-3
_CHUNK = 1 << 16  # samples per forward/backward chunk


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


# ---------------------------------------------------------------------------- sample difference
def _kept(index_map: np.ndarray) -> torch.Tensor:
    """Old indices of the kept rows, in their new order."""
    old = np.flatnonzero(index_map >= 0)
    return torch.as_tensor(old[np.argsort(index_map[old])], dtype=torch.int64)


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
