"""Streaming AltEraser (NCFForgetter): every request against a from-scratch computation.

After every request of a random sequence (users, pairs, items, batches) the stream's state is
compared with quantities rebuilt independently from the remaining data (``Interactions``, the
fixed sample of :func:`stable_negatives`, :func:`certify_model`, :func:`data_gradients`) and
with the one-shot method (``recforget.forget(model, request, "alteraser", ridge="global")``
applied as a chain: the stream takes the one-step update with the global ridge).
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from recforget import DeletionRequest, Interactions, UnknownIdError, forget  # noqa: E402
from recforget.models._ncf_negatives import stable_negatives  # noqa: E402
from recforget.models._ncf_objective import (  # noqa: E402
    certify_model,
    data_gradients,
    fixed_sample,
    objective,
)
from recforget.models.ncf import NCF  # noqa: E402
from recforget.unlearn.ncf import prepare  # noqa: E402
from recforget.unlearn.ncf.stream import NCFForgetter  # noqa: E402
from recforget.unlearn.stream import Forgetter  # noqa: E402

pytestmark = pytest.mark.torch

SMALL = dict(factors=6, layers=(12, 6), epochs=8, batch_size=64, lr=1e-2, num_threads=1)


def _data(seed: int = 0) -> Interactions:
    """Users of very different activity: sparse ones draw without cycling, dense ones cycle."""
    rng = np.random.default_rng(seed)
    n_users, n_items = 36, 30
    density = np.linspace(0.04, 0.55, n_users)[:, None]
    R = (rng.random((n_users, n_items)) < density).astype(float)
    R[np.arange(n_users), rng.integers(0, n_items, n_users)] = 1.0
    R[:, 0] = 0.0
    R[:3, 0] = 1.0  # an item few users have
    return Interactions.from_csr(
        R, users=[f"u{k}" for k in range(n_users)], items=[f"i{k}" for k in range(n_items)]
    )


@pytest.fixture(scope="module")
def data() -> Interactions:
    return _data()


_MODELS: dict[str, NCF] = {}


def _fitted(arch: str) -> NCF:
    """A small prepared model per architecture, fitted once per test session."""
    if arch not in _MODELS:
        model = NCF(arch, random_state=0, **SMALL).fit(_data())
        prepare(model)
        _MODELS[arch] = model
    return _MODELS[arch]


@pytest.fixture
def fitted() -> NCF:
    return _fitted("gmf")


def _random_request(view, rng, kind: int) -> DeletionRequest:
    if kind == 0:
        alive = np.flatnonzero(view.user_alive)
        return DeletionRequest(users=[view.users.ids[alive[rng.integers(len(alive))]]])
    if kind == 1:
        live = np.flatnonzero(view.live)
        picks = rng.choice(live, size=min(2, len(live)), replace=False)
        rows = np.searchsorted(view.indptr, picks, side="right") - 1
        return DeletionRequest(
            pairs=[
                (view.users.ids[u], view.items.ids[view.indices[e]])
                for u, e in zip(rows, picks, strict=True)
            ]
        )
    alive = np.flatnonzero(view.item_alive & (view.item_counts > 0))
    return DeletionRequest(items=[view.items.ids[alive[rng.integers(len(alive))]]])


def _negative_multiset(f: NCFForgetter) -> Counter:
    neg = f.negatives
    pos = np.flatnonzero(neg.live)
    rows = np.searchsorted(neg.indptr, pos, side="right") - 1
    return Counter(
        {
            (neg.users.ids[u], neg.items.ids[i]): int(c)
            for u, i, c in zip(rows, neg.indices[pos], neg.values[pos], strict=True)
        }
    )


def _fresh_multiset(data: Interactions, n_neg: int, seed: int) -> Counter:
    neg = stable_negatives(data, n_neg, seed)
    rows = np.repeat(data.row_of_entry, n_neg)
    users, items = data.users.ids[rows].tolist(), data.items.ids[neg.ravel()].tolist()
    return Counter(zip(users, items, strict=True))


def _by_id(model: NCF, users, items) -> tuple[torch.Tensor, torch.Tensor]:
    m = model.module_
    U = m.all_user_vectors().detach()[torch.as_tensor(model.users_.index(users))]
    V = m.all_item_vectors().detach()[torch.as_tensor(model.items_.index(items))]
    return U, V


def _anchored_decrease(prev: NCF, new: NCF, reg: float) -> float:
    """The anchored objective's decrease from ``prev``'s parameters to ``new``'s, on the fixed
    sample of ``new``'s data, from scratch (anchor rows: ``prev``'s carried curvature)."""
    sample = fixed_sample(new)
    users, items = new.users_.ids, new.items_.ids
    U0, V0 = _by_id(prev, users, items)
    before = new.module_.take()
    before.set_user_vectors(torch.arange(len(users)), U0)
    before.set_item_vectors(torch.arange(len(items)), V0)
    cu = prev.curvature_.user_anchor[torch.as_tensor(prev.users_.index(users))]
    ci = prev.curvature_.item_anchor[torch.as_tensor(prev.items_.index(items))]
    U1, V1 = new.module_.all_user_vectors().detach(), new.module_.all_item_vectors().detach()
    c_dot = float(
        (cu * (U1.double() - U0.double())).sum() + (ci * (V1.double() - V0.double())).sum()
    )
    return objective(before, sample, reg) - objective(new.module_, sample, reg) + c_dot


@pytest.mark.parametrize(("arch", "compact_at"), [("gmf", 0.5), ("gmf", 0.04), ("neumf", 0.5)])
def test_every_request_agrees_with_scratch_and_the_one_shot_chain(arch, compact_at):
    fitted = _fitted(arch)
    rng = np.random.default_rng(7)
    before_hash = fitted.model_hash()
    f = Forgetter(fitted, verify_every=4, compact_at=compact_at)
    assert isinstance(f, NCFForgetter)
    chain, prev = fitted, fitted
    kinds = [0, 1, 2, 0, 1, 0, 2, 1]
    for n, kind in enumerate(kinds):
        if n == 5:  # a batch of two requests: one step for both
            reqs = [_random_request(f.view, rng, 0), _random_request(f.view, rng, 1)]
            receipts = f.forget_batch(reqs)
            union = DeletionRequest(users=reqs[0].users, pairs=reqs[1].pairs)
            chain = forget(chain, union, "alteraser", ridge="global").model  # one step for both
            receipt = receipts[-1]
            assert [r["batch"] for r in receipts] == [{"size": 2, "index": k} for k in (0, 1)]
            assert receipts[0]["sequence"] + 1 == receipt["sequence"]
        else:
            req = _random_request(f.view, rng, kind)
            receipt = f.forget(req)
            chain = forget(chain, req, "alteraser", ridge="global").model
        model = f.model
        # the data and the fixed negatives are those of the remaining data
        assert model.seen_.fingerprint() == chain.seen_.fingerprint()
        assert _negative_multiset(f) == _fresh_multiset(model.seen_, model.negatives, 0)
        # the certificate and objective, against NCF.certify's from-scratch computation
        ref = certify_model(model, f.tol)
        for key in ("max_relative", "relative", "max_residual"):
            assert receipt["certificate"][key] == pytest.approx(ref["certificate"][key], rel=1e-4)
        assert receipt["objective"] == pytest.approx(ref["objective"], rel=1e-6)
        assert receipt["certified"] == ref["certified"]
        # every maintained row gradient, against a full data gradient from scratch
        gU, gV, gS = data_gradients(model.module_, fixed_sample(model))
        au = np.flatnonzero(f.view.user_alive)
        ai = np.flatnonzero(f.view.item_alive)
        scale = float(gU.abs().max())
        assert torch.allclose(f._g["users"][au].float(), gU, atol=1e-4 * scale)
        assert torch.allclose(f._g["items"][ai].float(), gV, atol=1e-4 * scale)
        for k, g in gS.items():
            assert torch.allclose(f._gs[k].float(), g, atol=1e-4 * scale)
        # the verified decrease is the anchored objective's, recomputed from scratch
        decrease = -receipt["loss_history"][1] * f._n
        assert decrease >= 0
        if receipt["step"] > 0:
            # (float32 sums over the whole sample: their rounding is ~1e-7 of the objective)
            tol = 1e-6 * objective(model.module_, fixed_sample(model), f.reg) + 1e-6
            assert decrease == pytest.approx(_anchored_decrease(prev, model, f.reg), abs=tol)
            # and the stream is the one-shot method applied request after request
            U, V = _by_id(chain, model.users_.ids, model.items_.ids)
            assert torch.allclose(U, model.module_.all_user_vectors(), atol=1e-5)
            assert torch.allclose(V, model.module_.all_item_vectors(), atol=1e-5)
        prev = model
        if "verification" in receipt:
            assert receipt["verification"]["drift"] < 1e-5
    assert f.sequence == len(kinds) + 1
    assert fitted.model_hash() == before_hash  # the given model is untouched
    # digests follow content: a fresh forgetter on the streamed model has the same ones
    fresh = NCFForgetter(f.model)
    assert fresh.data_fingerprint == f.data_fingerprint
    assert fresh.model_digest == f.model_digest


def test_receipt_has_the_one_shot_fields_and_no_raw_ids(fitted, data):
    f = Forgetter(fitted)
    req = DeletionRequest(
        users=["u5"], pairs=[("u9", data.items.ids[data.indices[data.indptr[9]]])]
    )
    receipt = f.forget(req)
    one_shot = forget(fitted, req, "alteraser", ridge="global").receipt
    assert set(one_shot) - {"method"} <= set(receipt)
    assert {"sequence", "wall_seconds", "seconds", "batch", "digests"} <= set(receipt)
    assert receipt["wall_seconds"] >= receipt["seconds"] > 0
    assert receipt["removed"] == one_shot["removed"]
    assert receipt["samples_changed"] == one_shot["samples_changed"]
    assert receipt["blocks_solved"] == one_shot["blocks_solved"]
    text = json.dumps(receipt)
    assert '"u5"' not in text and '"u9"' not in text


def test_unknown_ids_change_nothing_and_forgotten_ones_are_noops(fitted):
    f = Forgetter(fitted)
    digest, model_digest = f.data_fingerprint, f.model_digest
    with pytest.raises(UnknownIdError, match="nobody"):
        f.forget(DeletionRequest(users=["u1", "nobody"]))
    assert (f.data_fingerprint, f.model_digest, f.sequence) == (digest, model_digest, 0)
    first = f.forget(DeletionRequest(users=["u1"]))
    again = f.forget(DeletionRequest(users=["u1"], pairs=[("u1", "i3")]))
    assert not first["noop"] and again["noop"]
    assert again["removed"]["already_forgotten"] == 1
    assert again["model_hash"] == first["model_hash"]
    ignored = Forgetter(fitted, missing="ignore").forget(DeletionRequest(users=["nobody"]))
    assert ignored["noop"] and ignored["removed"]["unknown"]["users"] == 1


def test_the_streamed_model_continues_with_the_one_shot_method(fitted):
    f = Forgetter(fitted)
    f.submit(DeletionRequest(users=["u2"]))
    f.submit(DeletionRequest(users=["u3"]))
    assert f.pending == 2 and len(f.flush()) == 2 and f.pending == 0
    receipt = forget(f.model, DeletionRequest(users=["u4"]), "alteraser", ridge="global").receipt
    assert receipt["prepared"]  # the carried curvature belongs to the streamed weights


def test_bad_arguments_are_refused(fitted):
    with pytest.raises(ValueError, match="verify_every"):
        NCFForgetter(fitted, verify_every=-1)
    with pytest.raises(ValueError, match="compact_at"):
        NCFForgetter(fitted, compact_at=1.5)
    with pytest.raises(TypeError, match="NCF"):
        NCFForgetter(object())
    with pytest.raises(TypeError, match="DeletionRequest"):
        NCFForgetter(fitted).forget({"users": ["u1"]})
