"""Incremental ALS state for streams of deletions: data, factors, row gradients, certificate.

:class:`IncrementalALS` holds what a stream of deletions needs between requests, so that one
request costs in proportion to what it changes:

* the training data as a :class:`~recforget.data.mutable.MutableInteractions` (tombstones), with
  the objective's per-entry weights ``w`` and targets ``v`` beside it in both orientations
  (a removed entry gets ``w = v = 0``: it is then an ordinary unobserved cell of the implicit
  objective, or absent from the explicit one);
* the factors, with removed users and items set to zero (a zero row adds nothing to the other
  side's Gram matrix, so the objective equals the one built on the remaining data);
* every row's gradient ``g_r`` and its value at zero ``b_r``, with error bounds ``e_r`` and
  ``eb_r``. A removed entry's terms and a frequency-scaled ridge weight's change are applied
  exactly (:func:`~recforget.kernels.als_stream.remove_entries`); a moved neighbour's change is
  bounded, at ``O(1)`` per entry, and added to ``e_r``, ``eb_r`` while the row has room under
  the tolerance, and applied exactly once it has not
  (:func:`~recforget.kernels.als_stream.propagate_rows`). The shared Gram term of implicit
  feedback changes by a low-rank matrix whenever rows move; it is accumulated in ``D`` (one
  ``k x k`` matrix per side) instead of being applied to every row. So

  .. math::  \\|\\nabla_r L - g_r - 2 D x_r\\| \\le e_r, \\qquad
             \\|\\nabla_r L\\| \\le \\|g_r\\| + e_r + 2 \\|D\\|_F \\|x_r\\|,
             \\qquad \\|b_r^{true}\\| \\ge \\|b_r\\| - eb_r .

The certificate (every live row's relative residual ``||grad_r|| / max(||b_r||, floor)`` at
most ``tol``, as :func:`recforget.models._als_objective.certificate`) is checked on these
bounds (residual bound over scale lower bound; the floor from the lower bounds too),
vectorised over the rows; rows whose bound exceeds the tolerance get their exact Gram term
(``O(k^2)``), then, if still over, their exact gradient recomputed from their data
(``O(deg k + k^2)``, resetting their bounds), and are re-solved only if that exceeds it too.
When too many rows need the exact check, ``D`` is folded into every gradient (``O(n k^2)``,
amortised). The certificate is therefore a true statement in exact arithmetic;
:meth:`IncrementalALS.verify` recomputes everything from scratch and reports the drift.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recforget.data.mutable import MutableInteractions, MutableRemoval
from recforget.kernels import als as K
from recforget.kernels import als_stream as S
from recforget.models._certificate import ROW_FLOOR
from recforget.models.als import ALS

SIDES = ("users", "items")
REFRESH_SHARE = 0.1  # fold D into all gradients when more rows than this need exact checks
BOUND_SHARE = 0.5  # share of a row's room under the tolerance that neighbour bounds may use
CHEAP_SHARE = 0.0  # share of that budget the O(1) Cauchy-Schwarz bounds may use
TOUCHED_ROOM = 0.3  # under a touched share, touched rows over this share of tol are re-solved
START_SHARE = 0.25  # CG starts from the kept gradient of rows whose error bound is below this


@dataclass
class _Side:
    """One side's arrays: CSR (the view's), per-entry w/v, ridge, factors, gradients, norms."""

    indptr: np.ndarray
    indices: np.ndarray
    w: np.ndarray
    v: np.ndarray
    reg: np.ndarray
    X: np.ndarray  # this side's factors (rows solved)
    alive: np.ndarray
    g: np.ndarray  # stored gradient part (see module doc), float64 (n, k)
    b: np.ndarray  # gradient at zero, float64 (n, k)
    D: np.ndarray  # accumulated change of the Gram term this side's rows see, (k, k)
    gn: np.ndarray  # ||g_r||
    bn: np.ndarray  # ||b_r||
    xn: np.ndarray  # ||x_r||
    e: np.ndarray  # bound on ||true gradient - (g + 2 D x)|| (neighbours' moves since refresh)
    eb: np.ndarray  # bound on ||true b - b||
    G: np.ndarray  # current Gram matrix of the *other* side's factors (implicit), else zeros
    push: np.ndarray  # how far neighbours' moves shifted each gradient since its solve (bound)


class IncrementalALS:
    """See the module docstring. Build from a fitted :class:`~recforget.models.als.ALS`."""

    def __init__(
        self,
        model: ALS,
        *,
        tol: float,
        solver: str = "cg",
        cg_steps: int | None = None,
        max_rounds: int = 2000,
        target: float = 1.0,
    ) -> None:
        model._check_fitted()
        if not 0 < target <= 1:
            raise ValueError(f"target must be in (0, 1], got {target!r}")
        if model.biases and model.feedback == "explicit":
            raise ValueError(
                "streaming forgetting needs a model without biases: the global mean makes every "
                "row depend on every deletion (use recforget.forget for this model)"
            )
        if model.feedback == "implicit" and model.weighting == "bm25":
            raise ValueError(
                "streaming forgetting needs per-entry confidences (weighting 'linear' or 'log'): "
                "BM25 weights depend on global statistics that every deletion changes"
            )
        if solver not in ("cg", "cholesky"):
            raise ValueError(f"solver must be 'cg' or 'cholesky', got {solver!r}")
        if not (np.isfinite(tol) and tol > 0):
            raise ValueError(f"tol must be a positive number, got {tol!r}")
        self.params = model.get_params()
        self.seed = model.seed_
        self.tol = float(tol)
        self.solver = solver
        self.cg_steps = int(model.cg_steps if cg_steps is None else cg_steps)
        self.max_rounds = int(max_rounds)
        self.target = float(target)
        self.implicit = model.feedback == "implicit"
        self.frequency = model.regularization_scaling == "frequency"
        self.lam = float(model.regularization)
        data = model.seen_
        obj = model.objective(data)
        self.view = MutableInteractions.from_interactions(data)
        X = np.ascontiguousarray(model.user_factors_).copy()
        Y = np.ascontiguousarray(model.item_factors_).copy()
        k = X.shape[1]
        self.k = k
        v = self.view
        self.users = self._side(v.indptr, v.indices, obj.users, X, v.user_alive, k)
        self.items = self._side(v.t_indptr, v.t_indices, obj.items, Y, v.item_alive, k)
        self.rows_solved = {"users": 0, "items": 0}
        self.changed: dict[str, list[np.ndarray]] = {"users": [], "items": []}
        self.refreshes = 0
        self.verify()

    @staticmethod
    def _side(indptr, indices, side, X, alive, k) -> _Side:
        n = len(X)
        z = np.zeros((n, k))
        return _Side(
            indptr,
            indices,
            side.w.copy(),
            side.v.copy(),
            side.reg.astype(np.float64).copy(),
            X,
            alive,
            z,
            z.copy(),
            np.zeros((k, k)),
            np.zeros(n),
            np.zeros(n),
            np.zeros(n),
            np.zeros(n),
            np.zeros(n),
            np.zeros((k, k)),
            np.zeros(n),
        )

    # ------------------------------------------------------------------ helpers
    def side(self, which: str) -> tuple[_Side, _Side]:
        return (self.users, self.items) if which == "users" else (self.items, self.users)

    @staticmethod
    def _norms(a: np.ndarray) -> np.ndarray:
        return np.sqrt(np.einsum("ij,ij->i", a, a))

    def _fresh_gradients(self, which: str, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact ``(grad, b)`` of ``rows`` with the maintained Gram matrix (``O(deg k + k^2)``)."""
        s, o = self.side(which)
        return K.row_gradients(s.indptr, s.indices, s.w, s.v, s.X, o.X, s.G, s.reg, rows)

    def _store(self, which: str, rows: np.ndarray, grad: np.ndarray, rhs: np.ndarray) -> None:
        """Store exact gradients of ``rows`` in the ``g = grad - 2 D x`` form."""
        s, _ = self.side(which)
        if self.implicit:
            grad = grad - 2.0 * (s.X[rows].astype(np.float64) @ s.D)
        s.g[rows] = grad
        s.b[rows] = rhs
        s.gn[rows] = self._norms(grad)
        s.bn[rows] = self._norms(rhs)
        s.xn[rows] = self._norms(s.X[rows].astype(np.float64))
        s.e[rows] = 0.0
        s.eb[rows] = 0.0

    def _refresh(self, which: str) -> None:
        """Fold ``D`` into every stored gradient of ``which`` (``O(n k^2)``)."""
        s, _ = self.side(which)
        if not self.implicit or not s.D.any():
            return
        s.g += 2.0 * (s.X.astype(np.float64) @ s.D)
        s.D[:] = 0.0
        s.gn[:] = self._norms(s.g)
        self.refreshes += 1

    def floor(self) -> float:
        """``ROW_FLOOR`` times the RMS gradient-at-zero norm over the live rows of both sides
        (a lower bound of it: each norm is taken at its lower bound ``||b|| - eb``)."""
        su, nu = S.live_scale_sumsq(self.users.bn, self.users.eb, self.users.alive)
        si, ni = S.live_scale_sumsq(self.items.bn, self.items.eb, self.items.alive)
        n = nu + ni
        rms = float(np.sqrt((su + si) / n)) if n else 1.0
        return ROW_FLOOR * (rms if rms > 0 else 1.0)

    def check(
        self, which: str, floor: float, share: float = 1.0
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows of ``which`` over the tolerance, and every row's residual bound and scale.

        Returns ``(over, bound, scale)``: ``bound[r] >= ||grad_r||`` for every live row (exact
        for the rows whose cheap bound was over the tolerance), ``scale`` the rows' units.
        """
        s, _ = self.side(which)
        dn = float(np.sqrt(np.sum(s.D * s.D))) if self.implicit else 0.0
        room = share * self.tol
        bound, scale, cand = S.residual_bounds(
            s.gn, s.e, s.xn, s.bn, s.eb, s.alive, 2.0 * dn, room, floor
        )
        if dn > 0 and len(cand) > REFRESH_SHARE * len(s.gn) + 16:
            self._refresh(which)
            dn = 0.0
            bound, scale, cand = S.residual_bounds(
                s.gn, s.e, s.xn, s.bn, s.eb, s.alive, 0.0, room, floor
            )
        if len(cand) and dn > 0:  # first the exact Gram term (O(k^2) each)
            exact = s.g[cand] + 2.0 * (s.X[cand].astype(np.float64) @ s.D)
            bound[cand] = self._norms(exact) + s.e[cand]
            cand = cand[bound[cand] > room * scale[cand]]
        if len(cand):  # then exact gradients from the rows' data (O(deg k + k^2) each)
            grad, rhs = self._fresh_gradients(which, cand)
            self._store(which, cand, grad, rhs)
            bound[cand] = self._norms(grad)
            scale[cand] = np.maximum(s.bn[cand], floor)
        over = cand[bound[cand] > room * scale[cand]]
        return over, bound, scale

    def neighbours(self, which: str, rows: np.ndarray) -> np.ndarray:
        """Live rows of the other side adjacent to ``rows`` of ``which`` through live entries."""
        s, o = self.side(which)
        if not len(rows):
            return np.empty(0, np.int64)
        starts, ends = s.indptr[rows], s.indptr[rows + 1]
        lens = ends - starts
        pos = np.repeat(starts - np.cumsum(lens) + lens, lens) + np.arange(int(lens.sum()))
        pos = pos[(s.w[pos] != 0) | (s.v[pos] != 0)]
        mask = np.zeros(len(o.X), dtype=bool)
        mask[s.indices[pos]] = True
        return np.flatnonzero(mask & o.alive)

    def over_rows(self, which: str, rows: np.ndarray, floor: float, share: float) -> np.ndarray:
        """Those of ``rows`` whose residual is estimated over ``share * tol`` (``O(1)`` each).

        The estimate is the maintained gradient's norm ``||g_r||`` against ``||b_r||``, without
        its error bounds: it only chooses optional re-solves (the neighbours' re-equilibration),
        the certificate never rests on it.
        """
        s, _ = self.side(which)
        rows = rows[s.alive[rows]]
        if share <= 0 or not len(rows):
            return rows
        return rows[s.gn[rows] > (share * self.tol) * np.maximum(s.bn[rows], floor)]

    def pushed_rows(self, which: str, rows: np.ndarray, floor: float, share: float) -> np.ndarray:
        """Those of ``rows`` whose gradient their neighbours' moves shifted by more than
        ``share * tol`` of their scale since the row was last solved (``O(1)`` each; ``share``
        0: every live one).

        The shift is :attr:`_Side.push`, the sum of the norms of the changes the moved
        neighbours made (:func:`~recforget.kernels.als_stream.propagate_rows`), reset when
        the row is solved: what deletions did to the row (this request's and the earlier
        ones' that left it below the target), not the residual a fit left there. It only
        chooses optional re-solves (the neighbours' re-equilibration); the certificate never
        rests on it.
        """
        s, _ = self.side(which)
        rows = rows[s.alive[rows]]
        if share <= 0 or not len(rows):
            return rows
        return rows[s.push[rows] > (share * self.tol) * np.maximum(s.bn[rows] - s.eb[rows], floor)]

    def clear_push(self) -> None:
        """Start counting neighbours' shifts afresh (after the setup's repair)."""
        for side in (self.users, self.items):
            side.push[:] = 0.0

    # ------------------------------------------------------------------ changes
    def _moved(self, which: str, rows: np.ndarray, old: np.ndarray, dots=None, floor=None) -> None:
        """Bookkeeping after rows of ``which`` moved from ``old`` to their current values.

        ``dots``: the entries' dots with the rows' old and new values, as
        :func:`~recforget.kernels.als_stream.gradients_and_dots` returns them (computed here
        when not given). ``floor``: the scale floor the neighbours' bound budgets use (a
        heuristic: the certificate takes its own); :meth:`floor` when not given."""
        s, o = self.side(which)
        new = s.X[rows]
        n64, o64 = new.astype(np.float64), old.astype(np.float64)
        if dots is None:
            dots = S.moved_dots(s.indptr, s.indices, rows, o64, n64, o.X)
        step = self._norms(n64 - o64)
        dirty = np.zeros(len(o.X), dtype=bool)
        # bounds may use up to half of a row's room under the tolerance, then exact updates
        floor = self.floor() if floor is None else floor
        S.propagate_rows(
            s.indptr,
            s.indices,
            s.w,
            s.v,
            rows,
            *dots,
            o64,
            n64,
            step,
            self._norms(o64),
            self._norms(n64),
            np.einsum("ij,ij->i", n64 - o64, o64),
            o.xn,
            o.g,
            o.b,
            o.e,
            o.eb,
            o.bn,
            o.eb,
            o.gn,
            BOUND_SHARE * self.tol,
            floor,
            CHEAP_SHARE,
            dirty,
            o.push,
        )
        idx = np.flatnonzero(dirty)
        o.gn[idx] = self._norms(o.g[idx])
        o.bn[idx] = self._norms(o.b[idx])
        if self.implicit:
            dG = n64.T @ n64 - o64.T @ o64
            o.G += dG  # the other side's rows see this side's Gram matrix
            o.D += dG

    def _starts(self, which: str, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """CG's starting residuals ``b - A x = -(g + 2 D x) / 2`` from the kept gradients, for
        the rows whose error bound ``e`` is below ``START_SHARE * tol`` of their scale
        (``b0 = ||b||``; ``-1`` for the others, which compute theirs from their data).

        The kept gradient is then within that share of the tolerance of the exact one, so the
        solve is as good as from the exact residual up to it; nothing certified rests on it
        (the solved rows' gradients are recomputed exactly afterwards).
        """
        s, _ = self.side(which)
        ok = s.e[rows] <= START_SHARE * self.tol * np.maximum(s.bn[rows] - s.eb[rows], 0.0)
        g = s.g[rows]
        if self.implicit and s.D.any():
            g = g + 2.0 * (s.X[rows].astype(np.float64) @ s.D)
        return -0.5 * g, np.where(ok, 0.5 * s.bn[rows], -1.0)

    def solve(self, which: str, rows: np.ndarray, floor: float | None = None) -> None:
        """Re-solve ``rows`` of ``which`` with the shared kernels and update all gradients
        (``floor``: as :meth:`_moved`'s)."""
        if len(rows) == 0:
            return
        s, o = self.side(which)
        rows = np.asarray(rows, dtype=np.int64)
        old = s.X[rows].copy()
        if self.solver == "cholesky":
            K.solve_rows_cholesky(s.indptr, s.indices, s.w, s.v, s.X, o.X, s.G, s.reg, rows)
        else:
            res0, b0 = self._starts(which, rows)
            K.solve_rows_cg(
                s.indptr,
                s.indices,
                s.w,
                s.v,
                s.X,
                o.X,
                s.G,
                s.reg,
                rows,
                self.cg_steps,
                res0=res0,
                b0=b0,
            )
        self.rows_solved[which] += len(rows)
        s.push[rows] = 0.0  # at rest with their neighbours as they are now
        self.changed[which].append(rows)
        # the exact gradients, and the dots the neighbours' bookkeeping needs, in one pass;
        # a row's value at zero does not depend on it: kept where it is exact (eb = 0)
        stale = s.eb[rows] > 0.0
        grad, rhs, dots = S.gradients_and_dots(
            s.indptr,
            s.indices,
            s.w,
            s.v,
            s.X,
            old.astype(np.float64),
            o.X,
            s.G,
            s.reg,
            rows,
            stale,
        )
        rhs[~stale] = s.b[rows[~stale]]
        self._store(which, rows, grad, rhs)
        self._moved(which, rows, old, dots, floor)

    def remove(self, **request) -> MutableRemoval:
        """Remove data (raw ids, as :meth:`MutableInteractions.remove`) and update gradients."""
        removal = self.view.remove(**request)
        if removal.is_noop:
            return removal
        u, i = self.users, self.items
        e = removal.entries
        t = self.view.twin[e]
        rows, cols = removal.users, removal.items
        touched_u, touched_i = np.unique(rows), np.unique(cols)
        g_u, g_i = u.g[touched_u], i.g[touched_i]  # copies (fancy indexing)
        S.remove_entries(rows, cols, u.w[e], u.v[e], u.X, i.X, u.g, u.b, i.g, i.b)
        u.w[e] = 0.0
        u.v[e] = 0.0
        i.w[t] = 0.0
        i.v[t] = 0.0
        if self.frequency:
            for s, touched, counts in (
                (u, touched_u, self.view.user_counts),
                (i, touched_i, self.view.item_counts),
            ):
                new_reg = self.lam * np.maximum(counts[touched], 1).astype(np.float64)
                s.g[touched] += 2.0 * (new_reg - s.reg[touched])[:, None] * s.X[touched]
                s.reg[touched] = new_reg
        for s, idx, before in ((u, touched_u, g_u), (i, touched_i, g_i)):
            s.push[idx] += self._norms(s.g[idx] - before)  # what the deletion did to the row
            s.gn[idx] = self._norms(s.g[idx])
            s.bn[idx] = self._norms(s.b[idx])
        for which, dead in (("users", removal.dropped_users), ("items", removal.dropped_items)):
            if len(dead):
                s, _ = self.side(which)
                old = s.X[dead].copy()
                s.X[dead] = 0.0
                s.g[dead] = 0.0
                s.b[dead] = 0.0
                s.gn[dead] = s.bn[dead] = s.xn[dead] = 0.0
                s.e[dead] = s.eb[dead] = 0.0
                self.changed[which].append(dead)
                self._moved(which, dead, old)  # their entries are tombstones: Gram term only
        return removal

    def repair(
        self,
        touched: dict[str, np.ndarray] | None = None,
        neighbour_target: float | None = None,
        push_target: float | None = None,
        touched_target: float | None = None,
        touched_rows: bool = True,
    ) -> dict:
        """Re-solve rows until every live row is within ``target * tol`` (selective rounds).

        Re-solving the rows over a fraction ``target`` of the tolerance, not only those over
        it, leaves every row room under the tolerance for the neighbour bounds and the Gram
        term, so that later certificates need few exact checks.

        ``touched`` rows are re-solved in the first round whatever their residual (the rows
        that lost data: a loose tolerance would otherwise leave the deleted data's trace);
        with ``touched_target``, only those whose gradient the deletions shifted by more than
        it (times ``tol``, of their scale) since their last solve (:meth:`pushed_rows`: a
        popular item that lost one of thousands of users barely moved), and those whose
        residual estimate exceeds ``TOUCHED_ROOM * tol`` (so that rows the deletions leave in
        place keep room under the tolerance, and later certificates need few exact checks);
        ``touched_rows=False``:
        ``touched`` only finds the neighbours.
        With ``neighbour_target``, the touched rows' neighbours whose residual estimate exceeds
        it (times ``tol``) are re-solved in the second round; with ``push_target``, also those
        that their neighbours' moves shifted by more than it since their last solve
        (:meth:`pushed_rows`).
        """
        touched = touched or {}
        rounds = 0
        solved0 = dict(self.rows_solved)
        first = True
        pending: dict[str, np.ndarray] = {}  # 1-hop neighbours of the touched rows
        if neighbour_target is not None or push_target is not None:
            for which in SIDES:  # each side's neighbours come from the other side only
                if len(touched.get(which, ())):
                    other = "items" if which == "users" else "users"
                    pending[other] = self.neighbours(which, touched[which])
        while True:
            moved = False
            last = {}
            for which in SIDES:
                floor = self.floor()
                over, bound, scale = self.check(which, floor, self.target)
                rows = over
                if first and touched_rows and len(touched.get(which, ())):
                    s, _ = self.side(which)
                    extra = touched[which][s.alive[touched[which]]]
                    if touched_target is not None:  # moved by the deletions, or near tol
                        extra = np.union1d(
                            self.pushed_rows(which, extra, floor, touched_target),
                            self.over_rows(which, extra, floor, TOUCHED_ROOM),
                        )
                    rows = np.union1d(rows, extra)
                if not first and len(pending.get(which, ())):
                    near = pending.pop(which)
                    if neighbour_target is not None:
                        over_near = self.over_rows(which, near, floor, neighbour_target)
                        rows = np.union1d(rows, over_near)
                    if push_target is not None:
                        rows = np.union1d(rows, self.pushed_rows(which, near, floor, push_target))
                last[which] = (over, bound, scale)
                if len(rows) and rounds < self.max_rounds:
                    self.solve(which, rows, floor)
                    moved = True
            if not moved and not (pending and first):
                break
            rounds += 1
            first = False
        cert = self._certificate(last)
        certified = cert["max_relative"] <= self.tol
        return {
            "sweeps": rounds,
            "rows_solved_users": self.rows_solved["users"] - solved0["users"],
            "rows_solved_items": self.rows_solved["items"] - solved0["items"],
            "stop_reason": "grad_tol" if certified else "max_rounds",
            "certificate": cert,
            "certified": certified,
        }

    def _certificate(self, checks: dict) -> dict:
        """Certificate fields from per-row bounds (upper bounds of the residual norms)."""
        g = np.concatenate([checks[w][1][self.side(w)[0].alive] for w in SIDES])
        scale = np.concatenate([checks[w][2][self.side(w)[0].alive] for w in SIDES])
        b = np.concatenate([self.side(w)[0].bn[self.side(w)[0].alive] for w in SIDES])
        total0 = float(np.sqrt(b @ b)) or 1.0
        return {
            "max_residual": float(g.max()) if len(g) else 0.0,
            "max_relative": float((g / scale).max()) if len(g) else 0.0,
            "relative": float(np.sqrt(g @ g) / total0),
            "tol": self.tol,
            "bound": True,
        }

    def certificate(self) -> dict:
        """The current certificate (residual upper bounds), without solving anything."""
        floor = self.floor()
        checks = {w: self.check(w, floor) for w in SIDES}
        out = self._certificate(checks)
        return {"certificate": out, "certified": all(len(checks[w][0]) == 0 for w in SIDES)}

    def take_changed(self) -> dict[str, np.ndarray]:
        """Rows whose factors changed (re-solved or removed) since the last call."""
        out = {
            w: np.unique(np.concatenate(c)) if c else np.empty(0, np.int64)
            for w, c in self.changed.items()
        }
        self.changed = {"users": [], "items": []}
        return out

    def compact(self) -> None:
        """Compact the view (drop tombstones) and move the per-entry arrays with it."""
        comp = self.view.compact()
        v = self.view
        for s, indptr, indices, old, new in (
            (self.users, v.indptr, v.indices, comp.old_pos, comp.new_pos),
            (self.items, v.t_indptr, v.t_indices, comp.t_old_pos, comp.t_new_pos),
        ):
            for name in ("w", "v"):
                a = getattr(s, name)
                b = np.zeros(comp.capacity, dtype=a.dtype)
                b[new] = a[old]
                setattr(s, name, b)
            s.indptr, s.indices = indptr, indices

    # ------------------------------------------------------------------ from scratch
    def verify(self) -> dict:
        """Recompute Gram matrices and every live row's gradient from scratch.

        Replaces the maintained state by the fresh one and returns ``{"drift", ...}``:
        ``drift`` is the largest amount, relative to the row's scale, by which a live row's
        fresh gradient (or value at zero) lies farther from the maintained one
        (``g + 2 D x``, ``b``) than the maintained error bound (``e``, ``eb``) allows: 0 when
        every bound held, up to rounding (0 on the first call).
        """
        drift = 0.0
        fresh = {}
        for which in SIDES:
            s, o = self.side(which)
            s.G = K.gram(o.X) if self.implicit else np.zeros((self.k, self.k))
        for which in SIDES:
            s, _ = self.side(which)
            rows = np.flatnonzero(s.alive)
            grad, rhs = self._fresh_gradients(which, rows)
            fresh[which] = (rows, grad, rhs)
        floor = None
        for which in SIDES:
            s, _ = self.side(which)
            rows, grad, rhs = fresh[which]
            if s.bn.any():
                if floor is None:
                    floor = self.floor()
                drift = max(drift, self._drift(which, rows, grad, rhs, floor))
        for which in SIDES:
            s, _ = self.side(which)
            s.D[:] = 0.0
            rows, grad, rhs = fresh[which]
            self._store(which, rows, grad, rhs)
        self._vcursor = None  # a sliced pass restarts after a full verification
        return {"drift": drift, **self.certificate()}

    def verify_slice(self, slices: int) -> dict | None:
        """Recompute the next ``1/slices`` of each side's rows from scratch (amortised verify).

        A full pass over the rows takes ``slices`` calls, ``O(nnz k / slices)`` each; the first
        call of a pass also recomputes the Gram matrices (``O(n k^2)``) and puts their
        difference from the maintained ones into ``D`` (so every stored gradient keeps its
        meaning). Each slice's rows are checked against their maintained state and bounds, as
        :meth:`verify` does, and replaced by the fresh values (their bounds reset). Returns
        ``None`` until a pass completes, then ``{"drift", "gram_drift", "rows", "slices"}``
        for the whole pass.
        """
        cur = getattr(self, "_vcursor", None)
        if cur is None:
            cur = self._vcursor = {"users": 0, "items": 0}
            self._vpass = {"drift": 0.0, "gram_drift": 0.0, "rows": 0}
        if cur["users"] == 0 and cur["items"] == 0 and self.implicit:
            fresh = {w: K.gram(self.side(w)[1].X) for w in SIDES}
            for which in SIDES:
                s, _ = self.side(which)
                delta = fresh[which] - s.G
                size = float(np.sqrt(np.sum(fresh[which] ** 2))) or 1.0
                self._vpass["gram_drift"] = max(
                    self._vpass["gram_drift"], float(np.sqrt(np.sum(delta**2))) / size
                )
                s.G = fresh[which]
                s.D += delta  # stored gradients were taken with the old G
        floor = self.floor()
        for which in SIDES:
            s, _ = self.side(which)
            n = len(s.X)
            chunk = -(-n // slices)
            start = cur[which]
            rows = np.arange(start, min(start + chunk, n), dtype=np.int64)
            rows = rows[s.alive[rows]]
            cur[which] = min(start + chunk, n)
            if not len(rows):
                continue
            grad, rhs = self._fresh_gradients(which, rows)
            drift = self._drift(which, rows, grad, rhs, floor)
            self._vpass["drift"] = max(self._vpass["drift"], drift)
            self._vpass["rows"] += len(rows)
            self._store(which, rows, grad, rhs)
        if cur["users"] >= len(self.users.X) and cur["items"] >= len(self.items.X):
            out = {**self._vpass, "slices": slices}
            self._vcursor = None
            return out
        return None

    def _drift(self, which, rows, grad, rhs, floor) -> float:
        """Largest relative amount by which ``rows``' maintained state misses fresh values."""
        s, _ = self.side(which)
        if not len(rows):
            return 0.0
        kept = s.g[rows] + 2.0 * (s.X[rows].astype(np.float64) @ s.D)
        scale = np.maximum(s.bn[rows], floor)
        excess = np.maximum(
            self._norms(kept - grad) - s.e[rows],
            self._norms(s.b[rows] - rhs) - s.eb[rows],
        )
        return float((np.maximum(excess, 0.0) / scale).max())

    # ------------------------------------------------------------------ export
    def to_model(self) -> ALS:
        """The current model as a fitted :class:`ALS` standing on the remaining data."""
        data = self.view.to_interactions()
        params = {k: v for k, v in self.params.items() if k != "factors"}
        model = ALS.from_factors(
            self.users.X[self.users.alive], self.items.X[self.items.alive], data, **params
        )
        model.seed_ = self.seed
        model.stop_reason_ = "grad_tol"
        return model


__all__ = ["IncrementalALS"]
