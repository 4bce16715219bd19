"""AltEraser's one-step update: a Newton step at a cost that scales with the deletion.

A deletion of 1% of the interactions touches most users and items, so a Newton step on their
blocks that assembles each block's Hessian from its samples passes over nearly all the data.
:func:`prepare` does that pass once, ahead of any deletion, on the model's fixed-sample
objective :math:`F` (:mod:`recforget.models._ncf_objective`) at its parameters
:math:`\\theta_0`, and keeps per block

* the data part of the block Hessian, :math:`H_b = \\sum_{s \\ni b} \\sigma_s (1 - \\sigma_s)
  J_s J_s^\\top` (exact almost everywhere: the logit is piecewise linear in a block), and
* the block gradient :math:`c_b = \\nabla_b F(\\theta_0)`, the anchor of the anchored
  objective :math:`\\tilde F(\\theta) = F_{rem}(\\theta) - c^\\top \\theta`.

A deletion then needs only the samples it changes (:class:`~recforget.unlearn.ncf.sample.
SampleChange`, a few per deleted pair): the anchored gradient at :math:`\\theta_0` is
:math:`-\\delta` (:func:`~recforget.unlearn.ncf.sample.sample_delta`), the remaining
data's block Hessians are :math:`H_b` minus the old-only samples' terms plus the new-only
ones', and :func:`jacobi_step` takes the Newton step of every changed block at once,
:math:`\\Delta_b = (H_b + \\lambda I)^{-1} \\delta_b` (block-Jacobi: users and items from the
same :math:`\\theta_0`; :math:`\\lambda` is each row's own ridge :math:`\\lambda_b`,
:func:`row_ridges`, with ``ridge="row"``, the default, and the global one with
``ridge="global"``; the anchor and the ridge term of :math:`\\tilde F` use the same). One pass
over the samples of the moved blocks verifies that
:math:`\\tilde F` decreased (Armijo, halving the step otherwise), so the objective never
increases.

After the step the unlearned model carries the curvature forward (the changed blocks'
Hessians updated for the sample change, every anchor row kept); it is then exact for the
sample but evaluated at the pre-step parameters, which ``exact = False`` records; the next
deletion's Armijo test still guards the objective. :func:`prepare` again refreshes it.

The :class:`~recforget.models._ncf_curvature.Curvature` itself belongs to the model
(:mod:`recforget.models._ncf_curvature` saves and loads it next to a saved model
as ``curvature.safetensors``, no pickle: ``NCF.save(path, curvature=True)``), so a service
prepares once, not at every start.

.. note:: Experimental.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from recforget.data.interactions import Removal
from recforget.models._ncf_curvature import DEFAULT_RIDGE, RIDGES, Curvature
from recforget.models._ncf_module import NCFModule
from recforget.models._ncf_objective import calibrated_reg, fixed_sample, objective, shared_weights
from recforget.models.ncf import NCF
from recforget.unlearn.ncf.sample import SampleChange, kept_rows, sample_change, sample_delta
from recforget.unlearn.ncf.solvers import (
    block_curvature,
    block_jacobians,
    group_blocks,
    padded_blocks,
)

_CHANGE_CHUNK = 4096  # changed samples per outer-product chunk


ROW_REG_FLOOR = 1e-2
"""A per-row ridge is at least this fraction of the global one (every block stays positive
definite)."""


def row_ridges(grad: torch.Tensor, table: torch.Tensor, reg: float) -> torch.Tensor:
    """Each row's calibrated ridge :math:`\\lambda_b = -\\langle g_b, \\theta_b\\rangle /
    \\lVert\\theta_b\\rVert^2` (float64, one per row).

    :func:`~recforget.models._ncf_objective.calibrated_reg` fits one :math:`\\lambda` to all
    rows at once; this is the same least-squares fit row by row: the ridge under which row
    :math:`b` of the trained network is closest to stationary. AdamW's decoupled weight decay
    balances a row's gradient *normalised by its running root mean square*, so a light user's
    row (few samples, small gradients) sits at a much smaller effective ridge than a heavy
    user's (on the neural benchmark's ML-1M NeuMF the median runs from 11 in the lightest
    quartile of users to 53 in the heaviest, the global fit 35). Each row's fit is capped at
    the global ridge ``reg`` (uncapped, a calibrated membership attack still told the deleted
    pairs from a retrain's there; capped, it did not: docs/privacy.md) and floored at
    ``ROW_REG_FLOOR * reg``; all-zero rows get ``reg``.
    """
    th = table.double()
    sq = (th * th).sum(dim=1)
    lam = -(grad.double() * th).sum(dim=1) / sq.clamp(min=1e-300)
    lam = torch.where(sq > 0, lam, torch.full_like(lam, float(reg)))
    return lam.clamp(min=ROW_REG_FLOOR * float(reg), max=float(reg))


def prepare(model: NCF, reg: float | None = None, *, ridge: str = DEFAULT_RIDGE) -> Curvature:
    """Compute the model's :class:`Curvature` (one pass per side) and keep it as ``curvature_``.

    ``ridge="row"`` gives every embedding row its own calibrated ridge (:func:`row_ridges`)
    in place of ``reg``; the shared weights keep ``reg``.
    """
    model._check_fitted()
    if ridge not in RIDGES:
        raise ValueError(f"ridge must be one of {RIDGES}, got {ridge!r}")
    if reg is None:
        reg = float(getattr(model, "objective_reg_", None) or calibrated_reg(model))
    module = model.module_
    with model._threads():
        sample = fixed_sample(model)
        gu, Hu = block_curvature(module, sample, "users")
        gi, Hi = block_curvature(module, sample, "items")
        U = module.all_user_vectors().detach().double()
        V = module.all_item_vectors().detach().double()
        ru = row_ridges(gu, U, reg) if ridge == "row" else None
        ri = row_ridges(gi, V, reg) if ridge == "row" else None
        curv = Curvature(
            Hu.float(),
            Hi.float(),
            gu + (reg if ru is None else ru[:, None]) * U,
            gi + (reg if ri is None else ri[:, None]) * V,
            float(reg),
            loss=objective(module, sample, 0.0),
            params_hash=model.model_hash(),
            user_reg=ru,
            item_reg=ri,
        )
    model.curvature_ = curv
    return curv


def _change_hessians(
    model: NCF, change: SampleChange, which: str, rows: np.ndarray
) -> torch.Tensor:
    """:func:`change_hessians` at the original network ``model.module_``, old indices."""
    return change_hessians(model.module_, change, which, rows)


def change_hessians(
    module: NCFModule, change: SampleChange, which: str, rows: np.ndarray
) -> torch.Tensor:
    """:math:`\\sum_s w_s \\sigma_s(1-\\sigma_s) J_s J_s^\\top` of the changed samples, per block.

    At ``module``'s parameters, in its indices; ``rows`` are the blocks kept, ``w_s`` the
    change's weights (+1 old-only, -1 new-only). Float32, (len(rows), d, d), like the
    prepared curvature it updates; the weighted outer products are summed per block by one
    padded ``bmm`` (blocks of similar sample counts chunked together).
    """
    dev = next(module.parameters()).device
    U = module.all_user_vectors().detach()
    V = module.all_item_vectors().detach()
    shared = shared_weights(module)
    idx = change.users if which == "users" else change.items
    where = np.full(module.n_users if which == "users" else module.n_items, -1, dtype=np.int64)
    where[rows] = np.arange(len(rows))
    local = where[idx]
    keep = np.flatnonzero(local >= 0)
    d = U.shape[1] if which == "users" else V.shape[1]
    out = torch.zeros(len(rows), d, d, dtype=torch.float32, device=dev)
    if len(keep) == 0:
        return out
    k = torch.as_tensor(keep, device=dev)
    u = torch.as_tensor(change.users, device=dev)[k]
    i = torch.as_tensor(change.items, device=dev)[k]
    Js, ws = [], []
    for s in range(0, len(k), _CHANGE_CHUNK):
        sl = slice(s, s + _CHANGE_CHUNK)
        mine, other = (U[u[sl]], V[i[sl]]) if which == "users" else (V[i[sl]], U[u[sl]])
        z, J = block_jacobians(module, which, mine, other, shared)
        p = torch.sigmoid(z)
        Js.append(J)
        ws.append(p * (1 - p))
    J = torch.cat(Js)
    w = torch.cat(ws) * torch.as_tensor(change.weights, device=dev)[k].float()
    loc = torch.as_tensor(local[keep], device=dev)
    groups = group_blocks(loc, len(rows), d)
    J, w = J[groups.order], w[groups.order]
    for blocks, lo, hi, slot, pos, width in groups.chunks:  # H_b = (w J)_b^T J_b, padded bmm
        P = padded_blocks(J[lo:hi], slot, pos, len(blocks), width)
        Pw = padded_blocks(w[lo:hi, None] * J[lo:hi], slot, pos, len(blocks), width)
        out[blocks] += Pw.transpose(1, 2) @ P
    return out


def _rows(table: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """A copy of ``table``'s rows ``kept`` (a plain copy when every row is kept, in order)."""
    n = len(table)
    if len(kept) == n and bool((kept == torch.arange(n, device=kept.device)).all()):
        return table.clone()
    return table.index_select(0, kept)


def jacobi_step(
    model: NCF,
    removal: Removal,
    new: NCF,
    curv: Curvature,
    *,
    max_halvings: int = 10,
) -> dict[str, float]:
    """One block-Jacobi Newton step of the anchored objective on every changed block.

    ``new`` is the warm start (:func:`~recforget.unlearn.ncf.transplant`), updated in place
    and given the carried :class:`Curvature`. Returns the blocks moved, the step fraction
    taken (1 unless the Armijo test halved it; 0: no step) and the objective's decrease.
    """
    reg = curv.reg
    change = sample_change(model, removal, new)
    delta = sample_delta(model, removal, new)
    module = new.module_
    dev = next(module.parameters()).device
    kept_u, kept_i = kept_rows(removal.user_map).to(dev), kept_rows(removal.item_map).to(dev)
    user_anchor, item_anchor = _rows(curv.user_anchor, kept_u), _rows(curv.item_anchor, kept_i)
    H_users, H_items = _rows(curv.users, kept_u), _rows(curv.items, kept_i)
    row_reg = {
        "users": None if curv.user_reg is None else _rows(curv.user_reg, kept_u),
        "items": None if curv.item_reg is None else _rows(curv.item_reg, kept_i),
    }
    steps, rows_new, lam = {}, {}, {}
    for which, idx, index_map, H_all in (
        ("users", change.users, removal.user_map, H_users),
        ("items", change.items, removal.item_map, H_items),
    ):
        old = np.unique(idx)
        old = old[index_map[old] >= 0]
        rows = torch.as_tensor(index_map[old], device=dev)
        H = H_all[rows] - _change_hessians(model, change, which, old)
        H_all[rows] = H  # the carried curvature: the remaining sample's
        per_row = row_reg[which]
        lam[which] = (
            torch.full((len(rows),), float(reg), dtype=torch.float64, device=dev)
            if per_row is None
            else per_row[rows]
        )
        eye = torch.eye(H.shape[1], dtype=H.dtype, device=dev)
        H = H + lam[which].to(H.dtype)[:, None, None] * eye
        d = getattr(delta, which)[rows]
        # float32 like the stored curvature (the Armijo test below guards the step)
        steps[which] = torch.linalg.solve(H, d.float().unsqueeze(-1)).squeeze(-1).double()
        rows_new[which] = rows
    ru, ri = rows_new["users"], rows_new["items"]
    su, si = steps["users"], steps["items"]
    U0 = module.all_user_vectors().detach()[ru].double()
    V0 = module.all_item_vectors().detach()[ri].double()
    slope = -float((delta.users[ru] * su).sum() + (delta.items[ri] * si).sum())
    c_dot = float((user_anchor[ru] * su).sum() + (item_anchor[ri] * si).sum())
    sample = fixed_sample(new)
    with torch.no_grad():
        # the remaining sample's loss at theta_0: the prepared loss, less the changed samples'
        dev0 = next(model.module_.parameters()).device
        cu = torch.as_tensor(change.users, device=dev0)
        ci = torch.as_tensor(change.items, device=dev0)
        z = model.module_.pair_scorer()(cu, ci)
        ell = F.binary_cross_entropy_with_logits(
            z, torch.as_tensor(change.labels, device=dev0), reduction="none"
        )
        f0 = curv.loss - float((torch.as_tensor(change.weights, device=dev0) * ell).double().sum())
        t, taken, decrease, f1 = 1.0, 0.0, 0.0, f0
        for _ in range(max_halvings + 1):
            U1, V1 = U0 + t * su, V0 + t * si
            module.set_user_vectors(ru, U1.float())
            module.set_item_vectors(ri, V1.float())
            ridge = 0.5 * float(
                (lam["users"][:, None] * (U1**2 - U0**2)).sum()
                + (lam["items"][:, None] * (V1**2 - V0**2)).sum()
            )
            f1 = objective(module, sample, 0.0)  # one pass over the remaining sample
            change_f = f1 - f0 + ridge - t * c_dot
            if change_f <= 1e-4 * t * slope:
                taken, decrease = t, -change_f
                break
            t *= 0.5
        else:
            module.set_user_vectors(ru, U0.float())
            module.set_item_vectors(ri, V0.float())
            f1 = f0
    new.curvature_ = replace(
        curv,
        users=H_users,
        items=H_items,
        user_anchor=user_anchor,
        item_anchor=item_anchor,
        user_reg=row_reg["users"],
        item_reg=row_reg["items"],
        loss=f1,
        exact=False,
        params_hash=new.model_hash(),
    )
    return {
        "blocks_users": len(ru),
        "blocks_items": len(ri),
        "step": taken,
        "decrease": decrease,
        "samples_changed": len(change),
        "samples": len(sample),
    }


__all__ = [
    "DEFAULT_RIDGE",
    "RIDGES",
    "ROW_REG_FLOOR",
    "change_hessians",
    "jacobi_step",
    "prepare",
    "row_ridges",
]
