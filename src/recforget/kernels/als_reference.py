"""Slow, obviously correct dense ALS formulas: the test oracle for :mod:`kernels.als`.

Written from the textbook equations on dense matrices, with no shared code with the fast path.
Only for tiny problems.
"""

from __future__ import annotations

import numpy as np


def implicit_objective(C, P, X, Y, reg_users, reg_items) -> float:
    """``sum_ui C_ui (P_ui - x_u.y_i)^2 + sum_u reg_u |x_u|^2 + sum_i reg_i |y_i|^2`` (dense)."""
    S = X @ Y.T
    return float(
        np.sum(C * (P - S) ** 2)
        + np.sum(reg_users * np.sum(X**2, axis=1))
        + np.sum(reg_items * np.sum(Y**2, axis=1))
    )


def implicit_solve_row(c_row, p_row, Y, reg) -> np.ndarray:
    """``x = (Y^T C_u Y + reg I)^{-1} Y^T C_u p_u`` with dense diagonal ``C_u``."""
    Cu = np.diag(c_row)
    A = Y.T @ Cu @ Y + reg * np.eye(Y.shape[1])
    return np.linalg.solve(A, Y.T @ Cu @ p_row)


def explicit_objective(R, M, X, Y, reg_users, reg_items, bu=None, bi=None, mu=0.0) -> float:
    """``sum_{observed} (R_ui - mu - b_u - b_i - x_u.y_i)^2 + ridge`` (``M`` = observed mask)."""
    bu = np.zeros(X.shape[0]) if bu is None else bu
    bi = np.zeros(Y.shape[0]) if bi is None else bi
    S = mu + bu[:, None] + bi[None, :] + X @ Y.T
    return float(
        np.sum(M * (R - S) ** 2)
        + np.sum(reg_users * (np.sum(X**2, axis=1) + bu**2))
        + np.sum(reg_items * (np.sum(Y**2, axis=1) + bi**2))
    )


def explicit_solve_row(r_row, m_row, Y, reg) -> np.ndarray:
    """``x = (Y_o^T Y_o + reg I)^{-1} Y_o^T r_o`` over the observed entries ``o`` of the row."""
    obs = m_row.astype(bool)
    Yo = Y[obs]
    A = Yo.T @ Yo + reg * np.eye(Y.shape[1])
    return np.linalg.solve(A, Yo.T @ r_row[obs])
