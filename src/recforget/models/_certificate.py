"""What "certified" means, for every model family: one function over rows.

A model is a *certified stationary point* of its objective at tolerance ``tol`` when every
row's relative residual is at most ``tol``. A row is whatever block the objective's
sub-problems solve: an ALS user or item factor row (with its bias), an NCF user or item
embedding block, or an NCF network's shared weights taken as one block. Its relative residual is

.. math::

    \\rho_r = \\frac{\\lVert \\nabla_r F \\rVert}{\\max(s_r, \\; \\phi \\cdot \\mathrm{rms}(s))},

where :math:`s_r` is the row's *scale*: the size of the terms that cancel at a stationary point
(ALS: the norm of the row's gradient at zero, :math:`\\lVert b_r \\rVert`; NCF: the data
gradient's norm plus the ridge term's, :math:`\\lVert \\nabla_r \\sum \\ell \\rVert + \\lambda
\\lVert \\theta_r \\rVert`), and :math:`\\phi` = :data:`ROW_FLOOR` keeps rows with (almost) no
data, whose solution is (almost) zero, on the global scale. Every sub-problem must so be solved
to relative accuracy ``tol`` given the others, light rows (the ones a small deletion moves most)
included. ``max_relative`` is the largest :math:`\\rho_r`; it is what tolerances are compared
with (:func:`certified`).
"""

from __future__ import annotations

import numpy as np

ROW_FLOOR = 1e-3  # rows whose scale is below this share of the RMS use it instead


def row_floor(scales: np.ndarray) -> float:
    """``ROW_FLOOR`` times the RMS of the row scales (1 if there are none or all are 0)."""
    s = np.asarray(scales, dtype=np.float64)
    rms = float(np.sqrt(np.mean(s**2))) if len(s) else 1.0
    return ROW_FLOOR * (rms if rms > 0 else 1.0)


def row_scales(scales: np.ndarray, floor: float | None = None) -> np.ndarray:
    """Each row's unit for its relative residual: its own scale, floored (:func:`row_floor`)."""
    s = np.asarray(scales, dtype=np.float64)
    return np.maximum(s, row_floor(s) if floor is None else floor)


def relative_residuals(
    grad_norms: np.ndarray, scales: np.ndarray, floor: float | None = None
) -> np.ndarray:
    """Per-row relative residuals :math:`\\rho_r` (``floor`` default: :func:`row_floor`)."""
    return np.asarray(grad_norms, dtype=np.float64) / row_scales(scales, floor)


def certificate(grad_norms: np.ndarray, scales: np.ndarray) -> dict[str, float]:
    """Stationarity certificate from per-row gradient norms and row scales.

    ``max_relative`` (what tolerances are compared with) is the largest per-row relative
    residual; ``max_residual`` the largest absolute row gradient norm; ``relative`` the whole
    gradient's norm over the norm of the scales.
    """
    g = np.asarray(grad_norms, dtype=np.float64)
    s = np.asarray(scales, dtype=np.float64)
    total = float(np.sqrt(np.sum(s**2))) or 1.0
    rel = relative_residuals(g, s) if len(g) else np.zeros(1)
    return {
        "max_residual": float(g.max()) if len(g) else 0.0,
        "max_relative": float(rel.max()),
        "relative": float(np.sqrt(np.sum(g**2)) / total),
    }


def certified(cert: dict[str, float], tol: float) -> bool:
    """Whether a :func:`certificate` certifies stationarity at ``tol``: every row within it."""
    return bool(cert["max_relative"] <= tol)


__all__ = [
    "ROW_FLOOR",
    "certificate",
    "certified",
    "relative_residuals",
    "row_floor",
    "row_scales",
]
