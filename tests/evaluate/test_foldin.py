"""The fold-in probe: a clean split, folded-in blocks at their optimum, a trace that shows."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from recforget import Interactions  # noqa: E402
from recforget.data.split import random_holdout  # noqa: E402
from recforget.evaluate.foldin import fold_in_split, fold_in_trace  # noqa: E402
from recforget.models.ncf import NCF  # noqa: E402

pytestmark = pytest.mark.torch

SMALL = dict(factors=8, layers=(16, 8), epochs=30, batch_size=64, lr=1e-2, num_threads=1)


@pytest.fixture(scope="module")
def split():
    rng = np.random.default_rng(3)
    R = (rng.random((40, 30)) < 0.35).astype(float)
    data = Interactions.from_csr(
        R, users=[f"u{k}" for k in range(40)], items=[f"i{k}" for k in range(30)]
    )
    return random_holdout(data, 0.2, random_state=0)


def _set(pairs):
    return set(map(tuple, pairs))


def test_split_is_clean_balanced_and_seeded(split):
    train, test = split
    users = ["u1", "u5", "u9", "u30"]
    probe = fold_in_split(train, test, users, 7)
    again = fold_in_split(train, test, users, 7)
    assert probe.members == again.members and probe.non_members == again.non_members
    assert np.array_equal(probe.fold_items, again.fold_items)
    train_pairs = _set(
        zip(train.users.ids[train.row_of_entry], train.items.ids[train.indices], strict=True)
    )
    test_pairs = _set(
        zip(test.users.ids[test.row_of_entry], test.items.ids[test.indices], strict=True)
    )
    fold = list(zip(probe.users[probe.fold_users], probe.fold_items, strict=True))
    pos = _set(p for p, y in zip(fold, probe.fold_labels, strict=True) if y == 1)
    neg = _set(p for p, y in zip(fold, probe.fold_labels, strict=True) if y == 0)
    members, non = _set(probe.members), _set(probe.non_members)
    assert set(probe.users) == set(users)
    assert pos <= train_pairs and members <= train_pairs and not pos & members
    assert not non & train_pairs and non <= test_pairs  # held-out positives, like the members
    assert len(probe.members) == len(probe.non_members) > 0
    assert not neg & (train_pairs | test_pairs | non)
    assert len(neg) > 0 and {u for u, _ in members | non} <= set(users)


def test_split_rejects_bad_input(split):
    train, test = split
    with pytest.raises(ValueError, match="fold_in_fraction"):
        fold_in_split(train, test, ["u1"], 0, fold_in_fraction=1.0)
    with pytest.raises(ValueError, match="negatives"):
        fold_in_split(train, test, ["u1"], 0, negatives=-1)


def test_folded_in_block_is_the_block_optimum(split):
    """GMF: each folded-in user is a ridge logistic regression; L-BFGS finds the same point."""
    train, test = split
    model = NCF("gmf", random_state=0, **SMALL).fit(train)
    before = model.model_hash()
    probe = fold_in_split(train, test, ["u2", "u11"], 1)
    reg = 0.5
    out = fold_in_trace(model, probe, reg=reg)
    assert model.model_hash() == before  # the model is not modified
    assert out["gradient_norm"] < 1e-4
    module = model.module_
    V = module.all_item_vectors().detach().double()
    h = module.head.out.weight.detach().double()[0]
    b = module.head.out.bias.detach().double()[0]
    k = 0  # user "u2": its block, solved independently, scores its members the same
    mask = probe.fold_users == k
    items = torch.as_tensor(model.items_.index(probe.fold_items[mask]))
    y = torch.as_tensor(probe.fold_labels[mask], dtype=torch.float64)
    p = torch.zeros(V.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([p], max_iter=500, tolerance_grad=1e-12, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        z = (p * V[items]) @ h + b
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction="sum")
        loss = loss + 0.5 * reg * (p**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    mine = [it for u, it in probe.members if u == probe.users[k]]
    z = (p.detach() * V[torch.as_tensor(model.items_.index(mine))]) @ h + b
    ref = torch.sigmoid(z).numpy()
    only = {**vars(probe)}
    only["members"] = [(probe.users[k], it) for it in mine]
    from recforget.evaluate.foldin import FoldInProbe

    single = fold_in_trace(model, FoldInProbe(**only), reg=reg)
    assert single["deleted_score"] == pytest.approx(float(ref.mean()), abs=1e-5)


def test_trace_shows_in_the_original_not_in_a_retrain(split):
    """Members score higher through the model trained on them than through one trained without."""
    train, test = split
    users = [f"u{k}" for k in range(0, 40, 4)]
    probe = fold_in_split(train, test, users, 2)
    original = NCF("gmf", random_state=0, **SMALL).fit(train)
    retrained = NCF("gmf", random_state=0, **SMALL).fit(train.drop_users(users))
    reg = original.objective_reg_
    a, b = fold_in_trace(original, probe, reg=reg), fold_in_trace(retrained, probe, reg=reg)
    assert a["deleted_score"] > b["deleted_score"]
    assert a["auc"] > b["auc"]


def test_only_neural_models():
    from recforget import ALS

    with pytest.raises(TypeError, match="NCF"):
        fold_in_trace(ALS(), None)
