"""NCF estimators (GMF, MLP, NeuMF): training, sampling, determinism, persistence, contract."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from recforget import Interactions  # noqa: E402
from recforget.models._ncf_module import build_module  # noqa: E402
from recforget.models._trainer import NCFTrainer, sample_negatives, training_pairs  # noqa: E402
from recforget.models.base import NotFittedError, clone  # noqa: E402
from recforget.models.ncf import GMF, MLP, NCF, NeuMF  # noqa: E402

pytestmark = pytest.mark.torch

ARCHS = ["gmf", "mlp", "neumf"]
# one torch thread: tiny networks crawl when intra-op threads contend for a busy CPU
SMALL = dict(factors=8, layers=(32, 16, 8), epochs=20, batch_size=64, lr=1e-2, num_threads=1)


def _planted(n_users: int = 30, n_items: int = 20, seed: int = 0) -> Interactions:
    """Two user groups, each liking one half of the items (80%), plus 5% noise elsewhere."""
    r = np.random.default_rng(seed)
    group = np.arange(n_users) % 2
    likes = (np.arange(n_items)[None, :] < n_items // 2) == (group[:, None] == 0)
    R = np.where(likes, r.random((n_users, n_items)) < 0.8, r.random((n_users, n_items)) < 0.05)
    u, i = np.nonzero(R)
    return Interactions.from_arrays(
        [f"u{k}" for k in u], [f"i{k:02d}" for k in i], r.integers(1, 6, len(u))
    )


@pytest.fixture(scope="module")
def data() -> Interactions:
    return _planted()


@pytest.fixture(scope="module", params=ARCHS)
def fitted(request, data) -> NCF:
    return NCF(request.param, random_state=0, **SMALL).fit(data)


def _state(model: NCF) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy().copy() for k, v in model.module_.state_dict().items()}


# ---------------------------------------------------------------------------- training
def test_fit_lowers_the_loss_and_learns_the_blocks(fitted, data):
    h = fitted.loss_history_
    assert len(h) == fitted.n_iter_ == SMALL["epochs"]
    assert h[-1] < 0.8 * h[0]
    negs = fitted.sample_negatives()
    assert fitted.loss(data, negs) < 0.6  # the untrained network sits at log 2 = 0.69
    # planted structure: unseen in-group items outrank out-of-group items
    p = fitted.predict_proba_rows(np.arange(data.n_users))
    item_half = (np.arange(data.n_items) < data.n_items // 2)[None, :]
    group0 = np.array([int(str(u)[1:]) % 2 == 0 for u in data.users.ids])[:, None]
    in_group = item_half == group0
    assert p[in_group].mean() > p[~in_group].mean() + 0.2


def test_trainer_restricted_positives_and_ascent(data):
    model = NCF("gmf", random_state=1, **SMALL).fit(data)
    keep = np.zeros(data.nnz, dtype=bool)
    keep[::3] = True
    subset, forget = data.select(keep), data.select(~keep)
    fixed = model.sample_negatives(forget, exclude=data)
    before = model.loss(forget, fixed)
    trainer = model.trainer(forget, exclude=data, ascent=True, random_state=0)
    stats = [trainer.train_epoch() for _ in range(3)]
    assert set(stats[0]) >= {"loss", "seconds"} and stats[0]["samples"] == forget.nnz * 5
    assert trainer.finalize() is model.module_
    with pytest.raises(RuntimeError, match="finalized"):
        trainer.train_epoch()
    assert model.loss(forget, fixed) > before
    # fine-tuning on the subset alone lowers its loss
    negs = model.sample_negatives(subset)
    start = model.loss(subset, negs)
    model.train_epochs(subset, 5, random_state=0)
    assert model.loss(subset, negs) < start
    assert model.seen_ is data


def test_cosine_schedule_anneals_the_step_size_to_zero(data):
    module = build_module("gmf", data.n_users, data.n_items, 4, [8], device="cpu")
    module.reset_parameters(torch.Generator().manual_seed(0))
    lr, epochs, batch = 0.01, 3, 64
    trainer = NCFTrainer(
        module,
        data,
        batch_size=batch,
        lr=lr,
        schedule="cosine",
        total_epochs=epochs,
        random_state=0,
    )
    n_batches = -(-data.nnz * 5 // batch)
    seen = []
    step = trainer.optimizer.step

    def record(*args, **kwargs):
        seen.append(trainer.optimizer.param_groups[0]["lr"])
        return step(*args, **kwargs)

    trainer.optimizer.step = record
    for _ in range(epochs):
        trainer.train_epoch()
    total = n_batches * epochs
    expect = [0.5 * lr * (1 + np.cos(np.pi * k / total)) for k in range(total)]
    assert len(seen) == total
    np.testing.assert_allclose(seen, expect, rtol=1e-12)
    assert seen[0] == lr and seen[-1] < 1e-3 * lr
    with pytest.raises(ValueError, match="total_epochs"):
        NCFTrainer(module, data, schedule="cosine")
    with pytest.raises(ValueError, match="schedule"):
        NCFTrainer(module, data, schedule="step")


def test_cosine_fit_settles_and_is_persisted(data, tmp_path):
    params = {**SMALL, "epochs": 6}
    const = NCF("gmf", random_state=0, lr_schedule="constant", **params).fit(data)
    cos = NCF("gmf", random_state=0, **params).fit(data)
    assert const.model_hash() != cos.model_hash()
    cos.save(tmp_path / "m")
    assert NCF.load(tmp_path / "m").lr_schedule == "cosine"
    assert NCF("gmf", random_state=0, lr_schedule="cosine", epochs=0).fit(data).n_iter_ == 0


# ---------------------------------------------------------------------------- negatives
def test_negatives_never_hit_positives(data):
    neg = sample_negatives(data, 7, np.random.default_rng(0))
    assert neg.shape == (data.nnz, 7) and neg.dtype == np.int64
    dense = data.to_csr().toarray() != 0
    dense[0, 0] = True  # explicit zero values still count as positives
    rows = np.repeat(data.row_of_entry, 7)
    assert not dense[rows, neg.ravel()].any()
    assert neg.min() >= 0 and neg.max() < data.n_items
    # deterministic per generator, and aligned with the entries in training_pairs
    assert np.array_equal(neg, sample_negatives(data, 7, np.random.default_rng(0)))
    u, i, y = training_pairs(data, neg)
    assert len(u) == data.nnz * 8 and y.sum() == data.nnz
    assert not dense[u[y == 0], i[y == 0]].any() and dense[u[y == 1], i[y == 1]].all()


def test_negatives_avoid_exclusion_data_and_near_full_rows():
    R = np.zeros((3, 6))
    R[0, :5] = 1  # only item 5 is a negative: found by the exact fallback if needed
    R[1, 1] = 1
    R[2, [0, 2]] = 1
    data = Interactions.from_csr(R)
    neg = sample_negatives(data, 50, 0)
    assert np.all(neg[data.row_of_entry == 0] == 5)
    sub = data.select(data.row_of_entry != 0)
    neg = sample_negatives(sub, 20, 0, exclude=data)
    assert not np.isin(neg[sub.row_of_entry == 2], [0, 2]).any()
    R[0, 5] = 1
    with pytest.raises(ValueError, match="every item"):
        sample_negatives(Interactions.from_csr(R), 1, 0)


# ---------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("arch", ["gmf", "neumf"])
def test_same_seed_gives_identical_weights(data, arch):
    a = NCF(arch, random_state=3, **{**SMALL, "epochs": 3}).fit(data)
    b = NCF(arch, random_state=3, **{**SMALL, "epochs": 3}).fit(data)
    c = NCF(arch, random_state=4, **{**SMALL, "epochs": 3}).fit(data)
    sa, sb = _state(a), _state(b)
    assert all(np.array_equal(sa[k], sb[k]) for k in sa)
    assert a.model_hash() == b.model_hash() != c.model_hash()
    assert a.loss_history_ == b.loss_history_


def test_fit_does_not_touch_global_torch_rng(data):
    torch.manual_seed(0)
    expect = torch.rand(3)
    torch.manual_seed(0)
    NCF("neumf", random_state=0, **{**SMALL, "epochs": 1}).fit(data)
    assert torch.equal(torch.rand(3), expect)


# ---------------------------------------------------------------------------- persistence
def test_save_load_round_trip_is_bit_exact(fitted, data, tmp_path):
    fitted.save(tmp_path / "m")
    files = {p.name for p in (tmp_path / "m").iterdir()}
    assert files == {"weights.safetensors", "arrays.npz", "config.json", "manifest.json"}
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["seed"] == 0 and manifest["data_fingerprint"] == data.fingerprint()
    loaded = NCF.load(tmp_path / "m")
    assert loaded.get_params() == fitted.get_params()
    sa, sb = _state(fitted), _state(loaded)
    assert sa.keys() == sb.keys() and all(np.array_equal(sa[k], sb[k]) for k in sa)
    rows = np.arange(data.n_users)
    assert np.array_equal(loaded._score_rows(rows), fitted._score_rows(rows))
    assert loaded.seen_.fingerprint() == data.fingerprint()
    assert loaded.loss_history_ == fitted.loss_history_
    assert loaded.epoch_seconds_ == fitted.epoch_seconds_ and len(loaded.epoch_seconds_) == 20
    from recforget.models.registry import load_model

    assert load_model(tmp_path / "m").model_hash() == fitted.model_hash()


def test_objective_reg_is_calibrated_and_persisted(data, tmp_path):
    """fit stores the ridge under which the network is closest to stationary; save/load keep it."""
    from recforget.models import _ncf_objective as O

    model = NCF("gmf", random_state=0, **SMALL).fit(data)
    reg = model.objective_reg_
    assert reg > 0 and reg == O.calibrated_reg(model)
    # it is the least-squares minimiser of the embedding rows' stationarity residual
    module, sample = model.module_, O.fixed_sample(model)
    gU, gV, _ = O.data_gradients(module, sample)
    g = torch.cat([gU, gV]).double()
    th = torch.cat([module.all_user_vectors(), module.all_item_vectors()]).detach().double()
    residual = [float((g + r * th).norm()) for r in (0.9 * reg, reg, 1.1 * reg)]
    assert residual[1] < min(residual[0], residual[2])
    model.objective_reg_ = 0.37  # e.g. set by an unlearner's reg= option
    model.save(tmp_path / "m")
    loaded = NCF.load(tmp_path / "m")
    assert loaded.objective_reg_ == 0.37
    assert loaded.certify() == model.certify()


# ---------------------------------------------------------------------------- scoring
def test_recommend_excludes_seen_and_scores_agree(fitted, data):
    users = list(data.users.ids)
    items, scores = fitted.recommend(users, k=5)
    seen = data.to_csr()
    for r in range(len(users)):
        row = seen[[r]].indices
        assert not np.isin(data.items.index(items[r]), row).any()
        assert np.all(np.diff(scores[r]) <= 0)
    # pair scores equal the rows (logits), probabilities are their sigmoid
    u = users[:4]
    it = list(data.items.ids[:4])
    rows = fitted._score_rows(data.users.index(u))
    np.testing.assert_allclose(fitted.score(u, it), rows[np.arange(4), np.arange(4)], rtol=1e-6)
    p = fitted.predict_proba(u, it)
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-fitted.score(u, it))), rtol=1e-12)
    pr = fitted.predict_proba_rows(data.users.index(u))
    assert pr.shape == (4, data.n_items) and (pr > 0).all() and (pr < 1).all()


def test_functional_forward_equals_module_forward(fitted):
    m = fitted.module_
    users = torch.tensor([0, 3, 7, 7, 29])
    items = torch.tensor([1, 0, 19, 4, 4])
    U, V = m.user_vectors(users), m.item_vectors(items)
    assert U.shape == (5, m.user_dim) and V.shape == (5, m.item_dim)
    shared = m.shared_parameters()
    assert not any(
        p is t.weight for p in shared.values() for t in m.user_embeddings + m.item_embeddings
    )
    n_tables = {"gmf": 1, "mlp": 1, "neumf": 2}[fitted.arch]
    assert len(m.user_embeddings) == len(m.item_embeddings) == n_tables
    expect = m(users, items)
    assert torch.equal(m.logits(U, V), expect)
    assert torch.equal(m.logits(U, V, shared), expect)
    assert torch.equal(torch.func.functional_call(m.head, shared, (U, V)), expect)
    # changing the shared weights through the functional path changes the result, not m
    bumped = {k: v + 0.1 for k, v in shared.items()}
    assert not torch.equal(m.logits(U, V, bumped), expect)
    assert torch.equal(m(users, items), expect)
    # block gradients flow to leaf tensors; writing blocks back is the identity
    U2 = m.all_user_vectors()[users].detach().requires_grad_()
    m.logits(U2, V.detach(), {k: v.detach() for k, v in shared.items()}).sum().backward()
    assert U2.grad is not None and U2.grad.abs().sum() > 0
    before = {k: v.clone() for k, v in m.state_dict().items()}
    m.set_user_vectors(users, U.detach())
    m.set_item_vectors(items, V.detach())
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())


def test_module_take_keeps_rows(fitted):
    m = fitted.module_
    keep_u, keep_i = torch.tensor([2, 5, 9]), torch.tensor([0, 19])
    sub = m.take(keep_u, keep_i)
    assert (sub.n_users, sub.n_items) == (3, 2)
    uu, ii = torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1, 1, 0])
    assert torch.equal(sub(uu, ii), m(keep_u[uu], keep_i[ii]))


def test_from_module_wraps_a_network(fitted, data):
    wrapped = NCF.from_module(fitted.module_.take(), data, num_threads=1, random_state=0)
    assert wrapped.arch == fitted.arch
    assert fitted.arch == "gmf" or wrapped.layers == fitted.layers  # GMF has no tower
    rows = np.arange(data.n_users)
    assert np.array_equal(wrapped._score_rows(rows), fitted._score_rows(rows))


# ---------------------------------------------------------------------------- contract
def test_get_params_clone_and_factories(data):
    model = NCF("mlp", factors=4, layers=(8, 4), epochs=2, random_state=5)
    params = model.get_params()
    assert params == dict(
        arch="mlp",
        factors=4,
        layers=(8, 4),
        epochs=2,
        batch_size=4096,
        lr=5e-3,
        weight_decay=0.2,
        lr_schedule="cosine",
        negatives=4,
        device="cpu",
        num_threads=None,
        random_state=5,
    )
    with pytest.raises(NotFittedError):
        model.recommend(["u0"])
    model.fit(data)
    twin = clone(model)
    assert type(twin) is NCF and twin.get_params() == params and not twin.is_fitted
    assert twin.fit(data).model_hash() == model.model_hash()
    assert GMF(4).get_params()["arch"] == "gmf" and MLP().arch == "mlp"
    assert NeuMF(factors=8).factors == 8


@pytest.mark.parametrize(
    "bad",
    [
        dict(arch="deep"),
        dict(factors=0),
        dict(layers=()),
        dict(layers=(15, 8)),
        dict(lr=0.0),
        dict(negatives=0),
        dict(epochs=-1),
        dict(weight_decay=-1.0),
        dict(lr_schedule="linear"),
    ],
)
def test_validation_happens_in_fit(data, bad):
    model = NCF(**bad)  # stores only
    with pytest.raises(ValueError):
        model.fit(data)


def test_trainer_rejects_mismatched_data(data):
    module = build_module("gmf", 3, 3, 4, [8], device="cpu")
    with pytest.raises(ValueError, match="shape"):
        NCFTrainer(module, data)


@pytest.mark.parametrize("arch", ["gmf", "mlp", "neumf"])
def test_pair_scorer_equals_the_forward_pass(arch):
    module = build_module(arch, 30, 20, factors=6, layers=(16, 8, 4))
    module.reset_parameters(torch.Generator().manual_seed(1))
    u = torch.randint(0, 30, (500,))
    i = torch.randint(0, 20, (500,))
    with torch.no_grad():
        torch.testing.assert_close(module.pair_scorer()(u, i), module(u, i))
