"""AltEraser: alternating block Newton on the NCF retraining objective.

AltEraser's default step
------------------------
By default AltEraser takes *one* anchored Newton step (``max_rounds=1``) on every block whose
samples the deletion changed, all blocks from the same starting point (``update="jacobi"``,
:mod:`recforget.unlearn.ncf.update`): with the model's block curvature prepared ahead
(:func:`prepare`, one pass; unlearned models carry it forward), a request costs work in
proportion to the samples it changes plus one pass that verifies the anchored objective
decreased (Armijo; the step is halved otherwise). Without a prepared curvature the first
request pays for :func:`prepare` (the receipt's ``prepare_seconds``). The receipt says
``stop_reason`` "max_rounds" and ``certified`` False (the plain objective's certificate is
reported as measured). One step is the default because it lands where a retrain does
(``benchmarks/ncf_unlearn.py``; docs/results.md); more steps, iterating towards the anchored
stationary point, over-forget: that point of a non-convex objective is not the retrain.
The step's ridge is per row by default (``ridge="row"``,
:func:`~recforget.unlearn.ncf.update.row_ridges`): each embedding row's own calibrated ridge,
capped at the model's global one. AdamW leaves a light user's row at a much smaller effective
ridge than a heavy user's, so one global ridge makes the light users' steps too short: on the
neural benchmark's ML-1M NeuMF their deleted pairs kept a trace that a calibrated membership
attack (LiRA, :mod:`recforget.evaluate.lira`) told from a retrain; with per-row ridges it does
not (docs/privacy.md). ``ridge="global"`` is the earlier step (and the one
:class:`~recforget.unlearn.ncf.stream.NCFForgetter` streams).
``update="alternating"`` runs the sequential variant (users, then items, each block with its
own line search; ``max_rounds > 1`` iterates it until the anchored certificate's
``max_relative`` is at most ``tol``), and
``anchored=False, max_rounds=60, joint_steps=20, shared_steps=10, tol=1e-3`` is the exact
mode: it iterates to a certified stationary point of :math:`F` itself (slow on real data).

.. note:: Experimental.
"""

from __future__ import annotations

import time

import numpy as np

from recforget.data.interactions import Removal
from recforget.models._ncf_curvature import prepared
from recforget.models._ncf_objective import fixed_sample, objective_reg, stationarity
from recforget.models.ncf import NCF
from recforget.unlearn.ncf.sample import anchor_of, sample_delta
from recforget.unlearn.ncf.solvers import block_gradient, block_newton, shared_lbfgs
from recforget.unlearn.ncf.transplant import affected_rows, transplant
from recforget.unlearn.ncf.update import DEFAULT_RIDGE, RIDGES, jacobi_step, prepare
from recforget.unlearn.registry import register

DEFAULT_TOL = 1e-2


DEFAULT_MAX_ROUNDS = 1


def _tol(tol: float | None) -> float:
    tol = DEFAULT_TOL if tol is None else float(tol)
    if not (np.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    return tol


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
    ridge: str | None = None,
) -> tuple[NCF, dict]:
    """AltEraser: alternating block Newton on the (anchored) retraining objective.

    See :mod:`recforget.unlearn.ncf.solvers` for the steps and the module docstring for the
    stopping rule. Options: ``tol`` (target of the relative residual ``max_relative`` of the
    objective minimised, default :data:`DEFAULT_TOL`), ``max_rounds``
    (default :data:`DEFAULT_MAX_ROUNDS`), ``max_seconds`` (time budget), ``newton_steps`` per
    block per round, ``shared_steps`` (L-BFGS iterations per round on the shared weights),
    ``joint_steps`` (L-BFGS iterations per round on all parameters; 0, the default, switches
    them off), ``damping`` (added to every block Hessian), ``reg`` (the objective's ridge;
    default the model's ``objective_reg_`` or :data:`DEFAULT_REG`), ``anchored`` (minimise
    :math:`F - c^\\top\\theta` with :math:`c` the original's residual; ``False``: :math:`F`)
    and ``ridge`` (the one-step update's ridge: ``"row"``, the default
    :data:`DEFAULT_RIDGE`, per embedding row; ``"global"``: ``reg`` on every row; the other
    updates take ``"global"``).
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
    reg = objective_reg(model, reg)
    one_step = (
        anchored and max_rounds == 1 and newton_steps == 1 and not (shared_steps or joint_steps)
    )
    update = _update(update, one_step, damping)
    ridge = _ridge(ridge, update)
    start = time.perf_counter()
    if update == "jacobi":
        return _alteraser_jacobi(model, removal, tol, reg, ridge, start)
    new = transplant(model, removal)
    new.objective_reg_ = reg
    module = new.module_
    au, ai = affected_rows(removal)
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
            delta = sample_delta(model, removal, new)
            item_kw = {"tilt": block_gradient(module, sample, "items", ai, reg) + delta.items[ai]}
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
        "ridge": "global",
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


def _ridge(ridge: str | None, update: str) -> str:
    if ridge is None:
        return DEFAULT_RIDGE if update == "jacobi" else "global"
    if ridge not in RIDGES:
        raise ValueError(f"ridge must be one of {RIDGES}, got {ridge!r}")
    if ridge == "row" and update != "jacobi":
        raise ValueError("ridge='row' is a ridge of the one-step update (update='jacobi')")
    return ridge


def _alteraser_jacobi(
    model: NCF, removal: Removal, tol: float, reg: float, ridge: str, start: float
) -> tuple[NCF, dict]:
    """AltEraser's default: one block-Jacobi Newton step from the prepared curvature."""
    curv = prepared(model, reg, ridge)
    prepare_seconds = 0.0
    if curv is None:  # not prepared ahead (:func:`prepare`): pay for it now
        t0 = time.perf_counter()
        curv = prepare(model, reg, ridge=ridge)
        prepare_seconds = time.perf_counter() - t0
    new = transplant(model, removal)
    new.objective_reg_ = reg
    with new._threads():
        res = jacobi_step(model, removal, new, curv)
    new.n_iter_ = 1
    return new, {
        "tol": tol,
        "update": "jacobi",
        "ridge": ridge,
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


__all__ = ["DEFAULT_MAX_ROUNDS", "DEFAULT_RIDGE", "DEFAULT_TOL", "alteraser"]
