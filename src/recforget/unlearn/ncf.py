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
:math:`\\lambda` (``reg``, default :data:`DEFAULT_REG`, "sum" form: per row, like ALS's
``regularization``) covers every parameter: embedding rows, head weights and biases. It stands in
for AdamW's decoupled weight decay, which is not the gradient of any penalty; without it a
user's sub-problem (a logistic regression on a few dozen samples) is often separable and has no
finite minimiser. :meth:`NCF.loss` reports the mean BCE alone; ``NCF.certify`` reports
:math:`J` and the stationarity certificate of :func:`stationarity`.

AltEraser (our reading of Liu et al., "Forgetting Fast in Recommender Systems", arXiv 2208.06875;
no public code)
------------------------------------------------------------------------------------------------
With the item blocks and the shared (head) weights fixed, :math:`F` separates over users: user
``u``'s block (its rows of all user tables, ``user_dim`` numbers) only meets its own samples.
AltEraser warm-starts from the trained network and alternates

a. damped Newton steps on every selected user block, all users in one batch: per-sample
   Jacobians :math:`J_s = \\partial z_s / \\partial p_u` come from one backward pass (the head
   acts row by row), the block gradient :math:`g_u = \\sum_s (\\sigma(z_s) - y_s) J_s +
   \\lambda p_u` and Hessian :math:`H_u = \\sum_s \\sigma(z_s)(1 - \\sigma(z_s)) J_s J_s^\\top +
   \\lambda I` are summed per user, and ``torch.linalg.solve`` solves the batch of
   :math:`(H_u + \\mu I) s_u = -g_u`. The logit is piecewise linear in a block for all three
   architectures (products with the other side's block, then ReLU layers), so this is the
   exact Hessian almost everywhere. A backtracking line search per user (halving, Armijo)
   accepts a step only if the user's own loss does not increase;
b. the same for item blocks;
c. a few L-BFGS iterations (strong Wolfe) on the shared weights, reverted if :math:`F` rose;
d. (our addition, ``joint_steps``, default 20) L-BFGS iterations on *all* parameters at once,
   also reverted if :math:`F` rose. Alternating block updates converge only linearly on this
   coupled problem (they zig-zag, like ALS); the joint quasi-Newton phase removes most of that
   (tiny GMF: 22 rounds to ``max_relative`` 1e-3 instead of > 30 rounds at 5e-2). With
   ``joint_steps=0`` it is the plain alternating scheme,

so :math:`F` never increases. The first round touches only the users and items that lost
interactions (plus the shared weights); later rounds every block whose relative gradient
exceeds ``tol`` (the selective idea of :func:`recforget.unlearn.als.unlearn_als_selective`).
It stops when the certificate's ``max_relative`` is at most ``tol``, after ``max_rounds`` or
after ``max_seconds``.

The certificate
---------------
Per block :math:`b` (each user row block, each item row block, and all shared weights as one
block) the relative residual is :math:`\\lVert \\nabla_b F \\rVert / \\max(s_b, 10^{-3}
\\mathrm{rms}(s))` with :math:`s_b = \\lVert \\nabla_b \\sum \\ell \\rVert + \\lambda
\\lVert \\theta_b \\rVert` (the two terms that cancel at a stationary point); ``max_relative``
is the largest, ``relative`` the whole gradient's norm over :math:`\\lVert s \\rVert`.

.. note:: Experimental. The trained network is not a stationary point of :math:`J` (it was
   trained on fresh negatives with decoupled weight decay), so the first AltEraser run on a
   model moves every block, not only the affected ones; once a model is certified, later
   deletions only need the selective rounds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from recforget.data.interactions import Interactions, Removal
from recforget.models._ncf_module import NCFModule
from recforget.models._trainer import training_pairs
from recforget.models.base import clone
from recforget.models.ncf import NCF
from recforget.unlearn.api import register

DEFAULT_REG = 1.0
DEFAULT_TOL = 1e-3
DEFAULT_MAX_ROUNDS = 30
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


def stable_negatives(data: Interactions, n_neg: int, seed: int) -> np.ndarray:
    """A fixed negative sample that a deletion only changes for the users it touches.

    User ``u`` ranks every item by a seeded hash of (seed, user id, item id), keeps the items
    that are not its positives in ``data`` and takes the first ``n_neg * |P_u|`` of them (cycling
    through them again when there are fewer), in entry order. The draw is uniform without
    replacement, and it depends only on the ids, the seed and the user's own positives: deleting
    another user's data, or whole users or items (which re-index the rest), leaves it unchanged,
    and a deleted positive of ``u`` simply becomes eligible. This is what lets a certified model
    stay certified for every block a later deletion does not touch.

    Returns
    -------
    negatives : int64 ndarray of shape (data.nnz, n_neg)
    """
    from recforget.data.interactions import _id_hashes

    hu = _id_hashes(data.users)
    hi = _id_hashes(data.items)
    n_items = data.n_items
    out = np.empty((data.nnz, n_neg), dtype=np.int64)
    base = _mix(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))[0]
    counts = data.user_counts()
    users = np.flatnonzero(counts > 0)
    step = max(1, (1 << 22) // max(n_items, 1))
    for s in range(0, len(users), step):
        block = users[s : s + step]
        with np.errstate(over="ignore"):
            keys = _mix((hu[block][:, None] * np.uint64(0x9E3779B97F4A7C15)) ^ base)
            keys = _mix(keys ^ hi[None, :])
        for r, u in enumerate(block):
            lo, hi_ = data.indptr[u], data.indptr[u + 1]
            k = keys[r].copy()
            k[data.indices[lo:hi_]] = np.iinfo(np.uint64).max
            free = n_items - (hi_ - lo)
            if free <= 0:
                raise ValueError(f"user {data.users.ids[u]!r} has every item as a positive")
            need = (hi_ - lo) * n_neg
            order = np.argsort(k, kind="stable")[:free]
            out[lo:hi_] = np.resize(order, need).reshape(hi_ - lo, n_neg)
    return out


def fixed_sample(
    model: NCF, data: Interactions | None = None, negatives: np.ndarray | None = None
) -> FixedSample:
    """Positives of ``data`` (default ``model.seen_``) and their fixed, seeded negatives.

    The negatives default to :func:`stable_negatives` (``model.negatives`` per positive, seeded
    by ``model.seed_``, never a positive of ``data``).
    """
    data = model.seen_ if data is None else data
    if negatives is None:
        negatives = stable_negatives(data, int(model.negatives), int(model.seed_))
    u, i, y = training_pairs(data, negatives)
    dev = next(model.module_.parameters()).device
    return FixedSample(
        torch.from_numpy(u).to(dev), torch.from_numpy(i).to(dev), torch.from_numpy(y).to(dev)
    )


def _shared(module: NCFModule) -> dict[str, torch.Tensor]:
    return {k: v.detach() for k, v in module.shared_parameters().items()}


def _sq_norm(tensors: list[torch.Tensor] | Any) -> float:
    return float(sum(float((t.double() ** 2).sum()) for t in tensors))


@torch.no_grad()
def objective(module: NCFModule, sample: FixedSample, reg: float) -> float:
    """:math:`F(\\theta)`: summed BCE on the fixed sample plus the ridge (sum form)."""
    total = 0.0
    for s in range(0, len(sample), _CHUNK):
        sl = slice(s, s + _CHUNK)
        z = module(sample.users[sl], sample.items[sl])
        total += float(F.binary_cross_entropy_with_logits(z, sample.labels[sl], reduction="sum"))
    return total + 0.5 * reg * _sq_norm(module.parameters())


def gradients(
    module: NCFModule, sample: FixedSample, reg: float
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Full gradient of :math:`F`, by block kind: ``{"users", "items", "shared"}``.

    Each value is ``(grad, scale)``: per-row gradient norms and per-row scales :math:`s_b`
    (data-gradient norm plus ridge-term norm), float64; ``"shared"`` has one row.
    """
    U = module.all_user_vectors().detach().requires_grad_()
    V = module.all_item_vectors().detach().requires_grad_()
    shared = {
        k: v.requires_grad_() for k, v in ((k, v.clone()) for k, v in _shared(module).items())
    }
    for s in range(0, len(sample), _CHUNK):
        sl = slice(s, s + _CHUNK)
        z = module.logits(U[sample.users[sl]], V[sample.items[sl]], shared)
        F.binary_cross_entropy_with_logits(z, sample.labels[sl], reduction="sum").backward()
    out = {}
    for name, theta, g in (("users", U, U.grad), ("items", V, V.grad)):
        th, gd = theta.detach().double(), g.double()
        full = gd + reg * th
        out[name] = (full.norm(dim=1), gd.norm(dim=1) + reg * th.norm(dim=1))
    th = torch.cat([v.detach().double().ravel() for v in shared.values()])
    gd = torch.cat([v.grad.double().ravel() for v in shared.values()])
    out["shared"] = (
        (gd + reg * th).norm().reshape(1),
        (gd.norm() + reg * th.norm()).reshape(1),
    )
    return out


def stationarity(
    module: NCFModule, sample: FixedSample, reg: float
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """The certificate (see the module docstring) and each kind's per-row relative residuals."""
    grads = gradients(module, sample, reg)
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
) -> torch.Tensor:
    """Each block's own loss: its samples' BCE plus its ridge term (float64)."""
    out = 0.5 * reg * (blocks.double() ** 2).sum(1)
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


def block_newton(
    module: NCFModule,
    sample: FixedSample,
    which: str,
    rows: torch.Tensor | np.ndarray,
    reg: float,
    *,
    steps: int = 3,
    damping: float = 0.0,
    max_halvings: int = 20,
) -> dict[str, float]:
    """Damped Newton steps with per-block backtracking on the blocks ``rows`` of one side.

    The other side and the shared weights are fixed, so :math:`F` separates over the blocks;
    each block's loss never increases. Updates ``module`` in place.

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
        Newton steps per block.

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
    other = other_all[other_idx[keep]]
    labels = sample.labels[keep]
    shared = _shared(module)
    B = table[rows].clone()
    b, d = B.shape
    eye = torch.eye(d, dtype=torch.float64, device=dev)
    f_old = _block_losses(module, which, B, other, local, labels, shared, reg)
    f_start = f_old.clone()
    chunk = max(1, _CELLS // (d * d))
    for _ in range(steps):
        g = reg * B.double()
        H = (reg + damping) * eye.expand(b, d, d).clone()
        for s in range(0, len(local), chunk):
            sl = slice(s, s + chunk)
            mine = B[local[sl]].requires_grad_()
            z = (
                module.logits(mine, other[sl], shared)
                if which == "users"
                else module.logits(other[sl], mine, shared)
            )
            (Js,) = torch.autograd.grad(z.sum(), mine)  # row s: dz_s / d(block of s)
            p = torch.sigmoid(z.detach()).double()
            Js = Js.double()
            g.index_add_(0, local[sl], (p - labels[sl].double())[:, None] * Js)
            w = (p * (1 - p))[:, None, None]
            H.index_add_(0, local[sl], w * Js[:, :, None] * Js[:, None, :])
        step = torch.linalg.solve(H, -g.unsqueeze(-1)).squeeze(-1)
        slope = (g * step).sum(1)  # < 0: H is positive definite
        t = torch.ones(b, dtype=torch.float64, device=dev)
        todo = torch.ones(b, dtype=torch.bool, device=dev)
        newB = B.clone()
        for _ in range(max_halvings):
            trial = torch.where(todo[:, None], B + (t[:, None] * step).to(B.dtype), newB)
            f_new = _block_losses(module, which, trial, other, local, labels, shared, reg)
            ok = todo & (f_new <= f_old + 1e-4 * t * slope)
            newB[ok] = trial[ok]
            f_old = torch.where(ok, f_new, f_old)
            todo &= ~ok
            if not bool(todo.any()):
                break
            t = torch.where(todo, 0.5 * t, t)
        B = newB
    setter = module.set_user_vectors if which == "users" else module.set_item_vectors
    setter(rows, B)
    return {"blocks": int(b), "decrease": float((f_start - f_old).sum())}


def shared_lbfgs(
    module: NCFModule,
    sample: FixedSample,
    reg: float,
    *,
    iterations: int = 10,
    joint: bool = False,
) -> dict[str, float]:
    """L-BFGS (strong Wolfe) on the shared weights, blocks fixed; reverted if :math:`F` rose.

    ``joint=True`` optimises every parameter (blocks too) at once: near the optimum a few
    joint quasi-Newton iterations remove the slow zig-zag of alternating block updates.
    """
    params = list(module.parameters() if joint else module.head.parameters())
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
        ridge = 0.5 * reg * sum((p**2).sum() for p in params)
        ridge.backward()
        return torch.tensor(total + float(ridge.detach()))

    f0 = objective(module, sample, reg)
    opt.step(closure)
    f1 = objective(module, sample, reg)
    if not np.isfinite(f1) or f1 > f0:
        with torch.no_grad():
            for p, old in zip(params, before, strict=True):
                p.copy_(old)
        f1 = f0
    for p in module.parameters():
        p.grad = None
    return {"decrease": f0 - f1}


# ---------------------------------------------------------------------------- helpers
def transplant(model: NCF, removal: Removal, **params: Any) -> NCF:
    """A copy of ``model`` on the remaining data, removed users'/items' rows dropped."""

    def kept(m: np.ndarray) -> torch.Tensor:
        old = np.flatnonzero(m >= 0)
        return torch.as_tensor(old[np.argsort(m[old])], dtype=torch.int64)

    dev = next(model.module_.parameters()).device
    module = model.module_.take(kept(removal.user_map).to(dev), kept(removal.item_map).to(dev))
    new = NCF.from_module(
        module, removal.data, **{**model.get_params(), "random_state": model.seed_, **params}
    )
    new.seed_ = model.seed_
    return new


def _affected(removal: Removal) -> tuple[np.ndarray, np.ndarray]:
    """New indices of kept users / items that lost interactions."""
    return removal.user_map[removal.affected_users], removal.item_map[removal.affected_items]


def _tol(tol: float | None) -> float:
    tol = DEFAULT_TOL if tol is None else float(tol)
    if not (np.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    return tol


# ---------------------------------------------------------------------------- methods
@register("retrain", "ncf")
def retrain(model: NCF, removal: Removal) -> tuple[NCF, dict]:
    """The oracle: same parameters and seed, trained from scratch on the remaining data."""
    new = clone(model).set_params(random_state=model.seed_).fit(removal.data)
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
    shared_steps: int = 10,
    joint_steps: int = 20,
    damping: float = 0.0,
    reg: float | None = None,
) -> tuple[NCF, dict]:
    """AltEraser: alternating block Newton on the fixed-sample retraining objective.

    See the module docstring. Options: ``tol`` (certificate ``max_relative`` target, default
    :data:`DEFAULT_TOL`), ``max_rounds``, ``max_seconds`` (time budget), ``newton_steps`` per
    block per round, ``shared_steps`` (L-BFGS iterations per round on the shared weights),
    ``joint_steps`` (L-BFGS iterations per round on all parameters; 0 switches them off),
    ``damping`` (added to every block Hessian) and ``reg`` (the objective's ridge; default
    :data:`DEFAULT_REG`).
    The info holds ``rounds``, ``blocks_solved`` (users, items), ``residual``,
    ``loss_history`` (:math:`J` after each round, first entry at the warm start) and
    ``stop_reason``.

    .. note:: Experimental.
    """
    tol = _tol(tol)
    reg = DEFAULT_REG if reg is None else float(reg)
    start = time.perf_counter()
    new = transplant(model, removal)
    if reg != DEFAULT_REG:
        new.objective_reg_ = reg
    module = new.module_
    au, ai = _affected(removal)
    solved_u = solved_i = rounds = 0
    stop = "max_rounds"
    with new._threads():
        sample = fixed_sample(new)
        n = max(len(sample), 1)
        history = [objective(module, sample, reg) / n]
        cert, rel = stationarity(module, sample, reg)
        while True:
            if cert["max_relative"] <= tol:
                stop = "tol"
                break
            if rounds >= max_rounds:
                break
            if max_seconds is not None and time.perf_counter() - start > max_seconds:
                stop = "max_seconds"
                break
            first = rounds == 0
            users = au if first else np.flatnonzero(rel["users"] > tol)
            solved_u += block_newton(
                module, sample, "users", users, reg, steps=newton_steps, damping=damping
            )["blocks"]
            if first:
                items = ai
            else:
                _, rel = stationarity(module, sample, reg)
                items = np.flatnonzero(rel["items"] > tol)
            solved_i += block_newton(
                module, sample, "items", items, reg, steps=newton_steps, damping=damping
            )["blocks"]
            if first or rel["shared"][0] > tol:
                shared_lbfgs(module, sample, reg, iterations=shared_steps)
            if joint_steps > 0:
                shared_lbfgs(module, sample, reg, iterations=joint_steps, joint=True)
            rounds += 1
            history.append(objective(module, sample, reg) / n)
            cert, rel = stationarity(module, sample, reg)
    new.n_iter_ = rounds
    return new, {
        "tol": tol,
        "rounds": rounds,
        "blocks_solved": solved_u + solved_i,
        "blocks_solved_users": solved_u,
        "blocks_solved_items": solved_i,
        "residual": cert["relative"],
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
) -> tuple[NCF, dict]:
    """One-step influence-function removal (as IFRU / SCIF), restricted to affected parameters.

    With :math:`\\theta` the trained network and :math:`R` the removed samples of the full data's
    fixed sample (the removed positives and their negatives), the step is

    .. math:: \\Delta\\theta_A = (H_{AA} + \\mu I)^{-1} \\nabla_A \\sum_{s \\in R} \\ell_s,

    the Newton step on :math:`F` that cancels their contribution to the gradient (exact for a
    quadratic :math:`F` whose full-data minimiser is :math:`\\theta`). :math:`A` holds the
    blocks of the kept users and items that lost interactions, plus the shared weights when
    ``shared=True``; :math:`H_{AA}` is the Hessian of the remaining data's :math:`F` at
    :math:`\\theta`, inverted by conjugate gradient (``cg_steps``) with Hessian-vector products
    (double backward). No line search: it is the one-shot baseline.

    .. note:: Experimental (approximate).
    """
    reg = DEFAULT_REG if reg is None else float(reg)
    au, ai = _affected(removal)
    # gradient of the removed samples, in the old index space
    old = model.module_
    dev = next(old.parameters()).device
    negs = stable_negatives(model.seen_, int(model.negatives), int(model.seed_))
    keep = np.ones(model.seen_.nnz, dtype=bool)
    pos = model.seen_.entry_positions(removal.removed_users, removal.removed_items)
    keep[pos[pos >= 0]] = False
    gone = model.seen_.select(~keep)
    gu, gi, gy = training_pairs(gone, negs[~keep])
    new = transplant(model, removal)
    if reg != DEFAULT_REG:
        new.objective_reg_ = reg
    module = new.module_
    with new._threads():
        U = old.all_user_vectors().detach().requires_grad_()
        V = old.all_item_vectors().detach().requires_grad_()
        sh = {k: v.clone().requires_grad_() for k, v in _shared(old).items()}
        if len(gu):
            z = old.logits(
                U[torch.as_tensor(gu, device=dev)], V[torch.as_tensor(gi, device=dev)], sh
            )
            y = torch.as_tensor(gy, device=dev)
            F.binary_cross_entropy_with_logits(z, y, reduction="sum").backward()
        ou = removal.affected_users
        oi = removal.affected_items
        rhs = [U.grad[ou] if U.grad is not None else torch.zeros(len(ou), old.user_dim)]
        rhs.append(V.grad[oi] if V.grad is not None else torch.zeros(len(oi), old.item_dim))
        names = list(sh) if shared else []
        rhs += [sh[k].grad if sh[k].grad is not None else torch.zeros_like(sh[k]) for k in names]
        b = torch.cat([r.detach().double().ravel() for r in rhs])
        sample = fixed_sample(new)
        tu = torch.as_tensor(au, dtype=torch.int64, device=dev)
        ti = torch.as_tensor(ai, dtype=torch.int64, device=dev)
        delta = _cg(
            lambda v: _hvp(module, sample, reg, tu, ti, names, v) + damping * v, b, cg_steps
        )
        _apply(module, tu, ti, names, delta)
    return new, {"tol": None, "blocks_solved": len(au) + len(ai), "shared": bool(shared)}


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
    "DEFAULT_REG",
    "DEFAULT_TOL",
    "FixedSample",
    "block_newton",
    "certify_model",
    "fixed_sample",
    "gradients",
    "objective",
    "shared_lbfgs",
    "stable_negatives",
    "stationarity",
    "transplant",
]
