"""The ALS objective of a data set, built from the data alone.

:class:`ALSObjective` turns an :class:`~recforget.data.interactions.Interactions` and the
model's hyper-parameters into the per-entry weights, targets and ridge weights that the row
kernels of :mod:`recforget.kernels.als` take, and evaluates the objective and its gradient.
Everything it holds is a function of the data it was given: building it on the remaining data
after a deletion *is* the retraining objective (confidences, BM25 statistics, frequency-scaled
ridge weights and the global mean all recomputed), which is what makes unlearning exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recforget.data.interactions import Interactions
from recforget.kernels import als as K
from recforget.kernels.weighting import confidence
from recforget.models._certificate import certificate


@dataclass
class Factors:
    """Mutable model state: factors and (explicit feedback) biases."""

    X: np.ndarray  # (n_users, k)
    Y: np.ndarray  # (n_items, k)
    bu: np.ndarray | None = None  # (n_users,)
    bi: np.ndarray | None = None  # (n_items,)

    def copy(self) -> Factors:
        return Factors(
            self.X.copy(),
            self.Y.copy(),
            None if self.bu is None else self.bu.copy(),
            None if self.bi is None else self.bi.copy(),
        )


@dataclass
class Side:
    """One side's row problems: CSR structure, per-entry ``w``/``v`` and ridge weights."""

    indptr: np.ndarray
    indices: np.ndarray
    w: np.ndarray
    v: np.ndarray
    reg: np.ndarray


class ALSObjective:
    """Objective of bi-linear ALS on one data set.

    Implicit feedback (Hu, Koren & Volinsky):

    .. math::
        L = \\sum_{u,i} c_{ui} (p_{ui} - x_u^\\top y_i)^2
            + \\sum_u \\lambda_u \\|x_u\\|^2 + \\sum_i \\lambda_i \\|y_i\\|^2

    over *all* cells, with ``p = 1, c = 1 + alpha w(r)`` on stored entries with ``r > 0`` and
    ``p = 0, c = 1`` elsewhere. Explicit feedback:

    .. math::
        L = \\sum_{(u,i) \\in \\Omega} (r_{ui} - \\mu - b_u - b_i - x_u^\\top y_i)^2
            + \\sum_u \\lambda_u (\\|x_u\\|^2 + b_u^2) + \\sum_i \\lambda_i (\\|y_i\\|^2 + b_i^2)

    (biases and ``mu``, the mean training rating, only with ``biases=True``). Ridge weights are
    ``lambda`` or, with ``regularization_scaling="frequency"``, ``lambda * n`` with ``n`` the
    row's number of stored entries (at least 1), as in ALS-WR / Spark.
    """

    def __init__(
        self,
        data: Interactions,
        *,
        feedback: str,
        regularization: float,
        regularization_scaling: str = "none",
        alpha: float = 1.0,
        weighting: str = "linear",
        biases: bool = False,
        dtype: np.dtype = np.float32,
        bm25_k1: float = 100.0,
        bm25_b: float = 0.8,
        log_epsilon: float = 1.0,
    ) -> None:
        self.data = data
        self.feedback = feedback
        self.biases = biases and feedback == "explicit"
        self.dtype = np.dtype(dtype)
        values = data.values
        t_indptr, t_indices, _, perm = data.transpose_arrays()
        self.perm = perm
        n_u, n_i = data.user_counts(), data.item_counts()
        if regularization_scaling == "frequency":
            reg_u = regularization * np.maximum(n_u, 1).astype(np.float64)
            reg_i = regularization * np.maximum(n_i, 1).astype(np.float64)
        else:
            reg_u = np.full(data.n_users, float(regularization))
            reg_i = np.full(data.n_items, float(regularization))
        self.global_mean = 0.0
        if feedback == "implicit":
            if weighting != "confidence" and len(values) and values.min() < 0:
                raise ValueError(
                    "implicit feedback needs values >= 0 (counts or strengths); "
                    "use feedback='explicit' for ratings that can be negative"
                )
            c = confidence(
                data.indptr,
                data.indices,
                values,
                data.n_items,
                weighting=weighting,
                alpha=alpha,
                bm25_k1=bm25_k1,
                bm25_b=bm25_b,
                log_epsilon=log_epsilon,
            )
            p = (values > 0).astype(np.float64)
            self.conf = c
            w = (c - 1.0).astype(self.dtype)
            v = (c * p).astype(self.dtype)
            self.users = Side(data.indptr, data.indices, w, v, reg_u)
            self.items = Side(
                t_indptr,
                t_indices,
                np.ascontiguousarray(w[perm]),
                np.ascontiguousarray(v[perm]),
                reg_i,
            )
        elif feedback == "explicit":
            if self.biases and len(values):
                self.global_mean = float(values.mean())
            ones = np.ones(len(values), dtype=self.dtype)
            r = values.astype(self.dtype)
            self.users = Side(data.indptr, data.indices, ones, r, reg_u)
            self.items = Side(t_indptr, t_indices, ones, np.ascontiguousarray(r[perm]), reg_i)
        else:
            raise ValueError(f"feedback must be 'implicit' or 'explicit', got {feedback!r}")

    # ------------------------------------------------------------------ row problems
    def _side(self, which: str, F: Factors):
        """``(side, X_solve, Y_fixed, v, G)`` for solving ``which`` with the other side fixed."""
        if which == "users":
            side, X, Y, b_self, b_other = self.users, F.X, F.Y, F.bu, F.bi
        else:
            side, X, Y, b_self, b_other = self.items, F.Y, F.X, F.bi, F.bu
        k = X.shape[1]
        if self.feedback == "implicit":
            return side, X, Y, side.v, K.gram(Y)
        if not self.biases:
            return side, X, Y, side.v, np.zeros((k, k))
        # biases: unknown [x, b_self], features [y, 1], target r - mu - b_other
        Xa = np.ascontiguousarray(np.hstack([X, b_self[:, None].astype(X.dtype)]))
        Ya = np.ascontiguousarray(np.hstack([Y, np.ones((len(Y), 1), dtype=Y.dtype)]))
        v = (side.v - self.global_mean - b_other[side.indices]).astype(self.dtype)
        return side, Xa, Ya, v, np.zeros((k + 1, k + 1))

    def solve(
        self,
        which: str,
        F: Factors,
        rows: np.ndarray | None = None,
        *,
        solver: str = "cholesky",
        cg_steps: int = 3,
        rel: float = 0.0,
        floor: float = 0.0,
        eta: float = 0.0,
        res0: np.ndarray | None = None,
        b0: np.ndarray | None = None,
    ) -> int:
        """Re-solve the given rows of ``which`` ("users" | "items") in place.

        With ``solver="cg"`` and ``rel > 0``, ``cg_steps`` is a cap and each row stops once its
        relative residual is at most ``rel`` (scale floored at ``floor``; see
        :func:`recforget.kernels.als.solve_rows_cg`). Returns the CG iterations run (0 for
        Cholesky). ``eta`` is the CG rows' forcing term; ``res0``, ``b0`` the rows' starting
        residuals and ``||b_r||`` when the caller has them (CG rows only; see
        ``solve_rows_cg``).
        """
        side, X, Y, v, G = self._side(which, F)
        rows = K.all_rows(len(X)) if rows is None else np.asarray(rows, dtype=np.int64)
        if len(rows) == 0:
            return 0
        steps = 0
        if solver == "cholesky":
            K.solve_rows_cholesky(side.indptr, side.indices, side.w, v, X, Y, G, side.reg, rows)
        else:
            steps = K.solve_rows_cg(
                side.indptr, side.indices, side.w, v, X, Y, G, side.reg, rows, cg_steps, rel, floor,
                eta, res0, b0,
            )  # fmt: skip
        self._unaugment(which, F, X)
        return steps

    def _unaugment(self, which: str, F: Factors, Xa: np.ndarray) -> None:
        if not self.biases:
            return
        k = Xa.shape[1] - 1
        if which == "users":
            F.X[:] = Xa[:, :k]
            F.bu[:] = Xa[:, k]
        else:
            F.Y[:] = Xa[:, :k]
            F.bi[:] = Xa[:, k]

    def residuals(self, which: str, F: Factors, rows: np.ndarray | None = None):
        """Per-row gradient norms ``||dL/dx_r||`` and their value at ``x_r = 0``."""
        side, X, Y, v, G = self._side(which, F)
        rows = K.all_rows(len(X)) if rows is None else np.asarray(rows, dtype=np.int64)
        return K.row_residuals(side.indptr, side.indices, side.w, v, X, Y, G, side.reg, rows)

    def gradients(self, which: str, F: Factors, rows: np.ndarray | None = None):
        """Per-row gradients ``dL/dx_r`` and ``-dL/dx_r`` at zero, float64 (rows x k)."""
        side, X, Y, v, G = self._side(which, F)
        rows = K.all_rows(len(X)) if rows is None else np.asarray(rows, dtype=np.int64)
        return K.row_gradients(side.indptr, side.indices, side.w, v, X, Y, G, side.reg, rows)

    @property
    def incremental(self) -> bool:
        """Whether gradients can be updated incrementally (:meth:`propagate`): no biases."""
        return not self.biases

    def propagate(
        self,
        which: str,
        F: Factors,
        rows: np.ndarray,
        old: np.ndarray,
        grad_other: np.ndarray,
        rhs_other: np.ndarray,
    ) -> None:
        """Update the other side's gradients after ``which``'s ``rows`` moved from ``old``.

        ``F`` already holds the new values. Cost: the moved rows' entries times ``k``, plus one
        ``(n_other x k) @ (k x k)`` product for the Gram term of implicit feedback.
        """
        if self.biases:
            raise ValueError("incremental gradients are not available with biases")
        other = self.items if which == "users" else self.users
        X = F.X if which == "users" else F.Y
        Y = F.Y if which == "users" else F.X
        new = X[rows]
        moved = np.full(len(X), -1, dtype=np.int64)
        moved[rows] = np.arange(len(rows))
        K.propagate_rows(
            other.indptr, other.indices, other.w, other.v, moved, old, new, Y, grad_other, rhs_other
        )
        if self.feedback == "implicit":
            n64, o64 = new.astype(np.float64), old.astype(np.float64)
            dG = n64.T @ n64 - o64.T @ o64
            grad_other += 2.0 * (Y.astype(np.float64) @ dG)

    # ------------------------------------------------------------------ objective
    def predict_entries(self, F: Factors) -> np.ndarray:
        """Model score of every stored entry, float64, shape (nnz,)."""
        s = K.entry_dots(self.data.indptr, self.data.indices, F.X, F.Y)
        if self.biases:
            s += self.global_mean + F.bu[self.data.row_of_entry] + F.bi[self.data.indices]
        return s

    def loss(self, F: Factors) -> float:
        """The objective ``L`` (see the class docstring), in float64."""
        s = self.predict_entries(F)
        X64 = F.X.astype(np.float64)
        Y64 = F.Y.astype(np.float64)
        ridge = float(
            self.users.reg @ np.einsum("ij,ij->i", X64, X64)
            + self.items.reg @ np.einsum("ij,ij->i", Y64, Y64)
        )
        if self.feedback == "implicit":
            w = self.users.w.astype(np.float64)
            v = self.users.v.astype(np.float64)
            full = float(np.sum(K.gram(F.X) * K.gram(F.Y)))  # sum over all cells of s^2
            return full + float(np.sum(w * s * s - 2.0 * v * s + v)) + ridge
        r = self.data.values
        if self.biases:
            ridge += float(self.users.reg @ F.bu.astype(np.float64) ** 2)
            ridge += float(self.items.reg @ F.bi.astype(np.float64) ** 2)
        return float(np.sum((r - s) ** 2)) + ridge

    def stationarity(self, F: Factors) -> dict[str, float]:
        """Certificate of stationarity of ``F`` for this objective.

        See :func:`certificate`: ``max_relative`` is the largest per-row relative residual.
        """
        gu, bu = self.residuals("users", F)
        gi, bi = self.residuals("items", F)
        return certificate(np.concatenate([gu, gi]), np.concatenate([bu, bi]))
