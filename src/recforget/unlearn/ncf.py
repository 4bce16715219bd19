"""Unlearning for NCF models (GMF, MLP, NeuMF): retrain, fine-tune, AltEraser and influence.

The registered methods live here; the rest is split by concept:

* :mod:`recforget.unlearn._ncf_objective`: the fixed-sample retraining objective, its
  anchored form (the original's residual as linear term), the negatives it is built on and
  the stationarity certificate;
* :mod:`recforget.unlearn._ncf_solvers`: the numerical sub-problem solvers (AltEraser's
  batched block Newton and L-BFGS steps; influence's Hessian-vector products and CG).

AltEraser's default step
------------------------
By default AltEraser takes *one* anchored Newton step (``max_rounds=1``) on every block whose
samples the deletion changed, all blocks from the same starting point (``update="jacobi"``,
:mod:`recforget.unlearn._ncf_curvature`): with the model's block curvature prepared ahead
(:func:`prepare`, one pass; unlearned models carry it forward), a request costs work in
proportion to the samples it changes plus one pass that verifies the anchored objective
decreased (Armijo; the step is halved otherwise). Without a prepared curvature the first
request pays for :func:`prepare` (the receipt's ``prepare_seconds``). The receipt says
``stop_reason`` "max_rounds" and ``certified`` False (the plain objective's certificate is
reported as measured). In our measurements (``benchmarks/ncf_unlearn.py``, 1% of the
interactions deleted) one step closed 88-115% of the original-to-retrain gap in the deleted
pairs' mean score with NDCG@10 within 1% of a retrain. More steps, iterating towards the
anchored stationary point, over-forget: on ML-1M NeuMF the exact line search along the step
would take 1.5 times it, and at 1.25 times the attack AUC is already 0.022 below the
retrain's and NDCG 1.15% lower; that point of a non-convex objective is not the retrain.
``update="alternating"`` runs the sequential variant (users, then items, each block with its
own line search; ``max_rounds > 1`` iterates it until the anchored certificate's
``max_relative`` is at most ``tol``), and
``anchored=False, max_rounds=60, joint_steps=20, shared_steps=10, tol=1e-3`` is the exact
mode: it iterates to a certified stationary point of :math:`F` itself (slow on real data).

.. note:: Experimental.
"""

from __future__ import annotations

import numbers
import time
from typing import Any

import numpy as np
import torch

from recforget.data.interactions import Removal
from recforget.models.base import clone
from recforget.models.ncf import NCF
from recforget.unlearn._ncf_curvature import (
    Curvature,
    jacobi_step,
    load_curvature,
    prepare,
    prepared,
    save_curvature,
)
from recforget.unlearn._ncf_objective import (
    DEFAULT_REG,
    Anchor,
    FixedSample,
    _data_gradients,
    _kept,
    _sample_delta,
    anchor_of,
    calibrated_reg,
    certify_model,
    fixed_sample,
    gradients,
    objective,
    stationarity,
)
from recforget.unlearn._ncf_objective import ROW_FLOOR as ROW_FLOOR  # re-exported
from recforget.unlearn._ncf_objective import _shared as _shared  # re-exported (tests)
from recforget.unlearn._ncf_sample import _carry_negatives, model_negatives, stable_negatives
from recforget.unlearn._ncf_solvers import (
    _apply,
    _block_gradient,
    _cg,
    _hvp,
    block_newton,
    shared_lbfgs,
)
from recforget.unlearn._ncf_solvers import _block_jacobians as _block_jacobians  # (tests)
from recforget.unlearn.registry import register

DEFAULT_TOL = 1e-2
DEFAULT_MAX_ROUNDS = 1


# ---------------------------------------------------------------------------- helpers
def transplant(model: NCF, removal: Removal, *, negatives: bool = True, **params: Any) -> NCF:
    """A copy of ``model`` on the remaining data, removed users'/items' rows dropped.

    The copy keeps the objective's ridge (``objective_reg_``) and, when ``model`` has them
    cached and ``negatives`` is true, its fixed negatives (redrawn only for the users the
    removal touches); fine-tuning, which draws fresh negatives, passes ``negatives=False``.
    """
    dev = next(model.module_.parameters()).device
    module = model.module_.take(_kept(removal.user_map).to(dev), _kept(removal.item_map).to(dev))
    new = NCF.from_module(
        module, removal.data, **{**model.get_params(), "random_state": model.seed_, **params}
    )
    new.seed_ = model.seed_
    if hasattr(model, "objective_reg_"):
        new.objective_reg_ = model.objective_reg_
    if negatives and "_negatives_cache" in model.__dict__ and not params:
        _carry_negatives(model, removal, new)
    return new


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
def retrain(model: NCF, removal: Removal, *, random_state: int | None = None) -> tuple[NCF, dict]:
    """The oracle: same parameters and seed, trained from scratch on the remaining data.

    ``random_state`` trains with another seed instead: two retrains differ by their seeds
    alone, which measures how far apart two equally valid "forgotten" models lie.
    """
    if random_state is not None and (
        isinstance(random_state, bool)
        or not isinstance(random_state, numbers.Integral)
        or random_state < 0
    ):
        raise ValueError(f"random_state must be a non-negative integer, got {random_state!r}")
    seed = model.seed_ if random_state is None else int(random_state)
    new = clone(model).set_params(random_state=seed).fit(removal.data)
    if hasattr(model, "objective_reg_"):
        new.objective_reg_ = model.objective_reg_
    return new, {"tol": None, "epochs": new.n_iter_, "random_state": seed}


@register("finetune", "ncf")
def finetune(
    model: NCF, removal: Removal, *, epochs: int = 5, lr: float | None = None
) -> tuple[NCF, dict]:
    """Warm start, then ``epochs`` AdamW epochs of the model's own trainer on the remaining data.

    Negatives are drawn afresh each epoch among the items that are not remaining positives.

    .. note:: Experimental (approximate).
    """
    new = transplant(model, removal, negatives=False)
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
    update: str | None = None,
) -> tuple[NCF, dict]:
    """AltEraser: alternating block Newton on the (anchored) retraining objective.

    See :mod:`recforget.unlearn._ncf_solvers` for the steps and the module docstring for the
    stopping rule. Options: ``tol`` (target of the relative residual ``max_relative`` of the
    objective minimised, default :data:`DEFAULT_TOL`), ``max_rounds``
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
    one_step = (
        anchored and max_rounds == 1 and newton_steps == 1 and not (shared_steps or joint_steps)
    )
    update = _update(update, one_step, damping)
    start = time.perf_counter()
    if update == "jacobi":
        return _alteraser_jacobi(model, removal, tol, reg, start)
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
        "update": "alternating",
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


def _update(update: str | None, one_step: bool, damping: float) -> str:
    if update is None:
        return "jacobi" if one_step and damping == 0 else "alternating"
    if update not in ("jacobi", "alternating"):
        raise ValueError(f"update must be 'jacobi' or 'alternating', got {update!r}")
    if update == "jacobi" and not (one_step and damping == 0):
        raise ValueError(
            "update='jacobi' takes one anchored Newton step: it needs max_rounds=1, "
            "newton_steps=1, shared_steps=0, joint_steps=0, damping=0 and anchored=True"
        )
    return update


def _alteraser_jacobi(
    model: NCF, removal: Removal, tol: float, reg: float, start: float
) -> tuple[NCF, dict]:
    """AltEraser's default: one block-Jacobi Newton step from the prepared curvature."""
    curv = prepared(model, reg)
    prepare_seconds = 0.0
    if curv is None:  # not prepared ahead (:func:`prepare`): pay for it now
        t0 = time.perf_counter()
        curv = prepare(model, reg)
        prepare_seconds = time.perf_counter() - t0
    new = transplant(model, removal)
    new.objective_reg_ = reg
    with new._threads():
        res = jacobi_step(model, removal, new, curv)
    new.n_iter_ = 1
    return new, {
        "tol": tol,
        "update": "jacobi",
        "rounds": 1,
        "anchored": True,
        "anchored_residual": None,
        "blocks_solved": res["blocks_users"] + res["blocks_items"],
        "blocks_solved_users": res["blocks_users"],
        "blocks_solved_items": res["blocks_items"],
        "step": res["step"],
        "samples_changed": res["samples_changed"],
        "prepared": prepare_seconds == 0.0,
        "prepare_seconds": prepare_seconds,
        "loss_history": [0.0, -res["decrease"] / max(res["samples"], 1)],
        "stop_reason": "max_rounds",
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
    (:mod:`recforget.unlearn._ncf_objective`) restricted to :math:`A`: the blocks of the kept
    users and items that lost interactions, plus the shared weights when ``shared=True``.
    :math:`H_{AA}` is the Hessian of the remaining data's :math:`F` at :math:`\\theta_0`,
    inverted by conjugate gradient (``cg_steps``, stopped at a direction of non-positive
    curvature, which ReLU kinks can produce) with Hessian-vector products (double backward).
    Safeguard: the step is halved (at most ``max_halvings`` times, else not taken) until the
    anchored objective decreases (Armijo); the info's ``step`` is the fraction taken.

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


__all__ = [
    "DEFAULT_MAX_ROUNDS",
    "DEFAULT_REG",
    "DEFAULT_TOL",
    "Anchor",
    "Curvature",
    "FixedSample",
    "anchor_of",
    "block_newton",
    "calibrated_reg",
    "certify_model",
    "fixed_sample",
    "gradients",
    "load_curvature",
    "model_negatives",
    "objective",
    "prepare",
    "save_curvature",
    "shared_lbfgs",
    "stable_negatives",
    "stationarity",
    "transplant",
]
