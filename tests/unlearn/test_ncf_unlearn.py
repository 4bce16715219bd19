"""Unlearning for NCF models: block Newton, AltEraser's monotone descent, sampling, contracts."""

from __future__ import annotations

import copy
from typing import ClassVar

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from recforget import DeletionRequest, Interactions, forget  # noqa: E402
from recforget.models import _ncf_curvature as C  # noqa: E402
from recforget.models import _ncf_negatives as N  # noqa: E402
from recforget.models import _ncf_objective as O  # noqa: E402
from recforget.models.ncf import NCF  # noqa: E402
from recforget.testing import UnlearnerContract  # noqa: E402
from recforget.unlearn import ncf as U  # noqa: E402
from recforget.unlearn.ncf import sample as S  # noqa: E402
from recforget.unlearn.ncf import solvers  # noqa: E402

pytestmark = pytest.mark.torch

SMALL = dict(factors=8, layers=(16, 8), epochs=20, batch_size=64, lr=1e-2, num_threads=1)
# the plain (un-anchored) objective, iterated to a certified stationary point. The network's
# float32 parameters put a floor under the reachable relative residual: on the contract data the
# line searches stop improving at max_relative 0.99e-3 to 1.01e-3 depending on the CPU, so the
# contract asks for 2e-3 (the floor, not the solver, decided a 1e-3 test).
EXACT = dict(
    tol=2e-3, newton_steps=1, shared_steps=10, joint_steps=20, max_rounds=60, anchored=False
)


def _data(n_users: int = 30, n_items: int = 20, seed: int = 0) -> Interactions:
    rng = np.random.default_rng(seed)
    R = (rng.random((n_users, n_items)) < 0.3).astype(float)
    R[np.arange(n_users), rng.integers(0, n_items, n_users)] = 1.0
    return Interactions.from_csr(
        R, users=[f"u{k}" for k in range(n_users)], items=[f"i{k}" for k in range(n_items)]
    )


@pytest.fixture(scope="module")
def data() -> Interactions:
    return _data()


@pytest.fixture(scope="module")
def _gmf(data) -> NCF:
    return NCF("gmf", random_state=0, **SMALL).fit(data)


@pytest.fixture
def gmf(_gmf) -> NCF:
    """The module's GMF model, fitted once; each test gets its own copy to change."""
    return copy.deepcopy(_gmf)


@pytest.fixture(scope="module", params=["gmf", "mlp", "neumf"])
def fitted(request, data) -> NCF:
    return NCF(request.param, random_state=0, **SMALL).fit(data)


def _pairs(data: Interactions, entries) -> list[tuple[object, object]]:
    return [
        (data.users.ids[data.row_of_entry[e]], data.items.ids[data.indices[e]]) for e in entries
    ]


def _user_loss(module, sample, reg, u, p):
    """One user's block loss, recomputed independently of the Newton code."""
    mask = sample.users == u
    V = module.all_item_vectors().detach()[sample.items[mask]]
    z = module.logits(p.expand(len(V), -1), V)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(
        z, sample.labels[mask], reduction="sum"
    )
    return bce + 0.5 * reg * (p**2).sum()


# ---------------------------------------------------------------------------- block Newton
@pytest.mark.parametrize("arch", ["gmf"])
def test_user_block_newton_reaches_the_block_optimum(data, arch):
    """GMF's user block is a ridge logistic regression: Newton reaches its unique minimiser.

    (MLP and NeuMF blocks pass through ReLUs: the block loss is piecewise smooth, its minimiser
    can sit on a kink where the gradient does not vanish; there the Newton steps are only
    checked to descend, in the tests below.)
    """
    fitted = NCF(arch, random_state=0, **SMALL).fit(data)
    sample = O.fixed_sample(fitted)
    reg = O.DEFAULT_REG
    work = copy.deepcopy(fitted.module_)
    users = np.arange(work.n_users)
    before = O.objective(work, sample, reg)
    solvers.block_newton(work, sample, "users", users, reg, steps=15)
    assert O.objective(work, sample, reg) <= before
    for u in (0, 7, 19):
        p = work.all_user_vectors().detach()[u].clone().requires_grad_()
        (g,) = torch.autograd.grad(_user_loss(work, sample, reg, u, p), p)
        # a generic optimiser on the same block alone, from the trained block
        q = fitted.module_.all_user_vectors().detach()[u].clone().double().requires_grad_()
        opt = torch.optim.LBFGS(
            [q], max_iter=200, tolerance_grad=1e-9, line_search_fn="strong_wolfe"
        )
        w64 = copy.deepcopy(work).double()
        s64 = O.FixedSample(sample.users, sample.items, sample.labels.double())

        def closure(q=q, w64=w64, s64=s64, u=u, opt=opt):
            opt.zero_grad()
            loss = _user_loss(w64, s64, reg, u, q)
            loss.backward()
            return loss

        opt.step(closure)
        f_newton = float(_user_loss(work, sample, reg, u, p.detach()).detach())
        f_lbfgs = float(_user_loss(w64, s64, reg, u, q.detach()).detach())
        scale = float(sample.labels[sample.users == u].numel()) + 1.0
        assert float(g.norm()) < 1e-3 * scale
        assert f_newton == pytest.approx(f_lbfgs, rel=1e-4, abs=1e-5)
        if fitted.arch == "gmf":  # convex block: a unique minimiser
            np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), atol=1e-3)


def test_block_newton_on_items_never_increases_any_block(data):
    model = NCF("mlp", random_state=1, **SMALL).fit(data)
    sample = O.fixed_sample(model)
    work = model.module_
    rows = np.arange(work.n_items)
    f0 = O.objective(work, sample, 1.0)
    info = solvers.block_newton(work, sample, "items", rows, 1.0, steps=3)
    assert info["blocks"] == work.n_items
    assert info["decrease"] >= 0
    assert O.objective(work, sample, 1.0) <= f0 + 1e-6 * abs(f0)


# ---------------------------------------------------------------------------- AltEraser
@pytest.mark.parametrize(
    "options",
    [
        {"joint_steps": 0, "newton_steps": 2, "anchored": False},
        {"joint_steps": 5, "anchored": False},
        {"max_rounds": 1, "ridge": "global"},  # the row ridge: tests/unlearn/test_ncf_row_ridge.py
        {"joint_steps": 0, "shared_steps": 3},
    ],
    ids=["blocks", "joint", "one-step", "anchored-rounds"],
)
def test_alteraser_never_increases_the_retraining_loss(fitted, data, options):
    options = {"max_rounds": 8, **options}
    request = DeletionRequest(pairs=_pairs(data, [0, 10, 50, 100]))
    removal = data.remove(pairs=request.pairs)
    result = forget(fitted, request, "alteraser", **options)
    h = np.asarray(result.receipt["loss_history"])
    assert len(h) == result.receipt["rounds"] + 1
    assert h[0] == 0.0  # change of the minimised objective (over |S|) since the warm start
    assert np.all(np.diff(h) <= 1e-9)
    assert h[-1] < 0
    # recomputed independently: the objective at the result minus at the warm start
    warm = U.transplant(fitted, removal)
    reg = fitted.objective_reg_
    sample = O.fixed_sample(warm)
    anchor = S.anchor_of(fitted, removal, warm, reg) if options.get("anchored", True) else None
    f0 = O.objective(warm.module_, sample, reg, anchor)
    f1 = O.objective(result.model.module_, sample, reg, anchor)
    assert (f1 - f0) / len(sample) == pytest.approx(h[-1], rel=1e-3, abs=1e-6)
    if anchor is None:
        assert result.receipt["objective"] == pytest.approx(f1 / len(sample), rel=1e-5)
    for key in ("rounds", "blocks_solved", "residual", "certificate"):
        assert key in result.receipt


def test_anchor_is_the_full_data_gradient(data):
    """c from the remaining sample plus the sample difference = the full sample's gradient."""
    model = NCF("neumf", random_state=0, **SMALL).fit(data)
    gone = [*_pairs(data, [1, 2, 60]), (data.users.ids[5], data.items.ids[3])]
    removal = data.remove(pairs=gone, users=[data.users.ids[9]], missing="ignore")
    warm = U.transplant(model, removal)
    reg = 0.7
    anchor = S.anchor_of(model, removal, warm, reg)
    module = model.module_
    Uv = module.all_user_vectors().detach().requires_grad_()
    Vv = module.all_item_vectors().detach().requires_grad_()
    sample = O.fixed_sample(model)  # the data before removal
    z = module.logits(Uv[sample.users], Vv[sample.items])
    loss = torch.nn.functional.binary_cross_entropy_with_logits(z, sample.labels, reduction="sum")
    loss.backward()
    keep_u = np.flatnonzero(removal.user_map >= 0)[
        np.argsort(removal.user_map[removal.user_map >= 0])
    ]
    keep_i = np.flatnonzero(removal.item_map >= 0)[
        np.argsort(removal.item_map[removal.item_map >= 0])
    ]
    cU = (Uv.grad + reg * Uv.detach())[keep_u].double()
    cV = (Vv.grad + reg * Vv.detach())[keep_i].double()
    np.testing.assert_allclose(anchor.users.numpy(), cU.numpy(), atol=2e-4)
    np.testing.assert_allclose(anchor.items.numpy(), cV.numpy(), atol=2e-4)


def test_carried_negatives_equal_a_fresh_draw(data):
    model = NCF("gmf", random_state=3, **SMALL).fit(data)
    N.model_negatives(model)  # cached
    gone = _pairs(data, [0, 7, 33, 90])
    for removal in (
        data.remove(pairs=gone),
        data.remove(pairs=gone, users=[data.users.ids[4]]),
        data.remove(items=[data.items.ids[2]]),
    ):
        new = U.transplant(model, removal)
        assert "_negatives_cache" in new.__dict__
        fresh = N.stable_negatives(removal.data, model.negatives, model.seed_)
        np.testing.assert_array_equal(N.model_negatives(new), fresh)
    some = np.array([1, 5])
    part = N.stable_negatives(data, 4, 7, users=some)
    full = N.stable_negatives(data, 4, 7)
    rows = np.isin(data.row_of_entry, some)
    np.testing.assert_array_equal(part[rows], full[rows])
    assert (part[~rows] == -1).all()


def test_carried_sample_change_equals_the_sorted_difference(data):
    model = NCF("gmf", random_state=3, **SMALL).fit(data)
    N.model_negatives(model)
    heavy = int(np.argmax(data.user_counts()))  # its draw may cycle: the slow path
    entries = [0, 7, 33, 90, 91, int(data.indptr[heavy])]
    for removal in (
        data.remove(pairs=_pairs(data, entries)),
        data.remove(pairs=_pairs(data, entries), users=[data.users.ids[4]]),
        data.remove(items=[data.items.ids[2]]),
    ):
        new = U.transplant(model, removal)
        fast = S.sample_change(model, removal, new)
        del new.__dict__["_sample_change"]
        slow = S.sample_change(model, removal, new)

        def as_set(c):
            return sorted(zip(c.users, c.items, c.labels, c.weights, strict=True))

        assert len(fast) > 0
        assert as_set(fast) == as_set(slow)


def test_gmf_closed_form_jacobian_matches_autograd(data, gmf):
    model = gmf
    module = model.module_
    shared = O.shared_weights(module)
    users = torch.tensor([0, 3, 3, 7])
    items = torch.tensor([1, 2, 5, 5])
    P, Q = module.user_vectors(users).detach(), module.item_vectors(items).detach()
    for which, mine, other in (("users", P, Q), ("items", Q, P)):
        z, J = solvers.block_jacobians(module, which, mine, other, shared)
        leaf = mine.clone().requires_grad_()
        args = (leaf, other) if which == "users" else (other, leaf)
        zz = torch.func.functional_call(module.head, shared, args)
        (JJ,) = torch.autograd.grad(zz.sum(), leaf)
        torch.testing.assert_close(z, zz.detach())
        torch.testing.assert_close(J, JJ)


def test_one_round_moves_only_affected_blocks_and_forgets(data, gmf):
    model = gmf
    gone = _pairs(data, [3, 40, 41])
    result = forget(model, DeletionRequest(pairs=gone), "alteraser")
    assert result.receipt["rounds"] == 1
    before, after = model.module_.all_user_vectors(), result.model.module_.all_user_vectors()
    moved = np.flatnonzero((before != after).any(dim=1).numpy())
    touched = set(data.users.index([u for u, _ in gone]).tolist())
    assert set(moved.tolist()) <= touched
    u = [p[0] for p in gone]
    i = [p[1] for p in gone]
    assert result.model.predict_proba(u, i).mean() < model.predict_proba(u, i).mean()


@pytest.mark.parametrize("arch", ["gmf", "neumf"])
def test_influence_step_never_increases_the_anchored_objective(data, arch):
    model = NCF(arch, random_state=0, **SMALL).fit(data)
    request = DeletionRequest(pairs=_pairs(data, [0, 10, 50, 100, 101]))
    removal = data.remove(pairs=request.pairs)
    result = forget(model, request, "influence", shared=arch == "neumf")
    assert 0.0 <= result.receipt["step"] <= 1.0
    warm = U.transplant(model, removal)
    sample = O.fixed_sample(warm)
    anchor = S.anchor_of(model, removal, warm, model.objective_reg_)
    f0 = O.objective(warm.module_, sample, model.objective_reg_, anchor)
    f1 = O.objective(result.model.module_, sample, model.objective_reg_, anchor)
    assert f1 <= f0 + 1e-6 * abs(f0)


def test_alteraser_first_round_touches_only_affected_blocks(data, gmf):
    model = gmf
    request = DeletionRequest(pairs=_pairs(data, [3, 40]))
    result = forget(model, request, "alteraser", max_rounds=1, update="alternating")
    assert result.receipt["rounds"] == 1
    assert result.receipt["blocks_solved"] <= 4  # two users, two items at most


def test_jacobi_step_moves_exactly_the_blocks_whose_samples_changed(data, gmf):

    model = gmf
    request = DeletionRequest(pairs=_pairs(data, [3, 40]))
    removal = data.remove(pairs=request.pairs)
    result = forget(model, request, "alteraser")
    r = result.receipt
    assert r["update"] == "jacobi" and r["step"] == 1.0 and not r["prepared"]
    new = U.transplant(model, removal)
    change = S.sample_change(model, removal, new)
    assert r["blocks_solved_users"] == len(np.unique(change.users)) == 2
    assert r["blocks_solved_items"] == len(np.unique(change.items)) > 2  # negatives changed
    before = model.module_.all_item_vectors().detach()
    after = result.model.module_.all_item_vectors().detach()
    moved = torch.nonzero((before != after).any(1)).squeeze(1).numpy()
    assert set(moved) <= set(removal.item_map[np.unique(change.items)])
    # the carried curvature is the remaining sample's at the original parameters
    fresh = U.prepare(U.transplant(model, removal))
    torch.testing.assert_close(result.model.curvature_.users, fresh.users, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(result.model.curvature_.items, fresh.items, rtol=1e-4, atol=1e-5)
    # it makes the next request cheap, and it is not exact any more
    assert result.model.curvature_.exact is False
    again = forget(result.model, DeletionRequest(pairs=_pairs(removal.data, [7])), "alteraser")
    assert again.receipt["prepared"] is True


def test_alteraser_certifies_gmf(data, gmf):
    model = gmf
    request = DeletionRequest(pairs=_pairs(data, [0, 10, 50, 100]))
    exact = {**EXACT, "tol": 2e-3}  # this float32 network stalls at max_relative 1.04e-3
    result = forget(model, request, "alteraser", **exact)
    assert result.receipt["certified"] is True
    assert result.receipt["certificate"]["max_relative"] <= exact["tol"]
    # a second deletion from the certified model needs little work
    again = forget(result.model, DeletionRequest(pairs=_pairs(data, [20])), "alteraser", **exact)
    assert again.receipt["certified"] is True
    assert again.receipt["blocks_solved"] < result.receipt["blocks_solved"]


# ---------------------------------------------------------------------------- sampling
def test_deleted_pairs_are_gone_and_may_be_negatives(data, gmf):
    model = gmf
    user = 4
    mine = np.flatnonzero(data.row_of_entry == user)
    gone = mine[: max(1, len(mine) - 1)]  # all but one of the user's positives
    result = forget(model, DeletionRequest(pairs=_pairs(data, gone)), "finetune", epochs=1)
    seen = result.model.seen_
    u = seen.users.index([data.users.ids[user]])[0]
    deleted = set(seen.items.index([data.items.ids[data.indices[e]] for e in gone]).tolist())
    remaining = set(seen.indices[seen.indptr[u] : seen.indptr[u + 1]].tolist())
    assert not deleted & remaining
    rows = seen.row_of_entry
    for negs in (result.model.sample_negatives(n_neg=200), N.stable_negatives(seen, 40, 3)):
        for e in range(seen.nnz):  # never a remaining positive of the entry's user
            own = seen.indices[seen.indptr[rows[e]] : seen.indptr[rows[e] + 1]]
            assert not np.isin(negs[e], own).any()
        drawn = set(negs[rows == u].ravel().tolist())
        assert deleted <= drawn  # the deleted positives are ordinary negatives now
    sample = O.fixed_sample(result.model)
    assert len(sample) == seen.nnz * (1 + model.negatives)


def test_stable_negatives_change_only_for_touched_users(data):
    before = N.stable_negatives(data, 4, 7)
    gone_user, gone_pair = data.users.ids[2], _pairs(data, [30])[0]
    after_removal = data.remove(pairs=[gone_pair], users=[gone_user])
    after = N.stable_negatives(after_removal.data, 4, 7)
    touched = {gone_user, gone_pair[0]}
    for new_u, uid in enumerate(after_removal.data.users.ids):
        if uid in touched:
            continue
        old_u = data.users.index([uid])[0]
        old_ids = data.items.ids[before[data.row_of_entry == old_u]]
        new_ids = after_removal.data.items.ids[after[after_removal.data.row_of_entry == new_u]]
        np.testing.assert_array_equal(old_ids, new_ids)


def test_certify_reports_the_fixed_sample_objective(data, gmf):
    model = gmf
    out = model.certify(tol=0.5)
    sample = O.fixed_sample(model)
    assert out["objective"] == pytest.approx(
        O.objective(model.module_, sample, model.objective_reg_) / len(sample)
    )
    assert out["certificate"]["reg"] == model.objective_reg_ > 0
    assert set(out["certificate"]) >= {"max_relative", "relative", "tol"}
    assert out["certified"] == (out["certificate"]["max_relative"] <= 0.5)
    assert "certified" not in model.certify()


def test_prepare_needs_a_fitted_model():
    from recforget.models.base import NotFittedError

    with pytest.raises(NotFittedError):
        U.prepare(NCF("gmf"))


def test_retrain_with_another_seed_is_another_model(data):
    """The oracle uses the model's seed; ``random_state`` gives a second, equally valid one."""
    model = NCF("gmf", random_state=0, **{**SMALL, "epochs": 3}).fit(data)
    request = DeletionRequest(users=["u3"])
    same = forget(model, request, "retrain")
    again = forget(model, request, "retrain")
    other = forget(model, request, "retrain", random_state=7)
    assert same.receipt["random_state"] == 0 and other.receipt["random_state"] == 7
    assert same.model.model_hash() == again.model.model_hash()
    assert other.model.model_hash() != same.model.model_hash()
    assert other.model.seen_.fingerprint() == same.model.seen_.fingerprint()
    for bad in (-1, 1.5, "7", True):
        with pytest.raises(ValueError, match="random_state"):
            forget(model, request, "retrain", random_state=bad)


# ---------------------------------------------------------------------------- contracts
def _contract_model(data, arch="gmf"):
    return NCF(arch, random_state=0, **SMALL).fit(data)


class TestRetrainContract(UnlearnerContract):
    method = "retrain"

    def make_model(self, data):
        return _contract_model(data)


class TestFinetuneContract(UnlearnerContract):
    method = "finetune"
    options: ClassVar[dict] = {"epochs": 2}

    def make_model(self, data):
        return _contract_model(data, "neumf")


class TestAltEraserContract(UnlearnerContract):
    method = "alteraser"
    options: ClassVar[dict] = EXACT
    exact = True

    def make_model(self, data):
        return _contract_model(data)


class TestAltEraserDefaultContract(UnlearnerContract):
    """AltEraser as users call it: one prepared Jacobi Newton step on the changed blocks."""

    method = "alteraser"

    def make_model(self, data):
        return _contract_model(data, "neumf")


class TestAltEraserMLPContract(UnlearnerContract):
    method = "alteraser"
    options: ClassVar[dict] = {"max_rounds": 3}

    def make_model(self, data):
        return _contract_model(data, "mlp")


class TestInfluenceContract(UnlearnerContract):
    method = "influence"
    options: ClassVar[dict] = {"shared": True, "damping": 1.0}

    def make_model(self, data):
        return _contract_model(data, "neumf")


# ---------------------------------------------------------------------------- persistence
def test_prepared_curvature_survives_save_and_load(data, tmp_path):
    model = NCF("neumf", random_state=0, **{**SMALL, "epochs": 3}).fit(data)
    with pytest.raises(ValueError, match="prepare"):
        model.save(tmp_path / "m", curvature=True)
    assert not (tmp_path / "m").exists()  # nothing written
    curv = U.prepare(model)
    model.save(tmp_path / "m", curvature=True)
    back = NCF.load(tmp_path / "m")
    got = C.prepared(back, curv.reg)
    assert got is not None and got.exact == curv.exact and got.loss == curv.loss
    for name in ("users", "items", "user_anchor", "item_anchor"):
        assert torch.equal(getattr(got, name), getattr(curv, name))
    request = DeletionRequest(pairs=_pairs(data, [0, 5]))
    a = forget(model, request, "alteraser")
    b = forget(back, request, "alteraser")
    assert b.receipt["prepared"] and b.model.model_hash() == a.model.model_hash()
    model.save(tmp_path / "k")  # by default the model keeps a curvature of its own weights
    assert C.prepared(NCF.load(tmp_path / "k"), curv.reg) is not None
    unprepared = NCF("neumf", random_state=0, **{**SMALL, "epochs": 3}).fit(data)
    unprepared.save(tmp_path / "k")  # ... and drops a stale file it cannot stand behind
    assert not (tmp_path / "k" / "curvature.safetensors").exists()
    model.save(tmp_path / "m", curvature=False)  # without curvature: the old file goes
    assert not (tmp_path / "m" / "curvature.safetensors").exists()
    assert C.prepared(NCF.load(tmp_path / "m"), curv.reg) is None


def test_stale_or_broken_curvature_file_is_refused(data, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from recforget import DataError

    model = NCF("gmf", random_state=0, **{**SMALL, "epochs": 2}).fit(data)
    U.prepare(model)
    model.save(tmp_path / "m", curvature=True)
    file = tmp_path / "m" / "curvature.safetensors"
    tensors = load_file(file)
    with safe_open(str(file), "pt") as fh:  # keep the metadata, drop a tensor
        meta = fh.metadata()
    save_file({k: v for k, v in tensors.items() if k != "items"}, file, metadata=meta)
    # the directory's manifest refuses any changed file; the curvature's own checks say why
    with pytest.raises(DataError, match=r"curvature\.safetensors does not match the sha256"):
        NCF.load(tmp_path / "m")
    with pytest.raises(DataError, match="lacks items"):
        C.load_curvature(model, tmp_path / "m")
    save_file(tensors, file, metadata={**meta, "params_hash": "0" * 64})
    with pytest.raises(DataError, match="other weights"):
        C.load_curvature(model, tmp_path / "m")
    file.write_bytes(b"not safetensors")
    with pytest.raises(DataError, match="not a readable safetensors") as err:
        C.load_curvature(model, tmp_path / "m")
    assert err.value.file == str(file)
