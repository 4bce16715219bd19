"""Sub-problem solvers of NCF unlearning: batched block Newton, L-BFGS, Hessian-vector CG.

They minimise the (anchored) fixed-sample objective of :mod:`recforget.models._ncf_objective`
for the unlearners of :mod:`recforget.unlearn.ncf` (and the fold-in probe of
:mod:`recforget.evaluate.foldin`).

AltEraser (our reading of Liu et al., "Forgetting Fast in Recommender Systems", arXiv 2208.06875;
no public code)
------------------------------------------------------------------------------------------------
With the item blocks and the shared (head) weights fixed, :math:`F` separates over users: user
``u``'s block (its rows of all user tables, ``user_dim`` numbers) only meets its own samples.
AltEraser warm-starts from the trained network and alternates

a. damped Newton steps on every selected user block, all users in one batch: per-sample
   Jacobians :math:`J_s = \\partial z_s / \\partial p_u` (GMF: the closed form
   :math:`h \\odot q_i`; otherwise one backward pass, the head acting row by row), the block
   gradient :math:`g_u = \\sum_s (\\sigma(z_s) - y_s) J_s + \\lambda p_u - c_u` and Hessian
   :math:`H_u = \\sum_s \\sigma(z_s)(1 - \\sigma(z_s)) J_s J_s^\\top + \\lambda I` (samples
   padded per block, one ``bmm`` per chunk of similar-sized blocks), and ``torch.linalg.solve``
   on the batch of :math:`(H_u + \\mu I) s_u = -g_u`. The logit is piecewise linear in a block
   for all three architectures (products with the other side's block, then ReLU layers), so
   this is the exact Hessian almost everywhere. A backtracking line search per user (halving,
   Armijo) accepts a step only if the user's own (anchored) loss does not increase;
b. the same for item blocks;
c. optionally (``shared_steps``) L-BFGS iterations (strong Wolfe) on the shared weights,
   reverted if the objective rose;
d. optionally (``joint_steps``) L-BFGS iterations on *all* parameters at once, also reverted
   if the objective rose. Alternating block updates converge only linearly on this coupled
   problem (they zig-zag, like ALS); the joint phase removes most of that,

so the objective never increases. The first round touches only the users and items that lost
interactions; later rounds every block whose relative gradient exceeds ``tol`` (the selective
idea of :func:`recforget.unlearn.als.unlearn_als_selective`).

.. note:: Experimental.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from recforget.models._ncf_module import GMFHead, NCFModule
from recforget.models._ncf_objective import (
    SAMPLE_CHUNK,
    Anchor,
    FixedSample,
    objective,
    shared_weights,
)

_CELLS = 1 << 22  # floats per Hessian-assembly chunk


# ---------------------------------------------------------------------------- block Newton
def _select(index: torch.Tensor, rows: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples whose ``index`` is in ``rows``, and each one's position in ``rows``."""
    pos = torch.full((n,), -1, dtype=torch.int64, device=index.device)
    pos[rows] = torch.arange(len(rows), device=index.device)
    local = pos[index]
    keep = torch.nonzero(local >= 0).squeeze(1)
    return keep, local[keep]


def _block_losses(
    module: NCFModule,
    which: str,
    blocks: torch.Tensor,
    other: torch.Tensor,
    local: torch.Tensor,
    labels: torch.Tensor,
    shared: dict[str, torch.Tensor],
    reg: float,
    tilt: torch.Tensor | None = None,
) -> torch.Tensor:
    """Each block's own loss: its samples' BCE plus its ridge term, minus ``tilt . block``."""
    out = 0.5 * reg * (blocks.double() ** 2).sum(1)
    if tilt is not None:
        out -= (tilt * blocks.double()).sum(1)
    for s in range(0, len(local), SAMPLE_CHUNK):
        sl = slice(s, s + SAMPLE_CHUNK)
        mine = blocks[local[sl]]
        z = (
            module.logits(mine, other[sl], shared)
            if which == "users"
            else module.logits(other[sl], mine, shared)
        )
        ell = F.binary_cross_entropy_with_logits(z, labels[sl], reduction="none")
        out.index_add_(0, local[sl], ell.double())
    return out


def block_jacobians(
    module: NCFModule,
    which: str,
    mine: torch.Tensor,
    other: torch.Tensor,
    shared: dict[str, torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``z`` (b,) and per-sample Jacobians ``dz_s / d(own block)`` (b, d), detached.

    GMF's logit :math:`h^\\top (p \\odot q) + c` is linear in either block, with Jacobian
    :math:`h \\odot q` (user side) or :math:`h \\odot p` (item side): closed form, no autograd.
    Otherwise one backward pass of ``z.sum()`` (the head acts row by row, so row ``s`` of the
    gradient is sample ``s``'s Jacobian).
    """
    if isinstance(module.head, GMFHead):
        h = shared["out.weight"][0]
        z = (mine * other) @ h + shared["out.bias"][0]
        return z, other * h
    leaf = mine.detach().requires_grad_()
    z = (
        module.logits(leaf, other, shared)
        if which == "users"
        else module.logits(other, leaf, shared)
    )
    (J,) = torch.autograd.grad(z.sum(), leaf)
    return z.detach(), J


@dataclass
class _Groups:
    """Samples sorted by block, blocks in chunks of similar size (for padded ``bmm``).

    ``order`` sorts the selected samples so that each chunk's samples are the contiguous range
    ``lo:hi``; each chunk is ``(blocks, lo, hi, slot, pos, width)``: positions (in ``rows``) of
    its blocks, the range, each sample's block slot in the chunk and position within its
    block, and the largest block's sample count.
    """

    order: torch.Tensor
    chunks: list[tuple[torch.Tensor, int, int, torch.Tensor, torch.Tensor, int]]


def group_blocks(local: torch.Tensor, b: int, d: int) -> _Groups:
    counts = torch.bincount(local, minlength=b)
    by_size = torch.argsort(counts, stable=True)
    rank = torch.empty_like(by_size)
    rank[by_size] = torch.arange(b, device=local.device)
    order = torch.argsort(rank[local], stable=True)  # samples of smaller blocks first
    slot_all = rank[local[order]]
    sizes = counts[by_size]
    starts = torch.cumsum(sizes, 0) - sizes
    pos_all = torch.arange(len(local), device=local.device) - starts[slot_all]
    chunks, lo = [], 0
    sizes_l, starts_l = sizes.tolist(), starts.tolist()
    while lo < b:
        hi = lo + 1
        # sizes ascend, so the chunk's width is its last block's count
        while hi < b and (hi + 1 - lo) * max(sizes_l[hi], 1) * d <= _CELLS:
            hi += 1
        s0, s1 = starts_l[lo], starts_l[hi - 1] + sizes_l[hi - 1]
        chunks.append(
            (by_size[lo:hi], s0, s1, slot_all[s0:s1] - lo, pos_all[s0:s1], max(sizes_l[hi - 1], 1))
        )
        lo = hi
    return _Groups(order, chunks)


def padded_blocks(
    rows: torch.Tensor, slot: torch.Tensor, pos: torch.Tensor, n_blocks: int, width: int
) -> torch.Tensor:
    """A chunk's sample rows laid out per block (see :class:`_Groups`), zero-padded to
    ``(n_blocks, width, d)``, so one ``bmm`` sums per block."""
    P = torch.zeros(n_blocks, width, rows.shape[1], dtype=rows.dtype, device=rows.device)
    P[slot, pos] = rows
    return P


def _assemble(
    module: NCFModule,
    which: str,
    groups: _Groups,
    local: torch.Tensor,
    B: torch.Tensor,
    other: torch.Tensor,
    labels: torch.Tensor,
    shared: dict[str, torch.Tensor],
    *,
    losses: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """One pass over the blocks' samples (grouped by :func:`group_blocks`): gradients, Hessians.

    Returns the summed BCE gradient of each block (float32 sums, (b, d)), the data part
    :math:`\\sum_s \\sigma_s (1 - \\sigma_s) J_s J_s^\\top` of each block's Hessian (float64,
    (b, d, d), no ridge) and, with ``losses``, each block's summed BCE (float64, (b,)).
    """
    b, d = B.shape
    dev = B.device
    gd = torch.zeros(b, d, dtype=other.dtype, device=dev)
    fz = torch.zeros(b, dtype=torch.float64, device=dev) if losses else None
    H = torch.zeros(b, d, d, dtype=torch.float64, device=dev)
    for blocks, lo, hi, slot, pos, width in groups.chunks:
        mine, lab = local[lo:hi], labels[lo:hi]
        z, J = block_jacobians(module, which, B[mine], other[lo:hi], shared)
        if fz is not None:
            ell = F.binary_cross_entropy_with_logits(z, lab, reduction="none")
            fz.index_add_(0, mine, ell.double())
        p = torch.sigmoid(z)
        gd.index_add_(0, mine, (p - lab)[:, None] * J)
        P = padded_blocks(torch.sqrt(p * (1 - p))[:, None] * J, slot, pos, len(blocks), width)
        H[blocks] += (P.transpose(1, 2) @ P).double()  # H_b = P_b^T P_b
    return gd, H, fz


def block_curvature(
    module: NCFModule, sample: FixedSample, which: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every block of one side: data gradient (float64, (n, d)) and Hessian data part (float64).

    One pass over the sample (see :func:`_assemble`); blocks without samples get zeros.
    """
    if which == "users":
        mine_idx, other_idx, n = sample.users, sample.items, module.n_users
        table, other_all = module.all_user_vectors().detach(), module.all_item_vectors().detach()
    else:
        mine_idx, other_idx, n = sample.items, sample.users, module.n_items
        table, other_all = module.all_item_vectors().detach(), module.all_user_vectors().detach()
    rows = torch.arange(n, device=table.device)
    keep, local = _select(mine_idx, rows, n)
    groups = group_blocks(local, n, table.shape[1])
    keep, local = keep[groups.order], local[groups.order]
    gd, H, _ = _assemble(
        module,
        which,
        groups,
        local,
        table,
        other_all[other_idx[keep]],
        sample.labels[keep],
        shared_weights(module),
    )
    return gd.double(), H


def block_newton(
    module: NCFModule,
    sample: FixedSample,
    which: str,
    rows: torch.Tensor | np.ndarray,
    reg: float,
    *,
    steps: int = 3,
    damping: float = 0.0,
    max_halvings: int = 12,
    gtol: float = 1e-6,
    anchor: Anchor | None = None,
    tilt: torch.Tensor | None = None,
    start_tilt: torch.Tensor | None = None,
) -> dict[str, float]:
    """Damped Newton steps with per-block backtracking on the blocks ``rows`` of one side.

    The other side and the shared weights are fixed, so :math:`F` separates over the blocks;
    each block's loss never increases. Updates ``module`` in place. All blocks are solved in
    one batch: per Newton step, one pass over their samples gives the Jacobians (closed form
    for GMF, one backward pass otherwise), the gradients (``index_add``) and the Hessians
    :math:`\\sum_s w_s J_s J_s^\\top` (samples padded per block, one ``bmm`` per chunk of
    blocks of similar size), then ``torch.linalg.solve`` on the batch.

    Parameters
    ----------
    module : NCFModule
    sample : FixedSample
    which : {"users", "items"}
    rows : int tensor or array of shape (b,)
        Block (row) indices to update.
    reg, damping : float
        Ridge :math:`\\lambda` and extra Levenberg-Marquardt damping :math:`\\mu`.
    steps : int
        Newton steps per block (at most; a block stops once its gradient norm is below
        ``gtol`` times its number of samples plus one).
    anchor : Anchor, optional
        Minimise the anchored block losses (each block's rows of ``anchor`` as linear term).
    tilt : float64 tensor of shape (b, d), optional
        The linear terms of the blocks ``rows`` directly (instead of ``anchor``).
    start_tilt : float64 tensor of shape (b, d), optional
        Anchor the blocks at their start: the linear term is the block gradient at the start
        plus ``start_tilt`` (so the first Newton step sees the gradient ``-start_tilt``).

    Returns
    -------
    dict
        ``{"blocks": b, "decrease": total loss decrease}``.
    """
    dev = sample.users.device
    rows = torch.as_tensor(np.asarray(rows) if not torch.is_tensor(rows) else rows, device=dev)
    rows = rows.to(torch.int64)
    if len(rows) == 0:
        return {"blocks": 0, "decrease": 0.0}
    if which == "users":
        mine_idx, other_idx, n = sample.users, sample.items, module.n_users
        table = module.all_user_vectors().detach()
        other_all = module.all_item_vectors().detach()
    else:
        mine_idx, other_idx, n = sample.items, sample.users, module.n_items
        table = module.all_item_vectors().detach()
        other_all = module.all_user_vectors().detach()
    keep, local = _select(mine_idx, rows, n)
    B = table[rows].clone()
    b, d = B.shape
    groups = group_blocks(local, b, d)
    keep, local = keep[groups.order], local[groups.order]  # chunks are contiguous ranges now
    other = other_all[other_idx[keep]]
    labels = sample.labels[keep]
    shared = shared_weights(module)
    if tilt is None and anchor is not None:
        tilt = getattr(anchor, which)[rows]
    size = torch.bincount(local, minlength=b).double() + 1.0
    eye = torch.eye(d, dtype=torch.float64, device=dev)
    active = torch.ones(b, dtype=torch.bool, device=dev)
    f_old = f_start = None
    for _ in range(steps):
        gd, H, fz = _assemble(
            module, which, groups, local, B, other, labels, shared, losses=f_old is None
        )
        H += (reg + damping) * eye
        g = gd.double() + reg * B.double()
        if start_tilt is not None and tilt is None:  # first step: fix the linear term
            tilt = g + start_tilt
        if tilt is not None:
            g = g - tilt
        if f_old is None:
            f_old = fz + 0.5 * reg * (B.double() ** 2).sum(1)
            if tilt is not None:
                f_old -= (tilt * B.double()).sum(1)
            f_start = f_old.clone()
        active &= g.norm(dim=1) > gtol * size
        if not bool(active.any()):
            break
        step = torch.linalg.solve(H, -g.unsqueeze(-1)).squeeze(-1)
        step[~active] = 0.0
        slope = (g * step).sum(1)  # < 0: H is positive definite
        t = torch.ones(b, dtype=torch.float64, device=dev)
        todo = active.clone()
        newB = B.clone()
        for _ in range(max_halvings):
            trial = torch.where(todo[:, None], B + (t[:, None] * step).to(B.dtype), newB)
            if bool(todo.all()):
                f_new = _block_losses(module, which, trial, other, local, labels, shared, reg, tilt)
            else:  # only the undecided blocks' samples
                sel = torch.nonzero(todo[local]).squeeze(1)
                f_new = _block_losses(
                    module, which, trial, other[sel], local[sel], labels[sel], shared, reg, tilt
                )
            ok = todo & (f_new <= f_old + 1e-4 * t * slope)
            newB[ok] = trial[ok]
            f_old = torch.where(ok, f_new, f_old)
            todo &= ~ok
            if not bool(todo.any()):
                break
            t = torch.where(todo, 0.5 * t, t)
        active &= ~todo  # a block whose line search failed is at its (float32) optimum
        B = newB
    setter = module.set_user_vectors if which == "users" else module.set_item_vectors
    setter(rows, B)
    decrease = 0.0 if f_start is None else float((f_start - f_old).sum())
    return {"blocks": int(b), "decrease": decrease}


def block_gradient(
    module: NCFModule, sample: FixedSample, which: str, rows: np.ndarray, reg: float
) -> torch.Tensor:
    """:math:`\\nabla_b F` of the blocks ``rows`` of one side (float64, (b, d)); one pass."""
    dev = sample.users.device
    rows = torch.as_tensor(rows, dtype=torch.int64, device=dev)
    mine_idx, other_idx, n = (
        (sample.users, sample.items, module.n_users)
        if which == "users"
        else (sample.items, sample.users, module.n_items)
    )
    table, other_all = (
        (module.all_user_vectors().detach(), module.all_item_vectors().detach())
        if which == "users"
        else (module.all_item_vectors().detach(), module.all_user_vectors().detach())
    )
    B = table[rows]
    g = reg * B.double()
    keep, local = _select(mine_idx, rows, n)
    shared = shared_weights(module)
    for s in range(0, len(keep), SAMPLE_CHUNK):
        k, loc = keep[s : s + SAMPLE_CHUNK], local[s : s + SAMPLE_CHUNK]
        z, J = block_jacobians(module, which, B[loc], other_all[other_idx[k]], shared)
        r = torch.sigmoid(z.double()) - sample.labels[k].double()
        g.index_add_(0, loc, r[:, None] * J.double())
    return g


def _param_tilts(module: NCFModule, anchor: Anchor, joint: bool) -> list[torch.Tensor]:
    """The anchor's part for each parameter of ``module`` (joint) or of its head, in order."""
    if not joint:
        return [anchor.shared[k].float() for k in module.shared_parameters()]

    def split(c: torch.Tensor, tables: list) -> list[torch.Tensor]:
        widths = [t.embedding_dim for t in tables]
        return [part.float() for part in torch.split(c, widths, dim=1)]

    by_param = dict(
        zip(
            [t.weight for t in module.user_embeddings] + [t.weight for t in module.item_embeddings],
            split(anchor.users, module.user_embeddings)
            + split(anchor.items, module.item_embeddings),
            strict=True,
        )
    )
    head = {id(p): anchor.shared[k].float() for k, p in module.shared_parameters().items()}
    return [by_param[p] if p in by_param else head[id(p)] for p in module.parameters()]


def shared_lbfgs(
    module: NCFModule,
    sample: FixedSample,
    reg: float,
    *,
    iterations: int = 10,
    joint: bool = False,
    anchor: Anchor | None = None,
) -> dict[str, float]:
    """L-BFGS (strong Wolfe) on the shared weights, blocks fixed; reverted if :math:`F` rose.

    ``joint=True`` optimises every parameter (blocks too) at once: near the optimum a few
    joint quasi-Newton iterations remove the slow zig-zag of alternating block updates. With an
    ``anchor`` the anchored objective is minimised.
    """
    params = list(module.parameters() if joint else module.head.parameters())
    tilts = _param_tilts(module, anchor, joint) if anchor is not None else None
    before = [p.detach().clone() for p in params]
    U = module.all_user_vectors().detach()
    V = module.all_item_vectors().detach()
    opt = torch.optim.LBFGS(
        params,
        lr=1.0,
        max_iter=iterations,
        tolerance_grad=0.0,
        tolerance_change=0.0,
        history_size=10,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        total = 0.0
        for s in range(0, len(sample), SAMPLE_CHUNK):
            sl = slice(s, s + SAMPLE_CHUNK)
            u, i = sample.users[sl], sample.items[sl]
            z = module(u, i) if joint else module.head(U[u], V[i])
            loss = F.binary_cross_entropy_with_logits(z, sample.labels[sl], reduction="sum")
            loss.backward()
            total += float(loss.detach())
        extra = 0.5 * reg * sum((p**2).sum() for p in params)
        if tilts is not None:
            extra = extra - sum((c * p).sum() for c, p in zip(tilts, params, strict=True))
        extra.backward()
        return torch.tensor(total + float(extra.detach()))

    f0 = objective(module, sample, reg, anchor)
    opt.step(closure)
    f1 = objective(module, sample, reg, anchor)
    if not np.isfinite(f1) or f1 > f0:
        with torch.no_grad():
            for p, old in zip(params, before, strict=True):
                p.copy_(old)
        f1 = f0
    for p in module.parameters():
        p.grad = None
    return {"decrease": f0 - f1}


# ---------------------------------------------------------------------------- influence
def _unpack(module: NCFModule, nu: int, ni: int, names: list[str], vec: torch.Tensor) -> list:
    shapes = [(nu, module.user_dim), (ni, module.item_dim)]
    params = module.shared_parameters()
    shapes += [tuple(params[k].shape) for k in names]
    out, s = [], 0
    for shp in shapes:
        k = int(np.prod(shp))
        out.append(vec[s : s + k].reshape(shp))
        s += k
    return out


def hessian_vector_product(
    module: NCFModule,
    sample: FixedSample,
    reg: float,
    tu: torch.Tensor,
    ti: torch.Tensor,
    names: list[str],
    vec: torch.Tensor,
) -> torch.Tensor:
    """Hessian of :math:`F` restricted to the affected parameters, times ``vec`` (float64)."""
    U0 = module.all_user_vectors().detach()
    V0 = module.all_item_vectors().detach()
    sh0 = shared_weights(module)
    Ua = U0[tu].clone().requires_grad_()
    Va = V0[ti].clone().requires_grad_()
    sa = {k: sh0[k].clone().requires_grad_() for k in names}
    leaves = [Ua, Va, *sa.values()]
    vs = [v.to(torch.float32) for v in _unpack(module, len(tu), len(ti), names, vec)]
    if names:
        keep = torch.arange(len(sample), device=tu.device)
    else:
        mu = torch.zeros(module.n_users, dtype=torch.bool, device=tu.device)
        mi = torch.zeros(module.n_items, dtype=torch.bool, device=tu.device)
        mu[tu], mi[ti] = True, True
        keep = torch.nonzero(mu[sample.users] | mi[sample.items]).squeeze(1)
    out = [torch.zeros_like(v, dtype=torch.float64) for v in vs]
    for s in range(0, len(keep), SAMPLE_CHUNK):
        k = keep[s : s + SAMPLE_CHUNK]
        U = U0.index_put((tu,), Ua)
        V = V0.index_put((ti,), Va)
        shared = {**sh0, **sa}
        z = module.logits(U[sample.users[k]], V[sample.items[k]], shared)
        loss = F.binary_cross_entropy_with_logits(z, sample.labels[k], reduction="sum")
        grads = torch.autograd.grad(loss, leaves, create_graph=True, allow_unused=True)
        dot = sum((g * v).sum() for g, v in zip(grads, vs, strict=True) if g is not None)
        if not torch.is_tensor(dot) or not dot.requires_grad:
            continue
        hv = torch.autograd.grad(dot, leaves, allow_unused=True)
        for o, h in zip(out, hv, strict=True):
            if h is not None:
                o += h.double()
    return torch.cat([o.ravel() for o in out]) + reg * vec


def conjugate_gradient(matvec: Any, b: torch.Tensor, steps: int) -> torch.Tensor:
    """Conjugate gradient for ``matvec(x) = b`` from zero (``steps`` iterations at most)."""
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rr = float(r @ r)
    stop = 1e-20 * max(rr, 1e-300)
    for _ in range(steps):
        if rr <= stop:
            break
        Ap = matvec(p)
        pAp = float(p @ Ap)
        if pAp <= 0:
            break
        a = rr / pAp
        x += a * p
        r -= a * Ap
        rr_new = float(r @ r)
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


@torch.no_grad()
def apply_step(
    module: NCFModule, tu: torch.Tensor, ti: torch.Tensor, names: list[str], delta: torch.Tensor
) -> None:
    parts = _unpack(module, len(tu), len(ti), names, delta)
    if len(tu):
        module.set_user_vectors(tu, module.all_user_vectors()[tu] + parts[0].float())
    if len(ti):
        module.set_item_vectors(ti, module.all_item_vectors()[ti] + parts[1].float())
    params = module.shared_parameters()
    for k, d in zip(names, parts[2:], strict=True):
        params[k].add_(d.to(params[k].dtype))


__all__ = [
    "apply_step",
    "block_curvature",
    "block_gradient",
    "block_jacobians",
    "block_newton",
    "conjugate_gradient",
    "group_blocks",
    "hessian_vector_product",
    "padded_blocks",
    "shared_lbfgs",
]
