"""The one-step influence-function baseline for NCF models (as IFRU / SCIF)."""

from __future__ import annotations

import torch

from recforget.data.interactions import Removal
from recforget.models._ncf_objective import data_gradients, fixed_sample, objective, objective_reg
from recforget.models.ncf import NCF
from recforget.unlearn.ncf.sample import sample_delta
from recforget.unlearn.ncf.solvers import apply_step, conjugate_gradient, hessian_vector_product
from recforget.unlearn.ncf.transplant import affected_rows, transplant
from recforget.unlearn.registry import register


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
    removed positives and the affected users' changed negatives, :func:`sample_delta`), the
    step is

    .. math:: \\Delta\\theta_A = (H_{AA} + \\mu I)^{-1} \\delta_A,

    the Newton step on the anchored objective :math:`F_{rem}(\\theta) - c^\\top\\theta`
    (:mod:`recforget.models._ncf_objective`) restricted to :math:`A`: the blocks of the kept
    users and items that lost interactions, plus the shared weights when ``shared=True``.
    :math:`H_{AA}` is the Hessian of the remaining data's :math:`F` at :math:`\\theta_0`,
    inverted by conjugate gradient (``cg_steps``, stopped at a direction of non-positive
    curvature, which ReLU kinks can produce) with Hessian-vector products (double backward).
    Safeguard: the step is halved (at most ``max_halvings`` times, else not taken) until the
    anchored objective decreases (Armijo); the info's ``step`` is the fraction taken.

    .. note:: Experimental (approximate).
    """
    reg = objective_reg(model, reg)
    au, ai = affected_rows(removal)
    new = transplant(model, removal)
    new.objective_reg_ = reg
    module = new.module_
    dev = next(module.parameters()).device
    with new._threads():
        delta = sample_delta(model, removal, new)
        tu = torch.as_tensor(au, dtype=torch.int64, device=dev)
        ti = torch.as_tensor(ai, dtype=torch.int64, device=dev)
        names = list(module.shared_parameters()) if shared else []
        b = torch.cat(
            [delta.users[tu].ravel(), delta.items[ti].ravel()]
            + [delta.shared[k].ravel() for k in names]
        )
        sample = fixed_sample(new)
        step = conjugate_gradient(
            lambda v: hessian_vector_product(module, sample, reg, tu, ti, names, v) + damping * v,
            b,
            cg_steps,
        )
        # anchored objective along the step: phi(t) = F(theta0 + t step) - t c_A . step
        gU, gV, gS = data_gradients(module, sample)
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
                apply_step(module, tu, ti, names, t * step)
                if objective(module, sample, reg) - t * c_dot <= f0 + 1e-4 * t * slope:
                    taken = t
                    break
                apply_step(module, tu, ti, names, -t * step)
                t *= 0.5
    return new, {
        "tol": None,
        "blocks_solved": len(au) + len(ai),
        "shared": bool(shared),
        "step": taken,
    }


__all__ = ["influence"]
