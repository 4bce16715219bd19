"""AltEraser's one-step update with per-row ridges (``ridge="row"``), against slow references."""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from recforget import DeletionRequest, Interactions, forget  # noqa: E402
from recforget.models import _ncf_curvature as C  # noqa: E402
from recforget.models import _ncf_objective as O  # noqa: E402
from recforget.models.ncf import NCF  # noqa: E402
from recforget.unlearn import ncf as U  # noqa: E402
from recforget.unlearn.ncf import sample as S  # noqa: E402
from recforget.unlearn.ncf.update import ROW_REG_FLOOR, row_ridges  # noqa: E402

pytestmark = pytest.mark.torch

SMALL = dict(factors=4, layers=(8, 4), epochs=15, batch_size=64, lr=1e-2, num_threads=1)


def _data(n_users: int = 24, n_items: int = 16, seed: int = 1) -> Interactions:
    rng = np.random.default_rng(seed)
    # users of very different degrees: the per-row ridges should differ
    p = np.linspace(0.08, 0.7, n_users)[:, None]
    R = (rng.random((n_users, n_items)) < p).astype(float)
    R[np.arange(n_users), rng.integers(0, n_items, n_users)] = 1.0
    return Interactions.from_csr(
        R, users=[f"u{k}" for k in range(n_users)], items=[f"i{k}" for k in range(n_items)]
    )


@pytest.fixture(scope="module")
def data() -> Interactions:
    return _data()


@pytest.fixture(scope="module", params=["gmf", "neumf"])
def _fitted(request, data) -> NCF:
    return NCF(request.param, random_state=0, **SMALL).fit(data)


@pytest.fixture
def fitted(_fitted) -> NCF:
    return copy.deepcopy(_fitted)


def _pairs(data: Interactions, entries) -> list[tuple[object, object]]:
    return [
        (data.users.ids[data.row_of_entry[e]], data.items.ids[data.indices[e]]) for e in entries
    ]


def _row_grad(module, sample, which, b):
    """The summed BCE's gradient by one row, by autograd on that row alone."""
    U0 = module.all_user_vectors().detach()
    V0 = module.all_item_vectors().detach()
    own = sample.users if which == "users" else sample.items
    mask = own == b
    p = (U0 if which == "users" else V0)[b].clone().requires_grad_()
    if which == "users":
        z = module.logits(p.expand(int(mask.sum()), -1), V0[sample.items[mask]])
    else:
        z = module.logits(U0[sample.users[mask]], p.expand(int(mask.sum()), -1))
    loss = torch.nn.functional.binary_cross_entropy_with_logits(
        z, sample.labels[mask], reduction="sum"
    )
    loss.backward()
    return p.grad.double(), p.detach().double()


def test_row_ridges_are_each_rows_least_squares_fit_capped_at_the_global_one(fitted):
    module, sample = fitted.module_, O.fixed_sample(fitted)
    reg = fitted.objective_reg_
    curv = U.prepare(fitted, ridge="row")
    for which, got in (("users", curv.user_reg), ("items", curv.item_reg)):
        n = module.n_users if which == "users" else module.n_items
        want = []
        for b in range(n):
            g, th = _row_grad(module, sample, which, b)
            lam = -float(g @ th) / float(th @ th)
            want.append(min(max(lam, ROW_REG_FLOOR * reg), reg))
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-4)
    # light and heavy users sit at different ridges, so a per-row ridge changes the step
    assert curv.user_reg.max() > 1.5 * curv.user_reg.min()
    # the anchor is the block gradient with each row's own ridge
    g, th = _row_grad(module, sample, "users", 3)
    torch.testing.assert_close(curv.user_anchor[3], g + curv.user_reg[3] * th, rtol=1e-4, atol=1e-6)


def test_row_ridges_cap_floor_and_empty_rows():
    table = torch.tensor([[1.0, 0.0], [0.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    grad = torch.tensor([[-3.0, 5.0], [1.0, 1.0], [4.0, 0.0], [2.0, -15.0]])  # 3, -, -2, 15
    got = row_ridges(grad, table, reg=10.0)
    np.testing.assert_allclose(got.numpy(), [3.0, 10.0, 10.0 * ROW_REG_FLOOR, 10.0])


def test_row_ridge_step_is_each_blocks_newton_step(fitted, data):
    """Every moved block lands at theta_0 + t (H_b + lambda_b I)^-1 delta_b, H_b by autograd."""
    request = DeletionRequest(pairs=_pairs(data, [2, 30, 61]))
    removal = data.remove(pairs=request.pairs)
    result = forget(fitted, request, "alteraser", ridge="row")
    r = result.receipt
    assert (r["update"], r["ridge"]) == ("jacobi", "row") and r["step"] > 0
    lam = U.prepare(copy.deepcopy(fitted), ridge="row")
    warm = U.transplant(fitted, removal)
    delta = S.sample_delta(fitted, removal, warm)
    sample = O.fixed_sample(warm)  # the remaining sample
    module = warm.module_
    U0 = module.all_user_vectors().detach()
    V0 = module.all_item_vectors().detach()
    after = {
        "users": result.model.module_.all_user_vectors().detach(),
        "items": result.model.module_.all_item_vectors().detach(),
    }
    checked = 0
    for which, table, regs, d in (
        ("users", U0, lam.user_reg, delta.users),
        ("items", V0, lam.item_reg, delta.items),
    ):
        own = sample.users if which == "users" else sample.items
        for b in torch.nonzero(d.abs().sum(1) > 0).squeeze(1).tolist():
            mask = own == b

            def loss(p, b=b, mask=mask, which=which):
                if which == "users":
                    z = module.logits(p.expand(int(mask.sum()), -1), V0[sample.items[mask]])
                else:
                    z = module.logits(U0[sample.users[mask]], p.expand(int(mask.sum()), -1))
                return torch.nn.functional.binary_cross_entropy_with_logits(
                    z, sample.labels[mask], reduction="sum"
                )

            H = torch.autograd.functional.hessian(loss, table[b].clone()).double()
            H = H + float(regs[b]) * torch.eye(len(H), dtype=torch.float64)
            want = table[b].double() + r["step"] * torch.linalg.solve(H, d[b])
            torch.testing.assert_close(after[which][b].double(), want, rtol=2e-3, atol=2e-4)
            checked += 1
    assert checked == r["blocks_solved"] > 3


def test_row_ridge_step_decreases_its_anchored_objective(fitted, data):
    """Recomputed from scratch: BCE on the remaining sample + each row's ridge - c.theta."""
    request = DeletionRequest(pairs=_pairs(data, [5, 44]))
    removal = data.remove(pairs=request.pairs)
    curv = U.prepare(copy.deepcopy(fitted), ridge="row")
    full, rem = O.fixed_sample(fitted), O.fixed_sample(U.transplant(fitted, removal))
    result = forget(fitted, request, "alteraser", ridge="row")

    def bce(module, sample, users=None, items=None):
        U1 = module.all_user_vectors().detach().double() if users is None else users
        V1 = module.all_item_vectors().detach().double() if items is None else items
        z = module.logits(U1[sample.users].float(), V1[sample.items].float())
        return torch.nn.functional.binary_cross_entropy_with_logits(
            z.double(), sample.labels.double(), reduction="sum"
        )

    def ridge(U1, V1):
        return 0.5 * (
            (curv.user_reg[:, None] * U1**2).sum() + (curv.item_reg[:, None] * V1**2).sum()
        )

    def anchored(module, U1, V1):
        value = bce(module, rem, U1, V1) + ridge(U1, V1) - (c_u * U1).sum() - (c_i * V1).sum()
        return float(value.detach())

    m0 = fitted.module_
    U0 = m0.all_user_vectors().detach().double().requires_grad_()
    V0 = m0.all_item_vectors().detach().double().requires_grad_()
    (bce(m0, full, U0, V0) + ridge(U0, V0)).backward()
    c_u, c_i = U0.grad, V0.grad  # the full objective's gradient at theta_0 (its anchor)
    torch.testing.assert_close(c_u, curv.user_anchor, rtol=1e-4, atol=1e-5)
    m1 = result.model.module_
    f0 = anchored(m0, U0.detach(), V0.detach())
    f1 = anchored(
        m1, m1.all_user_vectors().detach().double(), m1.all_item_vectors().detach().double()
    )
    assert f1 < f0
    assert result.receipt["loss_history"][-1] * len(rem) == pytest.approx(f1 - f0, rel=2e-2)


def test_row_ridge_curvature_is_carried_saved_and_kept_apart(fitted, data, tmp_path):
    request = DeletionRequest(pairs=_pairs(data, [1, 20]))
    curv = U.prepare(fitted, ridge="row")
    assert curv.ridge == "row" and C.prepared(fitted, curv.reg, "global") is None
    result = forget(fitted, request, "alteraser", ridge="row")
    assert result.receipt["prepared"] is True
    carried = result.model.curvature_
    assert carried.ridge == "row" and torch.equal(carried.user_reg, curv.user_reg)
    result.model.save(tmp_path / "m", curvature=True)
    back = NCF.load(tmp_path / "m")
    got = C.prepared(back, carried.reg, "row")
    assert got is not None and torch.equal(got.item_reg, carried.item_reg)
    # a global-ridge request on that model prepares its own curvature
    again = forget(back, DeletionRequest(pairs=_pairs(data, [9])), "alteraser", ridge="global")
    assert again.receipt["prepared"] is False and again.receipt["ridge"] == "global"
    with pytest.raises(ValueError, match="ridge must be one of"):
        forget(fitted, request, "alteraser", ridge="rows")
    with pytest.raises(ValueError, match="one-step update"):
        forget(fitted, request, "alteraser", ridge="row", update="alternating")
