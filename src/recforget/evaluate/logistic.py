"""L2-regularised logistic regression: the attacker's classifier of the membership attacks."""

from __future__ import annotations

import numpy as np
import scipy.optimize
from scipy.special import expit


def fit_logistic(
    X: np.ndarray, y: np.ndarray, *, l2: float = 1e-2, max_iter: int = 1000
) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression by L-BFGS.

    Minimises

    .. math:: \\frac1n \\sum_j \\left[\\log(1 + e^{z_j}) - y_j z_j\\right]
              + \\frac{\\lambda}{2} \\lVert w \\rVert^2, \\qquad z_j = x_j^\\top w + b

    (the intercept is not penalised).

    Parameters
    ----------
    X : float ndarray of shape (n, d)
    y : ndarray of shape (n,) with values in {0, 1}
    l2 : float >= 0
        :math:`\\lambda`.
    max_iter : int

    Returns
    -------
    coef : float64 ndarray of shape (d,)
    intercept : float
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).ravel()
    if X.ndim != 2 or len(y) != X.shape[0]:
        raise ValueError(f"X must be (n, d) with n = len(y); got {X.shape} and {y.shape}")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("y must hold only 0 and 1")
    if l2 < 0:
        raise ValueError(f"l2 must be >= 0, got {l2}")
    n, d = X.shape

    def loss_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[:d], theta[d]
        z = X @ w + b
        loss = np.mean(np.logaddexp(0.0, z) - y * z) + 0.5 * l2 * np.dot(w, w)
        r = (expit(z) - y) / n
        return float(loss), np.concatenate([X.T @ r + l2 * w, [r.sum()]])

    res = scipy.optimize.minimize(
        loss_grad, np.zeros(d + 1), jac=True, method="L-BFGS-B", options={"maxiter": max_iter}
    )
    return res.x[:d].copy(), float(res.x[d])


def logistic_decision(X: np.ndarray, coef: np.ndarray, intercept: float) -> np.ndarray:
    """Decision values :math:`X w + b`, shape (n,) (the log-odds of "member")."""
    return np.asarray(X, dtype=np.float64) @ np.asarray(coef, dtype=np.float64) + intercept


__all__ = ["fit_logistic", "logistic_decision"]
