"""The ALS sweep driver: plain sweeps, or sweeps accelerated by ALS-NCG or Anderson mixing.

One driver serves every full-sweep path (``ALS.fit``, warm-start sweeps, the retrain oracle,
Unlearn-ALS), for implicit and explicit feedback and both row solvers: each iteration is one
ALS sweep with the row kernels of :mod:`recforget.kernels.als` (users with items fixed, then
items with users fixed), followed by a cheap correction:

``"ncg"``
    ALS-NCG (Winlaw, Hynes, Caterini, De Sterck, arXiv 1508.03110): nonlinear conjugate
    gradient on the joint objective with the ALS sweep as preconditioner. The preconditioned
    gradient is ``x - ALS(x)``; directions are combined by the Polak-Ribiere rule (restarted
    when negative or not a descent direction), and the step is the exact minimiser of the
    objective along the direction, a quartic whose coefficients cost one pass over the data
    (:mod:`recforget.kernels.als_line`).
``"anderson"``
    Anderson acceleration (type II, memory ``m``) of the sweep's fixed point ``x = ALS(x)``:
    the next point mixes the last ``m`` sweep outputs with least-squares weights that minimise
    the linearised residual.

Both are safeguarded: a candidate is accepted only if its objective, computed from scratch, is
no higher than the current point's; otherwise the memory is cleared and the driver falls back:
ALS-NCG to the plain sweep's output, Anderson (by default) to the best point, by an exact line
search, on the line through the plain sweep's output along the refused correction (never
worse than that output; ``safeguard="sweep"`` takes the output itself). The plain sweep never
raises the objective (each row solve minimises its own ridge problem), so the objective never
increases whatever the driver. The first iteration is always a plain sweep, so that every row is
re-solved at least once on the data the objective stands on, as with plain sweeps.

Runs to a certificate end with a selective finish (:class:`_Finish`): once only a small share of
the rows fails the certificate, re-solving just those rows, on a copy that is kept only if it
certifies, saves the sweeps of a long tail.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from recforget.kernels import als as K
from recforget.kernels.als_line import (
    entry_line_coefficients,
    entry_loss,
    gram_line_coefficients,
    quartic_argmin,
)
from recforget.models._als_objective import ALSObjective, Factors
from recforget.models._certificate import certificate, certified, relative_residuals, row_floor

ACCELERATIONS = ("ncg", "anderson")
DEFAULT_ACCELERATION = "anderson"
ANDERSON_MEMORY = 5
SAFEGUARDS = ("line", "sweep")  # what Anderson takes when a mixed point raises the objective
DEFAULT_SAFEGUARD = "line"
# the residual Anderson's least squares fits: the items' part (the block a sweep starts from;
# see _Anderson) or all factors
ANDERSON_FITS = ("items", "all")
DEFAULT_ANDERSON_FIT = "items"
# the finish (see _Finish): tried once at most this share of all rows exceed the tolerance
FINISH_FRACTION = 0.15
FINISH_ROUNDS = 6  # rounds per attempt at most (see _Finish for when one ends earlier)
FINISH_INNER = 0.1  # CG rows of the finish are solved to this share of the tolerance ...
FINISH_CG_CAP = 10  # ... in at most this many iterations (or the sweeps' own, if tighter)


@dataclass
class SweepRun:
    """What :func:`run_sweeps` did: sweeps, why it stopped, and its trace."""

    sweeps: int = 0
    reason: str = "iterations"
    history: list[float] = field(default_factory=list)
    certificate: dict[str, float] | None = None
    trace: list[dict[str, float]] = field(default_factory=list)
    accepted: int = 0  # accelerated steps kept
    fallbacks: int = 0  # accelerated steps refused by the safeguard
    line_steps: int = 0  # Anderson refusals replaced by the line search's point
    cg_iterations: int = 0  # CG iterations of the row solves, summed over rows and sweeps
    finish_attempts: int = 0  # times the finish was tried (see _Finish)
    finish_rounds: int = 0  # its rounds, all attempts
    finish_users: int = 0  # user rows it re-solved, all attempts
    finish_items: int = 0  # item rows it re-solved, all attempts
    finished: bool = False  # the certificate was reached by the finish


def check_accelerate(accelerate: str | None) -> str | None:
    """Validate a driver name: ``None`` (plain sweeps), "ncg" or "anderson"."""
    if accelerate is not None and accelerate not in ACCELERATIONS:
        raise ValueError(f"accelerate must be None, 'ncg' or 'anderson', got {accelerate!r}")
    return accelerate


def check_forcing(forcing: float | None) -> float | None:
    """Validate a forcing term: ``None`` or a number strictly between 0 and 1."""
    if forcing is None:
        return None
    if isinstance(forcing, bool) or not isinstance(forcing, int | float) or not 0 < forcing < 1:
        raise ValueError(f"forcing must be None or a number in (0, 1), got {forcing!r}")
    return float(forcing)


def check_finish(finish: float | None) -> float | None:
    """Validate a finish share: ``None`` (the default) or a number in ``[0, 1]``."""
    if finish is None:
        return None
    if isinstance(finish, bool) or not isinstance(finish, int | float) or not 0 <= finish <= 1:
        raise ValueError(f"finish must be None or a share of the rows in [0, 1], got {finish!r}")
    return float(finish)


# ---------------------------------------------------------------------- flat views
def _pack(F: Factors) -> np.ndarray:
    parts = [F.X.ravel(), F.Y.ravel()]
    if F.bu is not None:
        parts += [F.bu, F.bi]
    return np.concatenate([np.asarray(p, dtype=np.float64) for p in parts])


def _unpack(vec: np.ndarray, F: Factors) -> None:
    """Write ``vec`` into ``F``'s arrays (cast to their dtype)."""
    nx, ny = F.X.size, F.Y.size
    F.X[:] = vec[:nx].reshape(F.X.shape)
    F.Y[:] = vec[nx : nx + ny].reshape(F.Y.shape)
    if F.bu is not None:
        nu = F.bu.size
        F.bu[:] = vec[nx + ny : nx + ny + nu]
        F.bi[:] = vec[nx + ny + nu :]


def _split(vec: np.ndarray, F: Factors) -> tuple[np.ndarray, ...]:
    nx, ny = F.X.size, F.Y.size
    P = vec[:nx].reshape(F.X.shape)
    Q = vec[nx : nx + ny].reshape(F.Y.shape)
    if F.bu is None:
        return P, Q, None, None
    nu = F.bu.size
    return P, Q, vec[nx + ny : nx + ny + nu], vec[nx + ny + nu :]


def _items_part(vec: np.ndarray, F: Factors) -> np.ndarray:
    """The items' entries of a packed vector (``Y``, then the item biases if any)."""
    _, Q, _, qi = _split(vec, F)
    return Q.ravel() if qi is None else np.concatenate([Q.ravel(), qi])


def _gradient(obj: ALSObjective, F: Factors) -> tuple[np.ndarray, dict[str, float], tuple]:
    """The joint gradient (flat, float64), the stationarity certificate it gives, and its
    per-row ``(gradient norms, scales)`` (users, then items)."""
    gu, bu = obj.gradients("users", F)
    gi, bi = obj.gradients("items", F)
    k = F.X.shape[1]
    parts = [gu[:, :k].ravel(), gi[:, :k].ravel()]
    if F.bu is not None:
        parts += [gu[:, k], gi[:, k]]
    norms = np.sqrt(np.concatenate([np.einsum("ij,ij->i", gu, gu), np.einsum("ij,ij->i", gi, gi)]))
    rhs = np.sqrt(np.concatenate([np.einsum("ij,ij->i", bu, bu), np.einsum("ij,ij->i", bi, bi)]))
    return np.concatenate(parts), certificate(norms, rhs), (norms, rhs)


def _loss_constant(obj: ALSObjective) -> float:
    """``sum_e v_e`` (implicit: ``c p``) or ``sum_e r_e^2`` (explicit), kept on ``obj``."""
    const = getattr(obj, "_sweep_loss_constant", None)
    if const is None:
        if obj.feedback == "implicit":
            const = float(obj.users.v.astype(np.float64).sum())
        else:
            const = float(obj.data.values @ obj.data.values)
        obj._sweep_loss_constant = const
    return const


def loss_from_user_gradients(
    obj: ALSObjective, F: Factors, grad: np.ndarray, rhs: np.ndarray
) -> float:
    """``obj.loss(F)`` from the users' gradients ``grad = 2 (A_u x_u - b_u)`` and ``rhs =
    2 b_u`` at ``F`` (no biases): each user's terms are ``x_u' A_u x_u - 2 b_u' x_u`` plus a
    constant, that is ``x_u' (grad_u - rhs_u) / 2``; the items' ridge is added."""
    if obj.biases:
        raise ValueError("loss_from_user_gradients: the objective has biases")
    X64, Y64 = F.X.astype(np.float64), F.Y.astype(np.float64)
    users = 0.5 * float(np.einsum("ij,ij->", X64, grad - rhs))
    return users + _loss_constant(obj) + float(obj.items.reg @ np.einsum("ij,ij->i", Y64, Y64))


def fast_loss(obj: ALSObjective, F: Factors) -> float:
    """``obj.loss(F)`` in one fused pass over the entries (the driver's safeguard uses it)."""
    data, users, items = obj.data, obj.users, obj.items
    const = _loss_constant(obj)
    a0 = None
    if obj.biases:
        a0 = obj.global_mean + F.bu[data.row_of_entry].astype(np.float64) + F.bi[data.indices]
    total = entry_loss(data.indptr, data.indices, users.w, users.v, F.X, F.Y, a0) + const
    if obj.feedback == "implicit":
        total += float(np.sum(K.gram(F.X) * K.gram(F.Y)))
    X64, Y64 = F.X.astype(np.float64), F.Y.astype(np.float64)
    total += float(users.reg @ np.einsum("ij,ij->i", X64, X64))
    total += float(items.reg @ np.einsum("ij,ij->i", Y64, Y64))
    if obj.biases:
        total += float(users.reg @ F.bu.astype(np.float64) ** 2)
        total += float(items.reg @ F.bi.astype(np.float64) ** 2)
    return total


def line_coefficients(obj: ALSObjective, F: Factors, direction: np.ndarray) -> np.ndarray:
    """``[0, c1, .., c4]``: ``L(F + t D) - L(F)`` as a polynomial in ``t`` (float64)."""
    P, Q, dbu, dbi = _split(direction, F)
    data, users, items = obj.data, obj.users, obj.items
    a0 = b0 = None
    if obj.biases:
        rows, cols = data.row_of_entry, data.indices
        a0 = obj.global_mean + F.bu[rows].astype(np.float64) + F.bi[cols]
        b0 = dbu[rows] + dbi[cols]
    c = entry_line_coefficients(data.indptr, data.indices, users.w, users.v, F.X, F.Y, P, Q, a0, b0)
    if obj.feedback == "implicit":
        c = c + gram_line_coefficients(F.X, F.Y, P, Q)
    X64, Y64 = F.X.astype(np.float64), F.Y.astype(np.float64)
    c[1] += 2.0 * float(users.reg @ np.einsum("ij,ij->i", X64, P))
    c[1] += 2.0 * float(items.reg @ np.einsum("ij,ij->i", Y64, Q))
    c[2] += float(users.reg @ np.einsum("ij,ij->i", P, P) + items.reg @ np.einsum("ij,ij->i", Q, Q))
    if obj.biases:
        c[1] += 2.0 * float(users.reg @ (F.bu * dbu) + items.reg @ (F.bi * dbi))
        c[2] += float(users.reg @ dbu**2 + items.reg @ dbi**2)
    return c


# ---------------------------------------------------------------------- the driver
def run_sweeps(
    obj: ALSObjective,
    F: Factors,
    n: int,
    *,
    solver: str = "cholesky",
    cg_steps: int = 3,
    tol: float | None = None,
    grad_tol: float | None = None,
    accelerate: str | None = None,
    inner_tol: float | None = None,
    forcing: float | None = None,
    safeguard: str | None = None,
    finish: float | None = None,
    track_loss: bool = False,
    progress: bool = False,
    on_step: Callable[[Factors, dict[str, Any]], None] | None = None,
) -> SweepRun:
    """Run up to ``n`` sweep iterations on ``obj`` from ``F`` (updated in place).

    Parameters
    ----------
    obj : ALSObjective
        The objective to minimise (built on the data the model will stand on).
    F : Factors
        Start point, overwritten by the result.
    n : int
        Maximum number of iterations; each costs one ALS sweep.
    solver, cg_steps
        Row solver of the sweeps ("cholesky" or "cg").
    tol : float or None
        Stop when an iteration lowers the objective by at most ``tol`` relative to its value.
    grad_tol : float or None
        Stop when the stationarity certificate's ``max_relative`` is at most ``grad_tol``.
    accelerate : {None, "ncg", "anderson"}
        ``None`` runs plain sweeps.
    inner_tol : float or None
        With CG rows, solve each row only to this relative residual (``cg_steps`` is then a
        cap; rows already there take no step). ``None``: ``cg_steps`` iterations on every row.
    forcing : float or None
        With ``inner_tol``, a forcing term ``0 < forcing < 1`` (inexact Newton, after
        Eisenstat and Walker): each sweep solves a CG row only until its residual is
        ``forcing`` times the one it started the sweep with, never past ``inner_tol``, so
        rows far from their solution take few steps. ``None``: every row to ``inner_tol``.
    safeguard : {"line", "sweep"} or None
        What Anderson takes when a mixed point would raise the objective (see ``_Anderson``);
        ``None``: ``DEFAULT_SAFEGUARD``.
    finish : float or None
        With ``grad_tol``: once at most this share of all rows fails the certificate, try to
        finish by re-solving only those rows (see :class:`_Finish`); ``0`` never does.
        ``None``: ``FINISH_FRACTION``.
    track_loss : bool
        Record the objective after each iteration in ``history`` (also done with ``tol``).
    on_step : callable or None
        Called as ``on_step(F, info)`` after every iteration with the accepted point.

    Returns
    -------
    SweepRun
        ``trace`` holds ``{"sweep", "seconds", "max_relative"}`` after each iteration when
        ``grad_tol`` is set (``seconds`` since the start, certificate included); when the
        finish certified the run, the last entry is the finished point's, with its sweep's
        own residual as ``swept_max_relative``.
    """
    check_accelerate(accelerate)
    check_forcing(forcing)
    safeguard = DEFAULT_SAFEGUARD if safeguard is None else safeguard
    if safeguard not in SAFEGUARDS:
        raise ValueError(f"safeguard must be 'line' or 'sweep', got {safeguard!r}")
    finish = FINISH_FRACTION if check_finish(finish) is None else float(finish)
    run = SweepRun()
    sweep = _Sweeper(obj, solver, cg_steps, inner_tol, run, forcing, grad_tol is not None)
    finisher = _Finish(obj, sweep, finish, run) if grad_tol is not None and finish > 0 else None
    track = tol is not None or track_loss or accelerate is not None

    def loss_of(G: Factors) -> float:
        return sweep.loss(G) if accelerate is not None else obj.loss(G)

    start = time.perf_counter()
    prev = loss_of(F) if (tol is not None or accelerate is not None) else None
    state: _NCG | _Anderson | None = None
    if accelerate == "ncg":
        state = _NCG()
    elif accelerate == "anderson":
        state = _Anderson(safeguard=safeguard, fit=DEFAULT_ANDERSON_FIT)
    bar = tqdm(range(n), desc="ALS", disable=not progress, leave=False)
    for _ in bar:
        if state is None or run.sweeps == 0:
            sweep(F)
            loss = loss_of(F) if track else None
            if state is not None:
                state.reset(obj, F, loss)
        else:
            loss = state.step(obj, F, sweep, run)
        run.sweeps += 1
        if loss is not None and (tol is not None or track_loss):
            run.history.append(loss)
            bar.set_postfix(loss=f"{loss:.5g}")
        if on_step is not None:
            on_step(F, {"sweep": run.sweeps, "loss": loss})
        if tol is not None and prev is not None and loss is not None:
            if prev - loss <= tol * abs(prev):
                run.reason = "tol"
                break
        prev = loss if loss is not None else prev
        if grad_tol is not None:
            # ALS-NCG has the gradient, hence the certificate (and its rows), of the accepted
            # point already
            if isinstance(state, _NCG):
                cert, rows = state.cert, state.rows
            else:
                cert = sweep.certify(F)
                rows = sweep.rows
            run.certificate = cert
            run.trace.append(
                {
                    "sweep": run.sweeps,
                    "seconds": time.perf_counter() - start,
                    "max_relative": cert["max_relative"],
                }
            )
            bar.set_postfix(residual=f"{cert['max_relative']:.3g}")
            if certified(cert, grad_tol):
                run.reason = "grad_tol"
                break
            done = finisher(F, rows, grad_tol) if finisher is not None else None
            if done is not None:
                run.certificate, run.reason, run.finished = done, "grad_tol", True
                # the last point is the finished one (its sweep's own residual kept beside it)
                run.trace[-1].update(
                    seconds=time.perf_counter() - start,
                    max_relative=done["max_relative"],
                    swept_max_relative=cert["max_relative"],
                )
                if run.history and (tol is not None or track_loss):
                    run.history[-1] = obj.loss(F)  # one value per sweep: the finished point's
                break
    return run


class _Sweeper:
    """One ALS sweep (users with items fixed, then items with users fixed) and the certificate.

    With ``inner_tol``, CG rows stop at that relative residual (or, with ``forcing``, at that
    share of the residual each row starts the sweep with, whichever is looser); the scale
    floor they use is the certificate's, refreshed by every :meth:`certify`.

    The certificate's pass over the users is also the next sweep's first: a sweep starts by
    solving the users at the point just certified, and a CG row's starting residual
    ``b_r - A_r x_r`` is minus half the gradient the certificate computed there. With CG rows
    (and no biases) :meth:`certify` keeps the users' gradients and the point they belong to,
    and the next sweep, if it starts from that same point (checked by value), hands them to
    the CG instead of recomputing them from the data.
    """

    def __init__(
        self,
        obj,
        solver: str,
        cg_steps: int,
        inner_tol: float | None,
        run,
        forcing=None,
        certifying: bool = False,
    ) -> None:
        self.obj, self.solver, self.cg_steps, self.run = obj, solver, cg_steps, run
        self.rel = 0.0 if inner_tol is None or solver != "cg" else float(inner_tol)
        self.eta = 0.0 if forcing is None or self.rel == 0.0 else float(forcing)
        self.floor = 0.0
        self.reuse = solver == "cg" and not obj.biases
        # the objective from the users' gradients (one pass that the certificate or the next
        # sweep's CG then need not repeat), when one of them will use it
        self.gradient_loss = not obj.biases and (self.reuse or certifying)
        self._users: tuple[np.ndarray, ...] | None = None  # (X, Y, grad, rhs) of one point
        self.rows: tuple[np.ndarray, np.ndarray] | None = None  # the last certificate's rows

    def _users_at(self, F: Factors) -> tuple[np.ndarray, np.ndarray] | None:
        """The users' kept ``(grad, rhs)`` if they were computed at ``F`` (by value)."""
        kept = self._users
        if kept is None or not (np.array_equal(F.X, kept[0]) and np.array_equal(F.Y, kept[1])):
            return None
        return kept[2], kept[3]

    def _keep_users(self, F: Factors) -> tuple[np.ndarray, np.ndarray]:
        grad, rhs = self.obj.gradients("users", F)
        self._users = (F.X.copy(), F.Y.copy(), grad, rhs)
        return grad, rhs

    def __call__(self, F: Factors) -> None:
        kept = self._users_at(F) if self.reuse else None
        self._users = None
        for which in ("users", "items"):
            res0 = b0 = None
            if which == "users" and kept is not None:
                res0 = -0.5 * kept[0]
                b0 = 0.5 * np.sqrt(np.einsum("ij,ij->i", kept[1], kept[1]))
            self.run.cg_iterations += self.obj.solve(
                which, F, solver=self.solver, cg_steps=self.cg_steps, rel=self.rel,
                floor=self.floor, eta=self.eta, res0=res0, b0=b0,
            )  # fmt: skip

    def loss(self, F: Factors) -> float:
        """``obj.loss(F)``; from the users' gradients when they are of use later (kept)."""
        if not self.gradient_loss:
            return fast_loss(self.obj, F)
        grad, rhs = self._keep_users(F)
        return loss_from_user_gradients(self.obj, F, grad, rhs)

    def certify(self, F: Factors) -> dict[str, float]:
        """``obj.stationarity(F)``, keeping the scale floor for the next CG rows (and, see
        the class, the users' starting residuals)."""
        kept = self._users_at(F)
        if kept is None and self.reuse:
            kept = self._keep_users(F)
        if kept is not None:
            grad, rhs = kept
            gu = np.sqrt(np.einsum("ij,ij->i", grad, grad))
            bu = np.sqrt(np.einsum("ij,ij->i", rhs, rhs))
        else:
            gu, bu = self.obj.residuals("users", F)
        gi, bi = self.obj.residuals("items", F)
        scales = np.concatenate([bu, bi])
        self.floor = 0.5 * row_floor(scales)  # in units of ||b_r|| (the scales are 2 ||b_r||)
        self.rows = (np.concatenate([gu, gi]), scales)
        return certificate(*self.rows)


class _Finish:
    """Finish a run by re-solving only the rows that fail the certificate (a selective round).

    Late in a run the certificate often fails on a few rows only (typically users a little
    over the tolerance, moved by the items' last solve), and further full sweeps spend most
    of their work on rows that already pass. Once at most ``fraction`` of all rows fail, an
    attempt works on a copy of the factors: it re-solves the failing users, then the failing
    items (given the new users), and recomputes the certificate from scratch; up to
    ``FINISH_ROUNDS`` rounds, stopping early when two rounds in a row do not lower the number
    of failing rows (re-solving rows moves their neighbours, light rows most, so one such
    round is allowed) or more than ``fraction`` of the rows fail.
    If the copy certifies it replaces the factors and the run stops; otherwise it is
    dropped and the sweeps (and Anderson's memory) continue as if it had not been tried, and
    the next attempt waits until at most half as many rows fail as at this one. Each row
    solve minimises its own ridge problem (Cholesky, or CG warm-started at the row), so the
    objective does not increase; CG rows are solved to ``FINISH_INNER`` times the tolerance
    (or the sweeps' own target, if tighter) in at most ``FINISH_CG_CAP`` iterations (or the
    sweeps' cap, if larger).
    """

    def __init__(self, obj: ALSObjective, sweep: _Sweeper, fraction: float, run: SweepRun):
        self.obj, self.sweep, self.fraction, self.run = obj, sweep, fraction, run
        self.last_failed: int | None = None  # failing rows at the last attempt that failed

    def __call__(self, F: Factors, rows, tol: float) -> dict[str, float] | None:
        """The certificate of the finished point (``F`` updated), or ``None`` (``F`` kept)."""
        norms, scales = rows
        bad = np.flatnonzero(relative_residuals(norms, scales) > tol)
        if len(bad) > self.fraction * len(norms):
            return None
        if self.last_failed is not None and 2 * len(bad) > self.last_failed:
            return None
        obj, sweep, run = self.obj, self.sweep, self.run
        run.finish_attempts += 1
        n_users = F.X.shape[0]
        rel = FINISH_INNER * tol if sweep.rel == 0 else min(sweep.rel, FINISH_INNER * tol)
        steps = max(sweep.cg_steps, FINISH_CG_CAP)
        G = F.copy()
        first, stalled = len(bad), 0
        for _ in range(FINISH_ROUNDS):
            run.finish_rounds += 1
            run.finish_users += int(np.sum(bad < n_users))
            run.finish_items += int(np.sum(bad >= n_users))
            floor = 0.5 * row_floor(scales)
            for which, picked in (("users", bad[bad < n_users]), ("items", bad[bad >= n_users])):
                offset = 0 if which == "users" else n_users
                run.cg_iterations += obj.solve(
                    which, G, picked - offset, solver=sweep.solver, cg_steps=steps, rel=rel,
                    floor=floor,
                )  # fmt: skip
            gu, bu = obj.residuals("users", G)
            gi, bi = obj.residuals("items", G)
            norms, scales = np.concatenate([gu, gi]), np.concatenate([bu, bi])
            cert = certificate(norms, scales)
            if certified(cert, tol):
                _copy_into(F, G)
                return cert
            fewer = np.flatnonzero(relative_residuals(norms, scales) > tol)
            # re-solving rows moves their neighbours (light rows most): allow one round
            # without progress, not two in a row
            stalled = stalled + 1 if len(fewer) >= len(bad) else 0
            if stalled == 2 or len(fewer) > self.fraction * len(norms):
                break
            bad = fewer
        self.last_failed = first
        return None


class _NCG:
    """ALS-NCG state: the previous gradient, preconditioned gradient and direction."""

    def reset(self, obj: ALSObjective, F: Factors, loss: float | None) -> None:
        self.loss = fast_loss(obj, F) if loss is None else loss
        self.g, self.cert, self.rows = _gradient(obj, F)
        self.gt = self.p = None

    def step(self, obj: ALSObjective, F: Factors, sweep: _Sweeper, run: SweepRun):
        x = _pack(F)
        bar = F.copy()
        sweep(bar)
        xbar = _pack(bar)
        gt = x - xbar  # the ALS-preconditioned gradient
        if self.p is None:
            p = -gt
        else:
            beta = float(gt @ (self.g - self.g_prev)) / float(self.g_prev @ self.gt)
            p = -gt + max(beta, 0.0) * self.p
            if not float(self.g @ p) < 0:  # not a descent direction: restart
                p = -gt
        t = quartic_argmin(line_coefficients(obj, F, p))
        cand = F.copy()
        _unpack(x + t * p, cand)
        cand_loss = fast_loss(obj, cand)
        if t > 0 and cand_loss <= self.loss:
            run.accepted += 1
        else:  # safeguard: the plain sweep's output, memory cleared
            cand, cand_loss, p = bar, fast_loss(obj, bar), None
            run.fallbacks += 1
        _copy_into(F, cand)
        self.loss = cand_loss
        self.g_prev, self.gt, self.p = self.g, gt, p
        self.g, self.cert, self.rows = _gradient(obj, F)
        return cand_loss


class _Anderson:
    """Anderson mixing of the sweep map's last ``ANDERSON_MEMORY`` outputs, safeguarded.

    A sweep solves the users given the items, then the items given those users, so its output
    is a function of the items alone: the map is ``Y -> G(Y)`` and the users follow from the
    items. With ``fit="items"`` (default) the mixing weights minimise the items' part of the
    residual ``G(x) - x`` only, Anderson's rule for that map; ``fit="all"`` fits all factors'
    residual as before round 30 (docs/acceleration.md compares them: fewer sweeps at
    regularisation 0.01 and 100 and from unconverged factors, more at 1). The weights then mix
    the whole outputs, users included, which starts the next sweep's user rows near their
    solution for the mixed items.

    A mixed point is kept when its objective is no higher than the current point's. When it
    is higher, ``safeguard="line"`` (default) moves from the plain sweep's output ``G(x)``
    along the refused correction ``d = mixed - G(x)`` by the exact minimiser ``t`` of the
    objective on that line (a quartic, one pass over the data: the same line search as
    ALS-NCG; ``t`` may be negative), which is never worse than ``G(x)``; ``"sweep"`` takes
    ``G(x)`` itself. Either way the memory restarts.
    """

    def __init__(
        self,
        memory: int = ANDERSON_MEMORY,
        safeguard: str = DEFAULT_SAFEGUARD,
        fit: str = DEFAULT_ANDERSON_FIT,
    ) -> None:
        if fit not in ANDERSON_FITS:
            raise ValueError(f"fit must be 'items' or 'all', got {fit!r}")
        self.memory, self.safeguard, self.fit = memory, safeguard, fit

    def reset(self, obj: ALSObjective, F: Factors, loss: float | None) -> None:
        self.loss = fast_loss(obj, F) if loss is None else loss
        self.dF: list[np.ndarray] = []
        self.dG: list[np.ndarray] = []
        self.last: tuple[np.ndarray, np.ndarray] | None = None

    def step(self, obj: ALSObjective, F: Factors, sweep: _Sweeper, run: SweepRun):
        x = _pack(F)
        bar = F.copy()
        sweep(bar)
        gx = _pack(bar)
        f = gx - x
        if self.fit == "items":
            f = _items_part(f, F)
        if self.last is not None:
            self.dF.append(f - self.last[0])
            self.dG.append(gx - self.last[1])
            if len(self.dF) > self.memory:
                self.dF.pop(0)
                self.dG.pop(0)
        self.last = (f, gx)
        chosen, chosen_loss = bar, None
        if self.dF:
            gamma = _lstsq(self.dF, f)
            mixed = gx.copy()
            for g, d in zip(gamma, self.dG, strict=True):
                mixed -= g * d
            cand = F.copy()
            _unpack(mixed, cand)
            cand_loss = sweep.loss(cand)
            if np.isfinite(cand_loss) and cand_loss <= self.loss:
                chosen, chosen_loss = cand, cand_loss
                run.accepted += 1
            else:  # safeguard: the plain sweep's output, or the best point on the line
                run.fallbacks += 1
                if self.safeguard == "line":
                    chosen, chosen_loss = self._line(obj, sweep, bar, gx, mixed - gx, run)
                self.dF, self.dG = [], []
        if chosen_loss is None:
            chosen_loss = sweep.loss(bar)
        _copy_into(F, chosen)
        self.loss = chosen_loss
        return chosen_loss

    def _line(self, obj, sweep, bar: Factors, gx: np.ndarray, d: np.ndarray, run: SweepRun):
        """``(point, loss)``: the objective's minimiser on ``G(x) + t d``, or ``(bar, None)``."""
        if not np.all(np.isfinite(d)):
            return bar, None
        t = quartic_argmin(line_coefficients(obj, bar, d))
        if t == 0.0:
            return bar, None
        cand = bar.copy()
        _unpack(gx + t * d, cand)
        cand_loss = sweep.loss(cand)
        if not (np.isfinite(cand_loss) and cand_loss <= self.loss):  # rounding: keep G(x)
            return bar, None
        run.line_steps += 1
        return cand, cand_loss


def _lstsq(columns: list[np.ndarray], b: np.ndarray) -> np.ndarray:
    """``argmin ||A g - b||`` for ``A = [columns]``, by the normal equations (m is small).

    Lightly regularised; built from dot products, so the columns are never stacked.
    """
    m = len(columns)
    M = np.empty((m, m))
    for i in range(m):
        for j in range(i, m):
            M[i, j] = M[j, i] = float(columns[i] @ columns[j])
    M[np.diag_indices_from(M)] += 1e-10 * max(float(np.trace(M)), 1e-300)
    return np.linalg.solve(M, np.array([float(c @ b) for c in columns]))


def _copy_into(F: Factors, src: Factors) -> None:
    F.X[:] = src.X
    F.Y[:] = src.Y
    if F.bu is not None:
        F.bu[:] = src.bu
        F.bi[:] = src.bi


def convergence_note(
    trace: list[dict[str, float]], tol: float, max_sweeps: int, *, option: str = "max_sweeps"
) -> dict[str, Any] | None:
    """What an uncertified run reached, how far from ``tol`` it is, and what to do (or ``None``).

    The estimate of the sweeps still needed extrapolates the residual's rate of decrease over
    the last 20 iterations of ``trace`` (linear convergence, as ALS tails are).
    """
    if not trace or trace[-1]["max_relative"] <= tol:
        return None
    last = trace[-1]
    window = trace[-min(len(trace), 20) :]
    first = window[0]
    reached = float(last["max_relative"])
    note: dict[str, Any] = {
        "reached": reached,
        "tol": float(tol),
        "times_tol": reached / tol,
        "sweeps": int(last["sweep"]),
        "max_sweeps": int(max_sweeps),
        "more_sweeps_estimate": None,
    }
    # the accelerated residual is not monotone: compare the best of each half of the window
    half = max(1, len(window) // 2)
    early = min(p["max_relative"] for p in window[:half])
    late = min(p["max_relative"] for p in window[half:]) if len(window) > 1 else reached
    span = (last["sweep"] - first["sweep"]) / 2 if len(window) > 1 else 0
    rate = np.log(late / early) / span if span > 0 and early > 0 else 0.0
    if rate < 0:
        more = int(np.ceil(np.log(tol / reached) / rate))
        note["more_sweeps_estimate"] = more
        note["more_seconds_estimate"] = more * (last["seconds"] - first["seconds"]) / (2 * span)
        todo = (
            f"about {more} more sweeps should certify it: pass {option}="
            f"{int(last['sweep']) + 2 * more}, or continue from the returned model with "
            f"model.sweeps(data, {2 * more}, grad_tol={tol:g})"
        )
    else:
        todo = (
            "the residual stopped decreasing: below about 1e-5 a float32 model meets its "
            "rounding floor (use dtype='float64'); otherwise retrain (method='retrain') or "
            "raise the regularization of the objective"
        )
    note["advice"] = (
        f"NOT certified: max relative residual {reached:.3g} after {int(last['sweep'])} sweeps "
        f"(the cap), {reached / tol:.3g} times the tolerance {tol:g}; {todo}."
    )
    return note
