"""The accelerated sweep driver: line search, monotonicity, same stationary point as plain ALS."""

from __future__ import annotations

import numpy as np
import pytest

from recforget import ALS, DeletionRequest, Interactions, forget
from recforget.kernels.als_line import quartic_argmin
from recforget.models import _als_sweeps as sweeps
from recforget.models._als_objective import ALSObjective, Factors
from recforget.models._als_sweeps import (
    ANDERSON_FITS,
    SweepRun,
    _Anderson,
    _items_part,
    _pack,
    _Sweeper,
    check_accelerate,
    fast_loss,
    line_coefficients,
    loss_from_user_gradients,
    run_sweeps,
)

DRIVERS = ["ncg", "anderson"]
CONFIGS = [
    {"feedback": "implicit", "regularization": 0.5, "alpha": 5.0},
    {"feedback": "explicit", "regularization": 0.5},
    {"feedback": "explicit", "regularization": 0.5, "biases": True},
]
CONFIG_IDS = ["implicit", "explicit", "explicit-biases"]


def planted(m: int = 40, n: int = 30, rank: int = 4, density: float = 0.5, seed: int = 3):
    """Ratings 1..5 from a planted rank-``rank`` model on a random support."""
    r = np.random.default_rng(seed)
    S = r.standard_normal((m, rank)) @ r.standard_normal((rank, n))
    R = np.clip(np.round(3 + S), 1, 5) * (r.random((m, n)) < density)
    R[np.arange(m), r.integers(0, n, m)] = 3.0  # every user has an entry
    return Interactions.from_csr(R)


def _model(config, **kw) -> ALS:
    params = {"factors": 4, "dtype": "float64", "random_state": 0, **config, **kw}
    return ALS(**params)


def _start(data: Interactions, config, seed: int = 1):
    obj = _model(config).objective(data)
    r = np.random.default_rng(seed)
    biased = config.get("biases", False)
    F = Factors(
        r.standard_normal((data.n_users, 4)) * 0.5,
        r.standard_normal((data.n_items, 4)) * 0.5,
        r.standard_normal(data.n_users) * 0.1 if biased else None,
        r.standard_normal(data.n_items) * 0.1 if biased else None,
    )
    return obj, F


def _anderson_to_certificate(data: Interactions, config, tol: float, **kw):
    """Anderson sweeps from ``_start`` to ``tol``: certified, every step checked not to raise
    an objective built independently from the data. Returns the objective, the factors, the
    run and that independent objective."""
    obj, F = _start(data, config)
    fresh = _model(config).objective(data)  # an independent objective, built from scratch
    losses = [fresh.loss(F)]
    run = run_sweeps(
        obj, F, 5000, solver="cholesky", grad_tol=tol, accelerate="anderson",
        on_step=lambda G, info: losses.append(fresh.loss(G)), **kw,
    )  # fmt: skip
    assert run.reason == "grad_tol"
    steps = np.diff(losses)
    assert np.all(steps <= 1e-12 * abs(losses[0])), steps.max()
    assert fresh.stationarity(F)["max_relative"] <= tol
    return obj, F, run, fresh


def _assert_plain_point(obj, data, config, F: Factors, fresh, tol: float) -> SweepRun:
    """``F`` is the point plain exact sweeps from the same start certify at; their run."""
    _, E = _start(data, config)
    plain = run_sweeps(obj, E, 5000, solver="cholesky", grad_tol=tol)
    assert plain.reason == "grad_tol"
    assert fresh.loss(F) == pytest.approx(fresh.loss(E), rel=1e-6)
    S_exact = E.X @ E.Y.T
    assert np.abs(F.X @ F.Y.T - S_exact).max() < 1e-3 * np.abs(S_exact).max()
    return plain


@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_line_coefficients_are_the_objective_along_the_line(config):
    data = planted()
    obj, F = _start(data, config)
    r = np.random.default_rng(5)
    n = F.X.size + F.Y.size + (0 if F.bu is None else F.bu.size + F.bi.size)
    D = r.standard_normal(n)
    c = line_coefficients(obj, F, D)
    base = obj.loss(F)
    for t in (-1.3, -0.2, 0.4, 1.0, 2.5):
        G = F.copy()
        k = F.X.size
        G.X += t * D[:k].reshape(F.X.shape)
        G.Y += t * D[k : k + F.Y.size].reshape(F.Y.shape)
        if F.bu is not None:
            off = k + F.Y.size
            G.bu += t * D[off : off + F.bu.size]
            G.bi += t * D[off + F.bu.size :]
        poly = c[1] * t + c[2] * t**2 + c[3] * t**3 + c[4] * t**4
        assert obj.loss(G) - base == pytest.approx(poly, rel=1e-9, abs=1e-7 * abs(base))


@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_fused_loss_is_the_objective(config):
    data = planted()
    obj, F = _start(data, config)
    assert fast_loss(obj, F) == pytest.approx(obj.loss(F), rel=1e-12)
    F32 = Factors(*(None if a is None else a.astype(np.float32) for a in (F.X, F.Y, F.bu, F.bi)))
    obj32 = _model(config, dtype="float32").objective(data)
    # float32 factors: the all-cells and data terms cancel, so the sum is good to ~1e-8
    assert fast_loss(obj32, F32) == pytest.approx(obj32.loss(F32), rel=1e-7)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("config", CONFIGS[:2], ids=CONFIG_IDS[:2])
def test_loss_from_the_users_gradients_is_the_objective(config, dtype):
    data = planted()
    obj, F = _start(data, config)
    F = Factors(F.X.astype(dtype), F.Y.astype(dtype))
    obj = _model(config, dtype=dtype).objective(data)
    grad, rhs = obj.gradients("users", F)
    got = loss_from_user_gradients(obj, F, grad, rhs)
    assert got == pytest.approx(obj.loss(F), rel=1e-10)
    with pytest.raises(ValueError, match="biases"):
        biased, G = _start(data, CONFIGS[2])
        loss_from_user_gradients(biased, G, *biased.gradients("users", G))


def test_quartic_argmin_is_the_grid_minimum():
    r = np.random.default_rng(0)
    grid = np.linspace(-20, 20, 400001)
    for _ in range(20):
        c = np.concatenate([[0.0], r.standard_normal(3) * 5, [abs(r.standard_normal()) + 0.01]])
        t = quartic_argmin(c)
        f = c[1] * grid + c[2] * grid**2 + c[3] * grid**3 + c[4] * grid**4
        ft = c[1] * t + c[2] * t**2 + c[3] * t**3 + c[4] * t**4
        assert ft <= min(0.0, f.min()) + 1e-6
    assert quartic_argmin(np.array([0.0, 2.0, 1.0, 0.0, 0.0])) == pytest.approx(-1.0)
    assert quartic_argmin(np.array([0.0, 0.0, 1.0, 0.0, 0.0])) == 0.0


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_objective_never_increases(config, driver, solver):
    data = planted()
    obj, F = _start(data, config)
    fresh = _model(config).objective(data)  # an independent objective, built from scratch
    losses = [fresh.loss(F)]
    run = run_sweeps(
        obj,
        F,
        40,
        solver=solver,
        accelerate=driver,
        on_step=lambda G, info: losses.append(fresh.loss(G)),
    )
    assert run.sweeps == 40 and len(losses) == 41
    steps = np.diff(losses)
    assert np.all(steps <= 1e-12 * abs(losses[0])), steps.max()
    assert run.accepted > 0  # the acceleration did something


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_accelerated_fit_reaches_the_plain_certified_point(config, driver, solver):
    data = planted()
    tol = 1e-7
    kw = {"solver": solver, "cg_steps": 4, "iterations": 3000, "grad_tol": tol}
    plain = _model(config, accelerate=None, **kw).fit(data)
    fast = _model(config, accelerate=driver, **kw).fit(data)
    assert plain.driver_ == "plain" and fast.driver_ == driver
    for model in (plain, fast):
        assert model.stop_reason_ == "grad_tol"
        # certified from scratch, on an objective rebuilt from the data
        F = Factors(model.user_factors_, model.item_factors_, model.user_bias_, model.item_bias_)
        cert = _model(config).objective(data).stationarity(F)
        assert cert["max_relative"] <= tol
    assert fast.loss() == pytest.approx(plain.loss(), rel=1e-6)
    S_plain = plain.user_factors_ @ plain.item_factors_.T
    S_fast = fast.user_factors_ @ fast.item_factors_.T
    assert np.abs(S_plain - S_fast).max() < 1e-3 * np.abs(S_plain).max()
    assert fast.n_iter_ < plain.n_iter_


@pytest.mark.parametrize("driver", [None, *DRIVERS])
@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_rows_solved_to_a_target_never_raise_the_objective(config, driver):
    data = planted()
    obj, F = _start(data, config)
    fresh = _model(config).objective(data)
    losses = [fresh.loss(F)]
    run = run_sweeps(
        obj,
        F,
        30,
        solver="cg",
        cg_steps=10,
        inner_tol=1e-4,
        accelerate=driver,
        on_step=lambda G, info: losses.append(fresh.loss(G)),
    )
    steps = np.diff(losses)
    assert np.all(steps <= 1e-12 * abs(losses[0])), steps.max()
    n_rows = F.X.shape[0] + F.Y.shape[0]
    assert 0 < run.cg_iterations < 10 * n_rows * run.sweeps  # the cap is not always reached


@pytest.mark.parametrize("forcing", [None, 0.1])
@pytest.mark.parametrize("driver", [None, *DRIVERS])
@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_rows_solved_to_a_target_reach_the_exact_certified_point(config, driver, forcing):
    """CG rows solved to ``inner_tol`` (with or without a forcing term) reach the point plain
    sweeps with exact rows reach, certified on an objective rebuilt from scratch."""
    data = planted()
    tol = 1e-7
    obj, F = _start(data, config)
    E = F.copy()  # plain sweeps with exact (Cholesky) rows from the same start
    assert run_sweeps(obj, E, 3000, solver="cholesky", grad_tol=tol).reason == "grad_tol"
    run = run_sweeps(
        obj, F, 3000, solver="cg", cg_steps=10, grad_tol=tol, inner_tol=0.3 * tol,
        forcing=forcing, accelerate=driver,
    )  # fmt: skip
    assert run.reason == "grad_tol"
    fresh = _model(config).objective(data)
    assert fresh.stationarity(F)["max_relative"] <= tol
    assert obj.loss(F) == pytest.approx(obj.loss(E), rel=1e-6)
    assert fresh.loss(F) == pytest.approx(fresh.loss(E), rel=1e-6)
    S_exact = E.X @ E.Y.T
    assert np.abs(F.X @ F.Y.T - S_exact).max() < 1e-3 * np.abs(S_exact).max()


@pytest.mark.parametrize("driver", [None, "anderson"])
def test_unlearn_als_row_accuracy_options_reach_the_same_point(driver):
    data = planted(60, 40)
    config = CONFIGS[0]
    model = _model(config, iterations=2000, grad_tol=1e-6).fit(data)
    request = DeletionRequest(
        pairs=[(data.users.ids[u], data.items.ids[data.indices[data.indptr[u]]]) for u in (0, 3, 9)]
    )
    tol = 1e-6
    runs = {
        "auto": forget(model, request, tol=tol, accelerate=driver),
        "classic": forget(model, request, tol=tol, accelerate=driver, inner_tol=None),
        "tight": forget(model, request, tol=tol, accelerate=driver, inner_tol=1e-9, cg_steps=40),
    }
    for res in runs.values():
        assert res.receipt["certified"]
        assert res.model.cg_steps == model.cg_steps and res.model.solver == model.solver
    S = {k: r.model.user_factors_ @ r.model.item_factors_.T for k, r in runs.items()}
    for k in ("classic", "tight"):
        assert np.abs(S[k] - S["auto"]).max() < 1e-4 * np.abs(S["auto"]).max()
    with pytest.raises(ValueError, match="inner_tol"):
        forget(model, request, inner_tol=-1.0)
    with pytest.raises(ValueError, match="cg_steps"):
        forget(model, request, cg_steps=0)


@pytest.mark.parametrize("driver", [None, *DRIVERS])
@pytest.mark.parametrize("config", CONFIGS[:2], ids=CONFIG_IDS[:2])
@pytest.mark.parametrize("method", ["unlearn-als", "unlearn-als-selective", "retrain"])
def test_rows_that_lose_all_data(config, driver, method):
    data = planted()
    model = _model(config, iterations=2000, grad_tol=1e-6).fit(data)
    user = 0
    items = data.indices[data.indptr[user] : data.indptr[user + 1]]
    pairs = [(data.users.ids[user], data.items.ids[j]) for j in items]
    # also every interaction of one item, so an item row loses all its data too
    item = int(data.indices[data.indptr[5]])
    rows = np.flatnonzero(data.to_csr()[:, [item]].toarray().ravel())
    pairs += [(data.users.ids[u], data.items.ids[item]) for u in rows if u != user]
    request = DeletionRequest(pairs=sorted(set(pairs)))
    budget = {} if method == "unlearn-als-selective" else {"max_sweeps": 3000}
    res = forget(model, request, method, tol=1e-6, accelerate=driver, **budget)
    assert res.receipt["certified"]
    new = res.model
    remaining = res.data
    assert remaining.user_counts()[user] == 0 and remaining.item_counts()[item] == 0
    F = Factors(new.user_factors_, new.item_factors_)
    assert _model(config).objective(remaining).stationarity(F)["max_relative"] <= 1e-6
    # an empty row's sub-problem has b = 0, so its solution is 0
    scale = np.abs(new.user_factors_).max()
    assert np.abs(new.user_factors_[user]).max() <= 1e-5 * scale
    assert np.abs(new.item_factors_[item]).max() <= 1e-5 * np.abs(new.item_factors_).max()


def test_selective_hands_over_from_an_unconverged_model():
    data = planted(60, 40)
    config = CONFIGS[0]
    model = _model(config, iterations=2).fit(data)  # far from stationary
    request = DeletionRequest(pairs=[(data.users.ids[0], data.items.ids[data.indices[0]])])
    fast = forget(model, request, "unlearn-als-selective", tol=1e-5, accelerate="anderson")
    slow = forget(model, request, "unlearn-als-selective", tol=1e-5, accelerate=None)
    assert fast.receipt["certified"] and slow.receipt["certified"]
    assert fast.receipt["handover_sweeps"] > 0 and fast.receipt["driver"] == "anderson"
    assert "handover_sweeps" not in slow.receipt


def test_auto_is_plain_for_fixed_iterations_and_accelerated_to_a_certificate():
    data = planted()
    auto = ALS(4, iterations=6, random_state=0).fit(data)
    plain = ALS(4, iterations=6, random_state=0, accelerate=None).fit(data)
    assert auto.driver_ == "plain"
    np.testing.assert_array_equal(auto.user_factors_, plain.user_factors_)
    certified = ALS(4, iterations=500, grad_tol=1e-4, random_state=0).fit(data)
    assert certified.driver_ == "anderson" and certified.stop_reason_ == "grad_tol"
    assert len(certified.sweep_trace_) == certified.n_iter_


def test_bad_driver_is_named():
    with pytest.raises(ValueError, match="accelerate"):
        ALS(4, accelerate="newton").fit(planted())
    with pytest.raises(ValueError, match="accelerate"):
        check_accelerate("fast")


def test_line_search_objective_matches_loss_after_deletion():
    """The line coefficients use the remaining-data objective (deleted cells are p = 0)."""
    data = planted()
    config = CONFIGS[0]
    model = _model(config, iterations=3).fit(data)
    removal = data.remove(pairs=[(data.users.ids[1], data.items.ids[data.indices[data.indptr[1]]])])
    obj = ALSObjective(removal.data, feedback="implicit", regularization=0.5, alpha=5.0)
    F = Factors(model.user_factors_.copy(), model.item_factors_.copy())
    D = np.random.default_rng(0).standard_normal(F.X.size + F.Y.size)
    c = line_coefficients(obj, F, D)
    G = F.copy()
    G.X += 0.3 * D[: F.X.size].reshape(F.X.shape)
    G.Y += 0.3 * D[F.X.size :].reshape(F.Y.shape)
    poly = sum(c[p] * 0.3**p for p in range(1, 5))
    assert obj.loss(G) - obj.loss(F) == pytest.approx(poly, rel=1e-9)


def test_uncertified_receipt_says_what_was_reached_and_what_to_do():
    data = planted(60, 40)
    model = ALS(4, regularization=0.01, iterations=15, random_state=0).fit(data)  # implicit-style
    request = DeletionRequest(pairs=[(data.users.ids[0], data.items.ids[data.indices[0]])])
    res = forget(model, request, "unlearn-als", tol=1e-4, max_sweeps=3)
    r = res.receipt
    assert r["certified"] is False
    note = r["convergence"]
    assert note["reached"] == pytest.approx(r["certificate"]["max_relative"], rel=1e-6)
    assert note["times_tol"] == pytest.approx(note["reached"] / 1e-4)
    assert note["sweeps"] == 3 and "NOT certified" in note["advice"]
    assert "max_sweeps=" in note["advice"]
    assert note["more_sweeps_estimate"] is not None and note["more_sweeps_estimate"] > 0
    # the defaults (tolerance 1e-3, accelerated sweeps, 500 at most) certify this model
    default = forget(model, request)
    assert default.receipt["certified"] and "convergence" not in default.receipt
    assert default.receipt["driver"] == "anderson"


@pytest.mark.parametrize("driver", [None, *DRIVERS])
@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_forcing_rows_never_raise_the_objective(config, driver):
    data = planted()
    obj, F = _start(data, config)
    fresh = _model(config).objective(data)  # an independent objective, built from scratch
    losses = [fresh.loss(F)]
    kw = {"solver": "cg", "cg_steps": 10, "inner_tol": 1e-6, "accelerate": driver}
    run = run_sweeps(
        obj, F, 30, forcing=0.1, on_step=lambda G, info: losses.append(fresh.loss(G)), **kw
    )
    steps = np.diff(losses)
    assert np.all(steps <= 1e-12 * abs(losses[0])), steps.max()
    # the forcing term stops rows early: fewer CG steps than rows solved to inner_tol
    _, E = _start(data, config)
    tight = run_sweeps(obj, E, 30, **kw)
    assert 0 < run.cg_iterations < tight.cg_iterations


@pytest.mark.parametrize("reg", [0.05, 0.5])
@pytest.mark.parametrize("safeguard", ["line", "sweep"])
@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_anderson_safeguards_never_raise_the_objective(config, safeguard, reg):
    """Far from stationary Anderson's mixed points are often refused; either fallback is safe.

    At regularisation 0.5 the certified point is the one plain exact sweeps reach; at 0.05
    (many refusals) the objective has several stationary points, so only certification and
    monotonicity are checked there.
    """
    config = {**config, "regularization": reg}
    data = planted(60, 40)
    tol = 1e-6
    obj, F, run, fresh = _anderson_to_certificate(data, config, tol, safeguard=safeguard)
    if safeguard == "sweep":
        assert run.line_steps == 0
    elif config["feedback"] == "implicit" or reg < 0.5:
        assert 0 < run.line_steps <= run.fallbacks  # refused steps took the line's minimum
    if reg == 0.5:
        _assert_plain_point(obj, data, config, F, fresh, tol)


@pytest.mark.parametrize("driver", [None, "anderson"])
@pytest.mark.parametrize("method", ["unlearn-als", "unlearn-als-selective"])
def test_forcing_rows_that_lose_all_data(driver, method):
    data = planted()
    config = CONFIGS[0]
    model = _model(config, iterations=2000, grad_tol=1e-6).fit(data)
    user = 0
    items = data.indices[data.indptr[user] : data.indptr[user + 1]]
    request = DeletionRequest(pairs=[(data.users.ids[user], data.items.ids[j]) for j in items])
    budget = {} if method == "unlearn-als-selective" else {"max_sweeps": 3000}
    res = forget(model, request, method, tol=1e-6, accelerate=driver, forcing=0.1, **budget)
    assert res.receipt["certified"]
    new, remaining = res.model, res.data
    assert remaining.user_counts()[user] == 0
    F = Factors(new.user_factors_, new.item_factors_)
    assert _model(config).objective(remaining).stationarity(F)["max_relative"] <= 1e-6
    assert np.abs(new.user_factors_[user]).max() <= 1e-5 * np.abs(new.user_factors_).max()


def test_bad_forcing_and_safeguard_are_named():
    data = planted()
    model = _model(CONFIGS[0], iterations=200, grad_tol=1e-5).fit(data)
    request = DeletionRequest(pairs=[(data.users.ids[0], data.items.ids[data.indices[0]])])
    for method in ("unlearn-als", "unlearn-als-selective"):
        for bad in (0, 1, 1.5, -0.1, True, "0.1", float("nan")):
            with pytest.raises(ValueError, match="forcing"):
                forget(model, request, method, forcing=bad)
    obj, F = _start(data, CONFIGS[0])
    with pytest.raises(ValueError, match="safeguard"):
        run_sweeps(obj, F, 2, accelerate="anderson", safeguard="damped")
    with pytest.raises(ValueError, match="forcing"):
        run_sweeps(obj, F, 2, solver="cg", inner_tol=1e-3, forcing=2.0)


@pytest.mark.parametrize("driver", [None, "anderson"])
def test_sweeps_reuse_the_certificates_user_residuals(driver):
    """With CG rows the certificate's pass over the users (or, accelerated, the objective's)
    is also the next sweep's first: the
    residuals handed to the CG are ``b - A x = -grad / 2`` at the point the sweep starts from,
    checked against central differences of the objective (exact for a quadratic in a row),
    and ``||b||`` against the same at ``x_u = 0``."""
    data = planted()
    obj, F = _start(data, CONFIGS[0])
    seen = []
    solve = obj.solve

    def spy(which, G, *args, res0=None, b0=None, **kw):
        if res0 is not None:
            seen.append((which, G.copy(), res0.copy(), b0.copy()))
        return solve(which, G, *args, res0=res0, b0=b0, **kw)

    obj.solve = spy
    run = run_sweeps(
        obj, F, 3000, solver="cg", cg_steps=10, grad_tol=1e-5, inner_tol=1e-6, accelerate=driver
    )
    assert run.reason == "grad_tol"
    fresh = _model(CONFIGS[0]).objective(data).stationarity(F)  # the kept gradients told true
    assert run.certificate["max_relative"] == pytest.approx(fresh["max_relative"], rel=1e-9)
    # every sweep after the first certificate; accelerated runs also the first, from the
    # users' gradients that gave the start point's objective
    assert len(seen) == run.sweeps - (driver is None)
    assert {w for w, *_ in seen} == {"users"}
    for _, G, res0, b0 in seen[:2] + seen[-1:]:
        for u in range(0, data.n_users, 9):
            grad = _user_gradient(obj, G, u)
            assert res0[u] == pytest.approx(-0.5 * grad, abs=1e-6 * (1 + np.abs(grad).max()))
            Z = G.copy()
            Z.X[u] = 0.0
            at0 = _user_gradient(obj, Z, u)
            assert b0[u] == pytest.approx(0.5 * np.linalg.norm(at0), rel=1e-6)


def _user_gradient(obj, F, u: int, h: float = 1e-3) -> np.ndarray:
    """``dL/dx_u`` by central differences of the objective (exact for a quadratic in a row)."""
    grad = np.empty(F.X.shape[1])
    for f in range(len(grad)):
        P, M = F.copy(), F.copy()
        P.X[u, f] += h
        M.X[u, f] -= h
        grad[f] = (obj.loss(P) - obj.loss(M)) / (2 * h)
    return grad


def test_sweeps_do_not_reuse_residuals_of_another_point():
    """A sweep that starts from a point other than the one certified computes its own."""
    data = planted()
    obj, F = _start(data, CONFIGS[0])
    sweep = _Sweeper(obj, "cg", 10, 1e-7, SweepRun())
    sweep.certify(F)
    F.X[0, 0] += 0.1
    seen = []
    solve = obj.solve

    def spy(which, G, *args, res0=None, **kw):
        seen.append(res0)
        return solve(which, G, *args, res0=res0, **kw)

    obj.solve = spy
    sweep(F)
    assert seen == [None, None]


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
@pytest.mark.parametrize("driver", [None, *DRIVERS])
@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_finish_certifies_and_leaves_the_sweeps_alone_until_it_does(config, driver, solver):
    """The selective finish: certified from scratch on an independent objective, no higher
    objective than the sweep it finished, and the sweeps before it exactly those of a run
    without it (a failed attempt works on a copy)."""
    data = planted()
    tol = 1e-6
    kw = {"solver": solver, "cg_steps": 4, "grad_tol": tol, "accelerate": driver}
    fresh = _model(config).objective(data)
    seen = {}
    for finish in (0.5, 0.0):  # 0.5: on this small problem the default share comes too late
        obj, F = _start(data, config)
        losses: list[float] = []
        run = run_sweeps(
            obj, F, 3000, finish=finish,
            on_step=lambda G, info, losses=losses: losses.append(fresh.loss(G)), **kw,
        )  # fmt: skip
        assert run.reason == "grad_tol"
        assert fresh.stationarity(F)["max_relative"] <= tol
        seen[finish] = (run, losses, fresh.loss(F))
    (run, losses, final), (plain_run, plain_losses, _) = seen[0.5], seen[0.0]
    assert run.finished and not plain_run.finished and plain_run.finish_attempts == 0
    assert run.sweeps < plain_run.sweeps
    assert losses == plain_losses[: len(losses)]  # the same sweeps, bit for bit
    assert final <= losses[-1] + 1e-12 * abs(losses[-1])
    assert run.finish_rounds >= run.finish_attempts >= 1
    assert run.finish_users + run.finish_items > 0
    assert len(run.trace) == run.sweeps
    assert run.trace[-1]["max_relative"] <= tol < run.trace[-1]["swept_max_relative"]


def test_finish_rows_are_in_the_receipt():
    data = planted()
    model = _model(CONFIGS[0], iterations=500, grad_tol=1e-6).fit(data)
    request = DeletionRequest(users=[data.users.ids[0]])
    on = forget(model, request, "unlearn-als", tol=1e-6)  # the default share
    off = forget(model, request, "unlearn-als", tol=1e-6, finish=0)
    finish = on.receipt["finish"]
    assert finish["finished"] and finish["rows"] == finish["users"] + finish["items"] > 0
    assert off.receipt["finish"] == {
        "attempts": 0, "rounds": 0, "rows": 0, "users": 0, "items": 0, "finished": False,
    }  # fmt: skip
    n = on.model.seen_.n_users + on.model.seen_.n_items  # the rows of the remaining data
    assert on.receipt["rows_solved"] == on.receipt["sweeps"] * n + finish["rows"]
    assert on.receipt["sweeps"] < off.receipt["sweeps"]
    for res in (on, off):
        assert res.receipt["certified"]


def test_bad_finish_is_named():
    data = planted()
    obj, F = _start(data, CONFIGS[0])
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="finish"):
            run_sweeps(obj, F, 2, grad_tol=1e-3, finish=bad)


def test_items_part_is_the_items_block_of_the_packed_vector():
    r = np.random.default_rng(0)
    F = Factors(r.random((5, 3)), r.random((4, 3)), r.random(5), r.random(4))
    assert np.array_equal(_items_part(_pack(F), F), np.concatenate([F.Y.ravel(), F.bi]))
    G = Factors(F.X, F.Y)
    assert np.array_equal(_items_part(_pack(G), G), F.Y.ravel())


@pytest.mark.parametrize("fit", ANDERSON_FITS)
@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_anderson_fits_reach_the_plain_certified_point(config, fit, monkeypatch):
    """Weights fitted to the items' residual or to all of it: same certified point, monotone."""
    monkeypatch.setattr(sweeps, "DEFAULT_ANDERSON_FIT", fit)
    data = planted(60, 40)
    tol = 1e-7
    obj, F, run, fresh = _anderson_to_certificate(data, config, tol)
    assert run.accepted > 0
    plain = _assert_plain_point(obj, data, config, F, fresh, tol)
    assert run.sweeps < plain.sweeps


def test_bad_anderson_fit_is_named():
    with pytest.raises(ValueError, match="fit must be 'items' or 'all', got 'users'"):
        _Anderson(fit="users")
