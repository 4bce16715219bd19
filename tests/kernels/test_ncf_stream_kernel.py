"""The GMF sweep kernel against autograd on the full sample (a dense, obviously correct sum)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from recforget import Interactions  # noqa: E402
from recforget.data.mutable import MutableInteractions  # noqa: E402
from recforget.kernels.ncf_stream import gmf_sweep  # noqa: E402


def _loss_and_grads(P, Q, h, b, users, items, labels, mult):
    P, Q = torch.tensor(P, requires_grad=True), torch.tensor(Q, requires_grad=True)
    h = torch.tensor(h, requires_grad=True)
    b = torch.tensor(b, dtype=torch.float64, requires_grad=True)
    z = (P[users] * Q[items]) @ h + b
    bce = torch.nn.functional.binary_cross_entropy_with_logits(z, labels, reduction="none")
    loss = (mult * bce).sum()
    loss.backward()
    return float(loss.detach()), P.grad.numpy(), Q.grad.numpy(), h.grad.numpy(), float(b.grad)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gmf_sweep_is_the_change_of_the_full_sums(seed):
    rng = np.random.default_rng(seed)
    n_u, n_i, d = 14, 11, 5
    pos = rng.random((n_u, n_i)) < 0.35
    neg = (rng.random((n_u, n_i)) < 0.4) & ~pos
    counts = np.where(neg, rng.integers(1, 4, (n_u, n_i)), 0).astype(float)
    view = MutableInteractions.from_interactions(Interactions.from_csr(pos.astype(float)))
    nview = MutableInteractions.from_interactions(Interactions.from_csr(counts))
    for m in (view, nview):  # some tombstones, which must be skipped
        dead = rng.choice(m.capacity, size=3, replace=False)
        m.live[dead] = False
    P0 = rng.normal(size=(n_u, d)).astype(np.float32)
    Q0 = rng.normal(size=(n_i, d)).astype(np.float32)
    h, b = rng.normal(size=d), 0.3
    users = np.sort(rng.choice(n_u, size=3, replace=False))
    items = np.sort(rng.choice(n_i, size=4, replace=False))
    P1, Q1 = P0.copy(), Q0.copy()
    P1[users] += rng.normal(size=(3, d)).astype(np.float32)
    Q1[items] += rng.normal(size=(4, d)).astype(np.float32)
    moved = np.zeros(n_u, dtype=bool)
    moved[users] = True
    gU, gV, gh, acc = np.zeros((n_u, d)), np.zeros((n_i, d)), np.zeros(d), np.zeros(3)
    tu, ti = np.zeros(n_u, dtype=bool), np.zeros(n_i, dtype=bool)
    gmf_sweep(
        users, items, moved,
        view.indptr, view.indices, view.live, view.t_indptr, view.t_indices, view.t_twin,
        nview.indptr, nview.indices, nview.live, nview.values,
        nview.t_indptr, nview.t_indices, nview.t_twin,
        P0, Q0, P1, Q1, h, b, gU, gV, gh, acc, tu, ti,
    )  # fmt: skip
    # the whole sample, densely: live positives (label 1) and negatives (multiplicities)
    su, si, sy, sm = [], [], [], []
    for m, label in ((view, 1.0), (nview, 0.0)):
        e = np.flatnonzero(m.live)
        su.append(np.searchsorted(m.indptr, e, side="right") - 1)
        si.append(m.indices[e].astype(np.int64))
        sy.append(np.full(len(e), label))
        sm.append(np.ones(len(e)) if label else m.values[e])
    args = [torch.as_tensor(np.concatenate(a)) for a in (su, si, sy, sm)]
    before = _loss_and_grads(P0.astype(np.float64), Q0.astype(np.float64), h, b, *args)
    after = _loss_and_grads(P1.astype(np.float64), Q1.astype(np.float64), h, b, *args)
    assert acc[0] == pytest.approx(
        after[0] - before[0], rel=1e-7, abs=1e-7
    )  # fastmath: sums reordered
    np.testing.assert_allclose(gU, after[1] - before[1], atol=1e-9)
    np.testing.assert_allclose(gV, after[2] - before[2], atol=1e-9)
    np.testing.assert_allclose(gh, after[3] - before[3], atol=1e-9)
    assert acc[1] == pytest.approx(after[4] - before[4], abs=1e-9)
    # the rows flagged are exactly those whose gradient changed (or were moved)
    changed_u = np.abs(after[1] - before[1]).sum(1) > 0
    changed_i = np.abs(after[2] - before[2]).sum(1) > 0
    assert np.array_equal(tu, changed_u | moved)
    assert (ti | ~changed_i).all()
