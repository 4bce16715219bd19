"""The fixed-sample retraining objective of an NCF model, its anchored form and certificate.

The objective belongs to the model, like ALS's :mod:`recforget.models._als_objective`: the
unlearners of :mod:`recforget.unlearn.ncf` minimise it, :meth:`NCF.certify` certifies it.

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
the model (not saved); :func:`recforget.unlearn.ncf.transplant.transplant` carries them
over, redrawing only the touched users.

The anchored objective
----------------------
A network trained by AdamW is far from stationary for :math:`F` (the relative residual of the
original and of a retrain are both close to 1), and minimising :math:`F` moves every block towards
an optimum that ranks worse than either (docs/results.md). What a deletion changes is the
*difference* between the two fixed samples. With :math:`\\theta_0` the original and
:math:`c = \\nabla F_{full}(\\theta_0)` its residual on the full data's objective,
:math:`\\theta_0` is an exact stationary point of
:math:`F_{full}(\\theta) - c^\\top\\theta`, and the unlearning target is the corresponding
point of the *anchored* objective

.. math::

    \\tilde F(\\theta) = F_{rem}(\\theta) - c^\\top \\theta, \\qquad
    \\nabla \\tilde F(\\theta_0) = -\\delta,

where :math:`\\delta` is the gradient at :math:`\\theta_0` of the samples that left the fixed
sample minus those that joined it (:func:`recforget.unlearn.ncf.sample.sample_delta`: the removed
positives, the touched users' changed negatives, every sample of a dropped user). Only the touched
blocks feel a gradient. The linear term holds the original's training residual, which includes the
deleted samples' gradient at :math:`\\theta_0`: this is an approximate unlearner (as influence
functions are), not a retrain; the plain objective is available with ``anchored=False``.

The certificate
---------------
Per block :math:`b` (each user row block, each item row block, and all shared weights as one
block) the row scale is :math:`s_b = \\lVert \\nabla_b \\sum \\ell \\rVert + \\lambda
\\lVert \\theta_b \\rVert` (the terms that cancel at a stationary point; plus
:math:`\\lVert c_b \\rVert` for the anchored objective), and the certificate is the one
every model family shares (:mod:`recforget.models._certificate`); ``max_residual`` is over
:math:`|S|` here (a mean-loss gradient).

.. note:: Experimental.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from recforget.data.interactions import Interactions
from recforget.models._certificate import certificate, certified, relative_residuals, row_floor
from recforget.models._ncf_module import NCFModule
from recforget.models._ncf_negatives import model_negatives, stable_negatives
from recforget.models._trainer import training_pairs

if TYPE_CHECKING:
    from recforget.models.ncf import NCF


DEFAULT_REG = 1.0


SAMPLE_CHUNK = 1 << 16  # samples per forward/backward chunk


# ---------------------------------------------------------------------------- the objective
@dataclass
class FixedSample:
    """The fixed (user, item, label) triples of the retraining objective, as tensors."""

    users: torch.Tensor
    items: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.users)


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


def shared_weights(module: NCFModule) -> dict[str, torch.Tensor]:
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
    score = module.pair_scorer()
    for s in range(0, len(sample), SAMPLE_CHUNK):
        sl = slice(s, s + SAMPLE_CHUNK)
        z = score(sample.users[sl], sample.items[sl])
        total += float(F.binary_cross_entropy_with_logits(z, sample.labels[sl], reduction="sum"))
    total += 0.5 * reg * _sq_norm(module.parameters())
    return total - anchor.dot(module) if anchor is not None else total


def data_gradients(
    module: NCFModule, sample: FixedSample
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Gradient of the summed BCE (no ridge) by user rows, item rows and shared weights."""
    U = module.all_user_vectors().detach().requires_grad_()
    V = module.all_item_vectors().detach().requires_grad_()
    shared = {
        k: v.requires_grad_()
        for k, v in ((k, v.clone()) for k, v in shared_weights(module).items())
    }
    for s in range(0, len(sample), SAMPLE_CHUNK):
        sl = slice(s, s + SAMPLE_CHUNK)
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
    gU, gV, gS = data_gradients(module, sample)
    th_s = torch.cat([v.double().ravel() for v in shared_weights(module).values()])
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
    kinds = ("users", "items", "shared")
    norms = {k: grads[k][0].cpu().numpy() for k in kinds}
    scales = {k: grads[k][1].cpu().numpy() for k in kinds}
    floor = row_floor(np.concatenate([scales[k] for k in kinds]))
    rel = {k: relative_residuals(norms[k], scales[k], floor) for k in kinds}
    cert = certificate(
        np.concatenate([norms[k] for k in kinds]), np.concatenate([scales[k] for k in kinds])
    )
    cert["max_residual"] /= max(len(sample), 1)  # of the mean loss J
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
        gU, gV, _ = data_gradients(model.module_, fixed_sample(model))
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
        out["certified"] = certified(cert, tol)
    return out


def objective_reg(model: NCF, reg: float | None = None) -> float:
    """The ridge of ``model``'s objective: ``reg``, else its ``objective_reg_``, else the default.

    Raises ``ValueError`` for a ridge that is not a positive number.
    """
    reg = float(getattr(model, "objective_reg_", DEFAULT_REG)) if reg is None else float(reg)
    if not (np.isfinite(reg) and reg > 0):
        raise ValueError(f"reg must be a positive number, got {reg!r}")
    return reg


__all__ = [
    "DEFAULT_REG",
    "SAMPLE_CHUNK",
    "Anchor",
    "FixedSample",
    "calibrated_reg",
    "certify_model",
    "data_gradients",
    "fixed_sample",
    "gradients",
    "objective",
    "objective_reg",
    "shared_weights",
    "stationarity",
]
