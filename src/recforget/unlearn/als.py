"""Unlearning for bi-linear (ALS) models: retrain, warm start, Unlearn-ALS and its selective form.

All methods minimise the same thing: the ALS objective *built on the remaining data*
(:meth:`recforget.ALS.objective`), where a deleted implicit-feedback cell is an ordinary
unobserved cell (``p = 0, c = 1``), a deleted rating leaves the observed set, deleted users and
items leave the model, and every statistic the objective uses (BM25 weights, frequency-scaled
ridge weights, the global mean) is recomputed without the deleted data.

"Exact" here means a certified stationary point of that objective: every row's gradient norm is
at most ``tol`` times its own gradient norm at zero (see ``_als_objective.certificate``), as in
Xu et al., "Netflix and Forget" (arXiv 2302.06676), which warm-starts ALS from the trained
factors rather than re-randomising them.
"""

from __future__ import annotations

import numpy as np

from recforget._threads import single_blas
from recforget.data.interactions import Removal
from recforget.models._als_objective import Factors
from recforget.models._als_sweeps import check_finish, check_forcing, convergence_note
from recforget.models._certificate import relative_residuals, row_floor
from recforget.models.als import ALS
from recforget.models.base import clone
from recforget.unlearn.registry import register

# Certificate tolerances when the model has no ``grad_tol`` of its own (a model with one is
# certified at it, the stopping rule its retrain oracle shares). At 1e-3 full sweeps closed
# 0.98-0.99 of the deleted pairs' gap to the retrain (ML-100K demo, ML-1M at the bench's
# settings); selective rounds leave rows just under the tolerance and closed 0.85 and 0.75,
# at 1e-4 0.98-0.99. `recforget bench` and `recforget demo` fit, retrain and certify at
# DEFAULT_SELECTIVE_TOL, the tighter of the two, so every method is compared at one rule
# (measurements in docs/bench.md, "The stopping rule").
DEFAULT_TOL = 1e-3
DEFAULT_SELECTIVE_TOL = 1e-4
DEFAULT_MAX_SWEEPS = 500
# CG rows of Unlearn-ALS's sweeps are solved to this share of the tolerance, at most
# INNER_CG_CAP iterations a row (see unlearn_als)
INNER_FRACTION = 0.1
INNER_CG_CAP = 10
SWITCH_FRACTION = 0.5  # selective hands over to full sweeps when more rows than this are over
HANDOVER_ROUNDS = 10  # ... after this many rounds


def transplant(model: ALS, removal: Removal) -> ALS:
    """A copy of ``model`` standing on the remaining data, with removed rows dropped."""
    new = clone(model)
    keep_u = removal.user_map >= 0
    keep_i = removal.item_map >= 0
    F = Factors(
        np.ascontiguousarray(model.user_factors_[keep_u]),
        np.ascontiguousarray(model.item_factors_[keep_i]),
        None if model.user_bias_ is None else model.user_bias_[keep_u].copy(),
        None if model.item_bias_ is None else model.item_bias_[keep_i].copy(),
    )
    new._set_state(F, removal.data)
    new.seed_ = model.seed_
    new.n_iter_ = 0
    new.stop_reason_ = "warm"
    new.loss_history_ = []
    return new


def _report(model: ALS, tol: float | None, **info) -> dict:
    """Method bookkeeping; the objective and certificate are added by ``unlearn`` (untimed)."""
    return {"tol": tol, **info}


@register("retrain", "als")
@single_blas
def retrain(
    model: ALS,
    removal: Removal,
    *,
    tol: float | None = None,
    max_sweeps: int | None = None,
    accelerate: str | None = "auto",
) -> tuple[ALS, dict]:
    """The oracle: same parameters and seed, fitted from scratch on the remaining data.

    Uses the model's own stopping rule unless ``tol`` (gradient certificate) or ``max_sweeps``
    override it, so that it can be run at the same stopping rule as the other methods.
    ``accelerate`` picks the sweep driver ("auto": the model's own ``accelerate``).
    """
    new = clone(model).set_params(random_state=model.seed_)
    if tol is not None:
        new.set_params(grad_tol=tol, tol=None)
    if max_sweeps is not None:
        new.set_params(iterations=max_sweeps)
    if accelerate != "auto":
        new.set_params(accelerate=accelerate)
    new.fit(removal.data)
    new.set_params(accelerate=model.accelerate)
    n = new.seen_.n_users + new.seen_.n_items
    return new, _report(
        new,
        tol if tol is not None else model.grad_tol,
        sweeps=new.n_iter_,
        rows_solved=new.n_iter_ * n + new.finish_["rows"],
        stop_reason=new.stop_reason_,
        driver=new.driver_,
        finish=new.finish_,
        **_note(new, tol if tol is not None else model.grad_tol, "max_sweeps"),
    )


@register("warmstart", "als")
@single_blas
def warmstart(model: ALS, removal: Removal, *, sweeps: int | None = None) -> tuple[ALS, dict]:
    """A fixed number of ALS sweeps (default: the model's ``iterations``) from the old factors."""
    new = transplant(model, removal)
    n_sweeps = model.iterations if sweeps is None else int(sweeps)
    new.sweeps(removal.data, n_sweeps)
    n = new.seen_.n_users + new.seen_.n_items
    return new, _report(
        new, None, sweeps=new.n_iter_, rows_solved=new.n_iter_ * n, stop_reason="iterations"
    )


@register("unlearn-als", "als")
@single_blas
def unlearn_als(
    model: ALS,
    removal: Removal,
    *,
    tol: float | None = None,
    max_sweeps: int = DEFAULT_MAX_SWEEPS,
    solver: str = "cg",
    accelerate: str | None = "auto",
    inner_tol: float | str | None = "auto",
    cg_steps: int | None = None,
    forcing: float | None = None,
    finish: float | None = None,
) -> tuple[ALS, dict]:
    """Unlearn-ALS: warm-started full sweeps on the remaining data until certified.

    ``accelerate`` picks the sweep driver: "auto" (the model's own ``accelerate``, which by
    default accelerates sweeps run to a certificate), "ncg", "anderson" or ``None`` (plain
    sweeps); see :mod:`recforget.models._als_sweeps`.

    ``solver`` is the row solver for these sweeps: "cg" (default) or "cholesky". Conjugate
    gradient warm-started from the current row costs about a third of an exact solve and, next
    to the solution, reaches the same certificate in fewer seconds (it may take a few more
    sweeps); the certificate, not the solver, decides when to stop. The returned model keeps
    the original model's ``solver`` and ``cg_steps`` parameters.

    ``inner_tol`` is how accurately each CG row is solved: "auto" (default) to
    ``INNER_FRACTION`` times ``tol`` relative residual, in at most ``cg_steps`` iterations
    (default ``INNER_CG_CAP``), so that rows already there take no step and ill-conditioned
    ones (weak regularisation) are not left half-solved; a number sets the relative residual;
    ``None`` runs ``cg_steps`` (default: the model's) iterations on every row, the classic
    inexact sweep. Measured on ML-1M at regularisation 0.01 (1% deleted, tolerance 1e-3) the
    classic 3-step rows need 103 plain sweeps where these need 11 (docs/acceleration.md).

    ``forcing`` (``None`` by default, else a number in (0, 1); CG rows with an ``inner_tol``
    only) is an inexact-Newton forcing term: each sweep then stops a row once its residual is
    ``forcing`` times the one it started the sweep with, never past ``inner_tol``. It saves CG
    work with plain sweeps far from stationary, but the row map then changes from sweep to
    sweep and Anderson needs more sweeps, so it is off by default (docs/acceleration.md).

    ``finish``: once at most this share of all rows fails the certificate (``None``: the
    driver's default, ``FINISH_FRACTION``; ``0``: never), try to finish by re-solving only the
    failing rows, recomputing the certificate from scratch; an attempt that does not certify
    is dropped (see :class:`recforget.models._als_sweeps._Finish`). The receipt's ``finish``
    says what it did.
    """
    tol = _tol(model, tol)
    check_forcing(forcing)
    check_finish(finish)
    new = transplant(model, removal)
    inner, steps = _inner(model, tol, solver, inner_tol, cg_steps)
    new.set_params(solver=_check_solver(solver), cg_steps=steps)
    new.sweeps(
        removal.data, max_sweeps, grad_tol=tol, accelerate=accelerate, inner_tol=inner,
        forcing=forcing, finish=finish,
    )  # fmt: skip
    new.set_params(solver=model.solver, cg_steps=model.cg_steps)
    n = new.seen_.n_users + new.seen_.n_items
    return new, _report(
        new,
        tol,
        sweeps=new.n_iter_,
        rows_solved=new.n_iter_ * n + new.finish_["rows"],
        stop_reason=new.stop_reason_,
        driver=new.driver_,
        finish=new.finish_,
        **_note(new, tol, "max_sweeps"),
    )


@register("unlearn-als-selective", "als")
@single_blas
def unlearn_als_selective(
    model: ALS,
    removal: Removal,
    *,
    tol: float | None = None,
    max_rounds: int = 2000,
    solver: str = "cg",
    touched_first: bool = True,
    accelerate: str | None = "auto",
    switch_fraction: float = SWITCH_FRACTION,
    handover_rounds: int = HANDOVER_ROUNDS,
    max_sweeps: int = DEFAULT_MAX_SWEEPS,
    inner_tol: float | str | None = "auto",
    forcing: float | None = None,
) -> tuple[ALS, dict]:
    """Re-solve only the rows whose gradient exceeds the tolerance, until none does.

    With ``touched_first`` (default) the first round also re-solves every kept row that lost
    data (the deleted pairs' users and items, a deleted user's items), whatever its gradient:
    a single deleted interaction moves an active user's gradient by about one part in its
    number of interactions, which a loose tolerance would let through, leaving the trace.

    The gradient of every row of the remaining-data objective is computed once; then each round
    re-solves the users over the threshold and the items over it, and *updates* the gradients
    of the rows they touch (their entries' terms, plus one ``n x k x k`` product for the shared
    Gram term) instead of recomputing them. It stops when no row exceeds ``tol`` times its own
    gradient at zero: the same certificate as :func:`unlearn_als`, at a cost that grows with the
    deletion, not the data set. (Models with biases recompute the gradients each round.)
    The receipt's certificate is then recomputed from scratch, independently of this bookkeeping.

    When the problem is not local (after ``handover_rounds`` rounds, more than
    ``switch_fraction`` of all rows still exceed the tolerance, as for a model far from
    stationary, e.g. trained for a fixed number of iterations), a round costs a full sweep and
    converges no faster than one, so the method hands over to the accelerated full-sweep
    driver (``accelerate``, "auto": the model's own; ``None`` never hands over) for at most
    ``max_sweeps`` iterations, with CG rows solved as ``inner_tol`` and ``forcing`` say (see
    :func:`unlearn_als`). (A deletion from a certified model also puts many rows just over the
    tolerance at first; a few rounds clear them, hence the wait.)
    """
    tol = _tol(model, tol, DEFAULT_SELECTIVE_TOL)
    solver = _check_solver(solver)
    check_forcing(forcing)
    new = transplant(model, removal)
    driver = new._driver(accelerate, tol)
    obj = new.objective(removal.data)
    F = new._factors()
    # rows that lost data are re-solved in the first round whatever their gradient says
    touched = {
        "users": removal.user_map[removal.affected_users] if touched_first else np.empty(0, int),
        "items": removal.item_map[removal.affected_items] if touched_first else np.empty(0, int),
    }
    rounds = solved_u = solved_i = 0
    handover = False
    grad = {"users": obj.gradients("users", F), "items": obj.gradients("items", F)}
    while rounds < max_rounds:
        norms = {s: _norms(g) for s, g in grad.items()}
        floor = row_floor(np.concatenate([norms["users"][1], norms["items"][1]]))
        over = {s: np.flatnonzero(relative_residuals(*norms[s], floor) > tol) for s in norms}
        first = rounds == 0
        if len(over["users"]) == 0 and len(over["items"]) == 0:
            if not (first and (len(touched["users"]) or len(touched["items"]))):
                break
        n_over = len(over["users"]) + len(over["items"])
        n_rows = F.X.shape[0] + F.Y.shape[0]
        if driver is not None and rounds >= handover_rounds and n_over > switch_fraction * n_rows:
            handover = True
            break
        rounds += 1
        for which, other in (("users", "items"), ("items", "users")):
            rows = over[which]
            if which == "items":  # the users just moved: look again
                n_i = _norms(grad["items"])
                rows = np.flatnonzero(relative_residuals(*n_i, floor) > tol)
            if first:
                rows = np.union1d(rows, touched[which])
            if len(rows) == 0:
                continue
            X = F.X if which == "users" else F.Y
            old = X[rows].copy()
            obj.solve(which, F, rows, solver=solver, cg_steps=model.cg_steps)
            if which == "users":
                solved_u += len(rows)
            else:
                solved_i += len(rows)
            if obj.incremental:
                g, b = grad[which]
                g[rows], b[rows] = obj.gradients(which, F, rows)
                obj.propagate(which, F, rows, old, *grad[other])
            else:
                grad = {"users": obj.gradients("users", F), "items": obj.gradients("items", F)}
    new._set_state(F, removal.data)
    new.n_iter_ = rounds
    new.stop_reason_ = "grad_tol" if rounds < max_rounds else "max_rounds"
    info = {}
    if handover:
        inner, steps = _inner(model, tol, solver, inner_tol, None)
        new.set_params(solver=solver, cg_steps=steps)  # the same row solver as the rounds
        new.sweeps(
            removal.data, max_sweeps, grad_tol=tol, accelerate=driver, fresh=True,
            inner_tol=inner, forcing=forcing,
        )  # fmt: skip
        new.set_params(solver=model.solver, cg_steps=model.cg_steps)
        solved_u += new.n_iter_ * new.seen_.n_users + new.finish_["users"]
        solved_i += new.n_iter_ * new.seen_.n_items + new.finish_["items"]
        info = {
            "selective_rounds": rounds,
            "handover_sweeps": new.n_iter_,
            "driver": driver,
            "finish": new.finish_,
        }
        info.update(_note(new, tol, "max_sweeps"))
        new.n_iter_ += rounds
    return new, _report(
        new,
        tol,
        sweeps=new.n_iter_,
        rows_solved=solved_u + solved_i,
        rows_solved_users=solved_u,
        rows_solved_items=solved_i,
        stop_reason=new.stop_reason_,
        **info,
    )


def _note(model: ALS, tol: float | None, option: str) -> dict:
    """``{"convergence": ...}`` when a certified run stopped at its cap (see convergence_note)."""
    if tol is None or model.stop_reason_ == "grad_tol":
        return {}
    trace = getattr(model, "sweep_trace_", [])
    note = convergence_note(trace, tol, len(trace), option=option)
    return {} if note is None else {"convergence": note}


def _inner(
    model: ALS, tol: float, solver: str, inner_tol: float | str | None, cg_steps: int | None
) -> tuple[float | None, int]:
    """``(inner_tol, cg_steps)`` for the sweeps: the row accuracy and the CG cap."""
    if inner_tol == "auto":
        inner_tol = INNER_FRACTION * tol if solver == "cg" else None
    elif inner_tol is not None:
        if not (isinstance(inner_tol, int | float) and np.isfinite(inner_tol) and inner_tol > 0):
            raise ValueError(
                f"inner_tol must be 'auto', None or a positive number, got {inner_tol!r}"
            )
        inner_tol = float(inner_tol)
    if cg_steps is None:
        cg_steps = INNER_CG_CAP if inner_tol is not None else model.cg_steps
    if int(cg_steps) != cg_steps or cg_steps < 1:
        raise ValueError(f"cg_steps must be a positive integer, got {cg_steps!r}")
    return inner_tol, int(cg_steps)


def _norms(gb: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    g, b = gb
    return np.sqrt(np.einsum("ij,ij->i", g, g)), np.sqrt(np.einsum("ij,ij->i", b, b))


def _tol(model: ALS, tol: float | None, default: float = DEFAULT_TOL) -> float:
    if tol is None:
        tol = model.grad_tol if model.grad_tol is not None else default
    if not (np.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    return float(tol)


def _check_solver(solver: str) -> str:
    if solver not in ("cg", "cholesky"):
        raise ValueError(f"solver must be 'cg' or 'cholesky', got {solver!r}")
    return solver
