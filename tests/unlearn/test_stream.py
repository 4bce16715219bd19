"""Streaming forgetting: after every request the incremental certificate is true.

The reference is written independently of the package's kernels and objective: dense numpy
gradients of the retraining objective built from the remaining data (an ``Interactions``
produced by ``Interactions.remove``, request after request), with the streamed factors.
"""

from __future__ import annotations

import numpy as np
import pytest

from recforget import ALS, DeletionRequest, Interactions, forget
from recforget.data.errors import UnknownIdError
from recforget.data.forgotten import IdKeyError
from recforget.data.generators import random_ratings
from recforget.unlearn.stream import Forgetter


@pytest.fixture(autouse=True)
def _one_numba_thread():
    """Tiny problems: parallel kernels only pay thread start-up on a shared machine."""
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(before)


def _dense_residuals(params: dict, data: Interactions, X: np.ndarray, Y: np.ndarray, vectors=False):
    """Per-row (||grad||, ||b||) of the ALS objective on ``data``, users then items (dense).

    With ``vectors=True`` returns the gradient and b vectors instead of their norms."""
    R = np.zeros(data.shape)
    M = np.zeros(data.shape, dtype=bool)
    rows = np.repeat(np.arange(data.n_users), np.diff(data.indptr))
    R[rows, data.indices] = data.values
    M[rows, data.indices] = True
    X, Y = X.astype(np.float64), Y.astype(np.float64)
    lam = params["regularization"]
    if params["regularization_scaling"] == "frequency":
        reg_u = lam * np.maximum(M.sum(1), 1)
        reg_i = lam * np.maximum(M.sum(0), 1)
    else:
        reg_u = np.full(data.n_users, lam)
        reg_i = np.full(data.n_items, lam)
    if params["feedback"] == "implicit":
        if params["weighting"] == "log":
            strength = np.log1p(R / params["log_epsilon"])
        else:
            strength = R
        C = np.where(M, 1.0 + params["alpha"] * strength, 1.0)  # every cell counts
        P = (M & (R > 0)).astype(float)
        W, T = C, C * P
    else:
        W, T = M.astype(float), np.where(M, R, 0.0)  # observed cells only

    def side(A_fac, B_fac, W, T, reg):
        g, b = [], []
        for r in range(len(A_fac)):
            A = B_fac.T @ (W[r][:, None] * B_fac) + reg[r] * np.eye(B_fac.shape[1])
            rhs = B_fac.T @ T[r]
            g.append(2 * (A @ A_fac[r] - rhs))
            b.append(2 * rhs)
        return np.array(g), np.array(b)

    gu, bu = side(X, Y, W, T, reg_u)
    gi, bi = side(Y, X, W.T, T.T, reg_i)
    g, b = np.concatenate([gu, gi]), np.concatenate([bu, bi])
    if vectors:
        return g, b
    return np.linalg.norm(g, axis=1), np.linalg.norm(b, axis=1)


def _dense_max_relative(params, data, X, Y) -> float:
    g, b = _dense_residuals(params, data, X, Y)
    floor = 1e-3 * np.sqrt(np.mean(b**2))
    return float((g / np.maximum(b, floor)).max())


def _data(feedback: str, seed: int) -> Interactions:
    R = random_ratings(36, 28, 0.3, seed=seed)
    if feedback == "implicit":
        R = np.where(R > 0, np.ceil(R / 2), 0.0)  # counts 1..3
    data = Interactions.from_csr(R, users=[f"u{k}" for k in range(36)], items=np.arange(28))
    return data


def _model(feedback: str, weighting: str, scaling: str, data: Interactions) -> ALS:
    model = ALS(
        factors=3,
        feedback=feedback,
        regularization=0.5 if scaling == "none" else 0.05,
        regularization_scaling=scaling,
        alpha=2.0,
        weighting=weighting,
        iterations=400,
        grad_tol=1e-5,
        dtype="float64",
        random_state=0,
    )
    return model.fit(data)


def _random_request(rng, ref: Interactions) -> DeletionRequest:
    frame = ref.to_frame()
    kind = rng.integers(4)
    if kind == 0 and ref.n_users > 10:
        return DeletionRequest(users=[ref.users.ids[rng.integers(ref.n_users)]])
    if kind == 1 and ref.n_items > 10:
        return DeletionRequest(items=[ref.items.ids[rng.integers(ref.n_items)]])
    rows = rng.choice(len(frame), int(rng.integers(1, 4)), replace=False)
    return DeletionRequest(pairs=[(frame.user[r], frame.item[r]) for r in rows])


CASES = [
    ("implicit", "linear", "none", "cg", {}),
    ("implicit", "linear", "none", "cholesky", {"verify_mode": "full"}),
    ("implicit", "log", "frequency", "cg", {"neighbour_target": 0.3, "setup_target": 0.5}),
    ("explicit", "linear", "none", "cholesky", {"neighbour_target": 0.0}),
    ("explicit", "linear", "frequency", "cg", {"verify_mode": "full", "setup_target": 0.5}),
    ("implicit", "linear", "none", "cg", {"neighbour_target": 0.0, "verify_every": 3}),
    ("implicit", "linear", "none", "cg", {"touched_first": 0.5}),
    ("explicit", "linear", "none", "cholesky", {"touched_first": False}),
]


@pytest.mark.parametrize(("feedback", "weighting", "scaling", "solver", "options"), CASES)
def test_incremental_certificate_is_true_after_every_request(
    feedback, weighting, scaling, solver, options
):
    rng = np.random.default_rng(hash((feedback, weighting, scaling, solver)) % 2**32)
    data = _data(feedback, seed=1)
    model = _model(feedback, weighting, scaling, data)
    tol = 1e-3
    f = Forgetter(model, tol=tol, solver=solver, **{"verify_every": 7, **options})
    params = model.get_params()
    ref = data
    verified = 0
    for step in range(30):
        if step % 9 == 8:  # a batch of two queued requests
            reqs = [_random_request(rng, ref)]
            ref = ref.remove(pairs=reqs[0].pairs, users=reqs[0].users, items=reqs[0].items).data
            reqs.append(_random_request(rng, ref))
            ref = ref.remove(pairs=reqs[1].pairs, users=reqs[1].users, items=reqs[1].items).data
            for r in reqs:
                f.submit(r)
            receipts = f.flush()
            assert [r["batch"]["index"] for r in receipts] == [0, 1]
        else:
            req = _random_request(rng, ref)
            ref = ref.remove(pairs=req.pairs, users=req.users, items=req.items).data
            receipts = [f.forget(req)]
        receipt = receipts[-1]
        assert receipt["sequence"] == f.sequence
        # the data the model stands on is the independently removed data
        m = f.model
        assert m.seen_.fingerprint() == ref.fingerprint()
        assert m.users_ == ref.users and m.items_ == ref.items
        # the certificate is a true statement, and its value bounds the true residual
        true_max = _dense_max_relative(params, ref, m.user_factors_, m.item_factors_)
        assert receipt["certified"] is True
        assert true_max <= tol * (1 + 1e-9)
        assert receipt["certificate"]["max_relative"] >= true_max * (1 - 1e-9) - 1e-12
        # the maintained per-row gradients are the exact ones, not only bounds
        _check_state_against_dense(f, params, ref)
        if "verification" in receipt:
            assert receipt["verification"]["drift"] < 1e-8
            verified += 1
    assert f.sequence == 30 + 3  # three batches of two
    assert verified >= 33 // f.verify_every - 1  # a batch may complete a pass early


def _check_state_against_dense(f: Forgetter, params, ref: Interactions) -> None:
    """The maintained gradients are within their error bounds of the dense ones."""
    st = f._state
    m = f.model
    g_dense, b_dense = _dense_residuals(params, ref, m.user_factors_, m.item_factors_, True)
    kept_g, kept_b, err, err_b = [], [], [], []
    for which in ("users", "items"):
        s, _ = st.side(which)
        rows = np.flatnonzero(s.alive)
        kept_g.append(s.g[rows] + 2.0 * (s.X[rows].astype(np.float64) @ s.D))
        kept_b.append(s.b[rows])
        err.append(s.e[rows])
        err_b.append(s.eb[rows])
    kept_g, kept_b = np.concatenate(kept_g), np.concatenate(kept_b)
    err, err_b = np.concatenate(err), np.concatenate(err_b)
    bn = np.linalg.norm(b_dense, axis=1)
    scale = np.maximum(bn, 1e-3 * np.sqrt(np.mean(bn**2)))
    slack = 1e-9 * scale
    assert np.all(np.linalg.norm(kept_g - g_dense, axis=1) <= err + slack)
    assert np.all(np.linalg.norm(kept_b - b_dense, axis=1) <= err_b + slack)


def test_receipt_has_the_one_shot_fields_plus_stream_fields():
    data = _data("implicit", seed=2)
    model = _model("implicit", "linear", "none", data)
    one_shot = forget(model, DeletionRequest(users=["u1"]), "unlearn-als-selective", tol=1e-3)
    f = Forgetter(model, tol=1e-3)
    receipt = f.forget(DeletionRequest(users=["u1"], request_id="r-1"))
    missing = set(one_shot.receipt) - set(receipt)
    assert not missing, missing
    for key in ("sequence", "wall_seconds", "seconds", "batch", "digests"):
        assert key in receipt
    assert receipt["wall_seconds"] >= receipt["seconds"] > 0
    assert 0 <= receipt["verify_seconds"] <= receipt["wall_seconds"]
    assert receipt["request_id"] == "r-1"
    assert "u1" not in str(receipt)  # no raw ids
    # same remaining data and a certified model, as the one-shot method
    assert f.data.fingerprint() == one_shot.data.fingerprint()
    assert f.model.certify(tol=1e-3)["certified"]


def test_forgetting_twice_is_a_noop_and_unknown_ids_change_nothing():
    data = _data("implicit", seed=3)
    f = Forgetter(_model("implicit", "linear", "none", data), tol=1e-3)
    f.forget(DeletionRequest(users=["u2"]))
    again = f.forget(DeletionRequest(users=["u2"]))
    assert again["noop"] and again["removed"]["already_forgotten"] == 1
    before = (f.data_fingerprint, f.model_digest, f.sequence)
    with pytest.raises(UnknownIdError, match="nobody"):
        f.forget_batch([DeletionRequest(users=["u3"]), DeletionRequest(users=["nobody"])])
    assert (f.data_fingerprint, f.model_digest, f.sequence) == before
    assert "u3" in f.data.users
    out = Forgetter(f.model, tol=1e-3, missing="ignore").forget(
        DeletionRequest(users=["nobody"], pairs=[("u4", 9999)])
    )
    assert out["noop"] and out["removed"]["unknown"] == {"users": 1, "items": 1}


def test_the_streams_record_of_forgotten_ids_survives_a_save_under_the_id_key(tmp_path):
    key = bytes(range(100, 132))
    data = _data("implicit", seed=3)
    f = Forgetter(_model("implicit", "linear", "none", data), tol=1e-3, id_key=key)
    f.forget(DeletionRequest(users=["u2"]))
    f.model.save(tmp_path / "m")
    assert "u2" not in (tmp_path / "m" / "manifest.json").read_text()
    loaded = ALS.load(tmp_path / "m")
    g = Forgetter(loaded, tol=1e-3, id_key=key)
    again = g.forget(DeletionRequest(users=["u2"], pairs=[("u2", 0)]))
    assert again["noop"] and again["removed"]["already_forgotten"] == 1
    with pytest.raises(IdKeyError, match="key id"):
        Forgetter(loaded, tol=1e-3, id_key=bytes(32))


def test_digests_follow_content():
    data = _data("explicit", seed=4)
    f = Forgetter(_model("explicit", "linear", "none", data), tol=1e-3)
    frame = data.to_frame()
    f.forget(DeletionRequest(pairs=[(frame.user[0], frame.item[0])]))
    f.forget(DeletionRequest(items=[int(data.items.ids[5])]))
    # digests from scratch on the same content (setup_target 1: the setup re-solves nothing)
    fresh = Forgetter(f.model, tol=1e-3, setup_target=1.0)
    assert fresh.data_fingerprint == f.data_fingerprint
    assert fresh.model_digest == f.model_digest
    assert Forgetter(_model("explicit", "linear", "none", data)).data_fingerprint != (
        f.data_fingerprint
    )


def test_compaction_in_the_stream_keeps_the_state():
    data = _data("implicit", seed=5)
    model = _model("implicit", "linear", "none", data)
    f = Forgetter(model, tol=1e-3, compact_at=0.1)
    ref = data
    for u in ["u0", "u1", "u2", "u3", "u4", "u5"]:
        f.forget(DeletionRequest(users=[u]))
        ref = ref.remove(users=[u]).data
    assert f.view.capacity < data.nnz  # compacted on the way
    assert f.view.tombstone_fraction() <= 0.1
    assert f.data.fingerprint() == ref.fingerprint()
    m = f.model
    assert _dense_max_relative(model.get_params(), ref, m.user_factors_, m.item_factors_) <= 1e-3
    _check_state_against_dense(f, model.get_params(), ref)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"weighting": "bm25"}, "BM25"),
        ({"feedback": "explicit", "biases": True}, "biases"),
    ],
)
def test_refuses_objectives_with_global_statistics(kwargs, match):
    data = _data("implicit", seed=6)
    model = ALS(factors=2, iterations=2, random_state=0, **kwargs).fit(data)
    with pytest.raises(ValueError, match=match):
        Forgetter(model)


def test_uncertified_model_is_repaired_at_setup():
    data = _data("implicit", seed=7)
    model = ALS(factors=3, regularization=0.5, iterations=2, random_state=0).fit(data)
    f = Forgetter(model, tol=1e-3)
    assert not f.setup["initial"]["certified"]
    assert f.setup["repair"]["certified"]
    assert f.model.certify(tol=1e-3)["certified"]


def test_sliced_verification_covers_every_row_and_catches_a_broken_bound():
    data = _data("implicit", seed=8)
    model = _model("implicit", "linear", "none", data)
    f = Forgetter(model, tol=1e-3, verify_every=4)
    st = f._state
    passes = []
    for n, u in enumerate(["u0", "u1", "u2", "u3"]):
        receipt = f.forget(DeletionRequest(users=[u]))
        assert ("verification" in receipt) == (n == 3)  # the 4th request completes the pass
        passes.append(receipt.get("verification"))
    done = passes[-1]
    assert done["mode"] == "sliced" and done["slices"] == 4
    live_now = int(st.users.alive.sum() + st.items.alive.sum())  # rows live when reached
    assert live_now <= done["rows"] <= len(st.users.X) + len(st.items.X)
    assert done["drift"] < 1e-8 and done["certified"]
    # a maintained gradient that misses its bound is reported by the pass that reaches it
    r = int(np.flatnonzero(st.users.alive)[-1])  # in the last slice
    st.users.g[r] += 0.5 * st.tol * max(st.users.bn[r], 1.0)
    for _ in range(3):
        assert st.verify_slice(4) is None
    out = st.verify_slice(4)
    assert out is not None and out["drift"] > 0.1 * st.tol
    again = [st.verify_slice(4) for _ in range(4)]  # and the row is fresh again afterwards
    assert again[-1]["drift"] < 1e-8


def test_neighbour_target_resolves_the_touched_rows_neighbours():
    data = _data("implicit", seed=9)
    model = _model("implicit", "linear", "none", data)
    # a loose tolerance against a tight fit: rows have room, the plain stream moves few
    plain = Forgetter(model, tol=1e-2)
    settle = Forgetter(model, tol=1e-2, neighbour_target=0.0)
    solved = {}
    for name, f in (("plain", plain), ("settle", settle)):
        solved[name] = set()
        solve = f._state.solve

        def spy(which, rows, floor=None, *, f=f, solve=solve, seen=solved[name]):
            if which == "users":  # record the users re-solved, then solve
                seen.update(f.view.users.ids[rows])
            return solve(which, rows, floor)

        f._state.solve = spy
        f.forget(DeletionRequest(users=["u5"]))
    # every live user sharing an item with u5 is re-solved (neighbour_target 0)
    frame = data.to_frame()
    items = set(frame.item[frame.user == "u5"])
    near = set(frame.user[frame.item.isin(items)]) - {"u5"}
    assert near <= solved["settle"]
    assert near - solved["plain"]  # which the plain stream does not do
    for f in (plain, settle):
        m = f.model
        true_max = _dense_max_relative(model.get_params(), f.data, m.user_factors_, m.item_factors_)
        assert true_max <= 1e-2 * (1 + 1e-9)
    with pytest.raises(ValueError, match="neighbour_target"):
        Forgetter(model, neighbour_target=1.5)
    with pytest.raises(ValueError, match="verify_mode"):
        Forgetter(model, verify_mode="sometimes")


def _spy_users(f: Forgetter, seen: set, side: str = "users"):
    """Record in ``seen`` the rows of ``side`` that ``f`` re-solves from now on (raw ids);
    returns the real solve."""
    solve = f._state.solve
    vocab = f.view.users if side == "users" else f.view.items

    def spy(which, rows, floor=None):
        if which == side:
            seen.update(vocab.ids[rows])
        return solve(which, rows, floor)

    f._state.solve = spy
    return solve


def _users_solved(f: Forgetter, request: DeletionRequest) -> set:
    seen: set = set()
    solve = _spy_users(f, seen)
    f.forget(request)
    f._state.solve = solve
    return seen


def test_touched_first_share_skips_the_touched_rows_the_deletion_barely_moved():
    rng = np.random.default_rng(3)
    density = np.r_[np.full(10, 0.9), np.full(10, 0.08)]  # popular items and rare ones
    R = (rng.random((300, 20)) < density) * rng.integers(1, 4, (300, 20)).astype(float)
    data = Interactions.from_csr(R, users=[f"u{k}" for k in range(300)], items=np.arange(20))
    model = _model("implicit", "linear", "none", data)
    frame = data.to_frame()
    user = frame.user.value_counts().index[0]  # the heaviest user: many touched items
    items = set(frame.item[frame.user == user])
    popular = set(range(10))
    solved = {}
    for first in (True, 0.5, False):
        f = Forgetter(model, tol=1e-2, touched_first=first, neighbour_target=None)
        seen: set = set()
        _spy_users(f, seen, "items")
        receipt = f.forget(DeletionRequest(users=[user]))
        assert receipt["certified"]
        m = f.model
        true_max = _dense_max_relative(model.get_params(), f.data, m.user_factors_, m.item_factors_)
        assert true_max <= 1e-2 * (1 + 1e-9)
        solved[first] = seen & items
    assert solved[True] == items  # every touched item
    # with a share, the rare items (which lost a large part of their data), not the popular
    assert solved[False] <= solved[0.5] < solved[True]
    assert solved[0.5] and not solved[0.5] & popular and items & popular
    for bad in (0.0, 1.5, "yes", {"user": 0.5}, {"pairs": 2}):
        with pytest.raises(ValueError, match="touched_first"):
            Forgetter(model, tol=1e-2, touched_first=bad)
    # per kind: a batch of a pair and a user takes the most inclusive rule (the pair's True)
    mixed = Forgetter(model, tol=1e-2, touched_first={"users": False}, neighbour_target=None)
    assert mixed.touched_first == {"users": False, "items": 0.2, "pairs": True}
    pair = frame[frame.user != user].iloc[0]
    mixed.submit(DeletionRequest(users=[user]))
    mixed.submit(DeletionRequest(pairs=[(pair["user"], pair["item"])]))
    seen: set = set()
    _spy_users(mixed, seen, "items")
    assert all(r["certified"] for r in mixed.flush())
    assert items <= seen


def test_neighbour_target_per_kind_of_deletion():
    data = _data("implicit", seed=9)
    model = _model("implicit", "linear", "none", data)
    frame = data.to_frame()
    u, i = frame.user.iloc[0], frame.item.iloc[0]
    near = set(frame.user[frame.item == i]) - {u}  # the users of the pair's item
    assert near
    by_kind = Forgetter(model, tol=1e-2, neighbour_target={"pairs": 0.0, "users": None})
    assert by_kind.neighbour_target == {"users": None, "items": 0.3, "pairs": 0.0}
    assert near <= _users_solved(by_kind, DeletionRequest(pairs=[(u, i)]))
    off = Forgetter(model, tol=1e-2, neighbour_target={"pairs": None})
    assert near - _users_solved(off, DeletionRequest(pairs=[(u, i)]))
    # a batch of a pair and a user takes the smaller target (the pair's 0)
    mixed = Forgetter(model, tol=1e-2, neighbour_target={"pairs": 0.0, "users": None})
    other = next(x for x in frame.user.unique() if x != u and x not in near)
    mixed.submit(DeletionRequest(pairs=[(u, i)]))
    mixed.submit(DeletionRequest(users=[other]))
    seen: set = set()
    _spy_users(mixed, seen)
    assert all(r["certified"] for r in mixed.flush())
    assert near <= seen
    for f in (by_kind, off, mixed):
        m = f.model
        true_max = _dense_max_relative(model.get_params(), f.data, m.user_factors_, m.item_factors_)
        assert true_max <= 1e-2 * (1 + 1e-9)
    with pytest.raises(ValueError, match="neighbour_target keys"):
        Forgetter(model, neighbour_target={"rows": 0.1})
    with pytest.raises(ValueError, match="neighbour_target for pairs"):
        Forgetter(model, neighbour_target={"pairs": -0.1})
    with pytest.raises(ValueError, match="neighbour_target for users"):
        Forgetter(model, neighbour_target={"users": True})


def test_verify_entries_bounds_the_slice_and_stretches_the_pass():
    data = _data("implicit", seed=8)
    model = _model("implicit", "linear", "none", data)
    budget = 2 * data.nnz // 6 + 1  # a pass needs 6 requests, more than verify_every
    f = Forgetter(model, tol=1e-3, verify_every=2, verify_entries=budget)
    assert f._slices() == 6
    users = list(data.users.ids[:6])
    receipts = [f.forget(DeletionRequest(users=[u])) for u in users]
    done = [n for n, r in enumerate(receipts) if "verification" in r]
    assert done and done[0] >= 4  # the pass spans more than verify_every requests
    assert receipts[done[0]]["verification"]["slices"] >= 5
    assert receipts[done[0]]["verification"]["drift"] < 1e-8
    unbounded = Forgetter(model, tol=1e-3, verify_every=2, verify_entries=None)
    assert unbounded._slices() == 2
    with pytest.raises(ValueError, match="verify_entries"):
        Forgetter(model, verify_entries=0)
