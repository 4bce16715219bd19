"""implicit 0.7.3: the objective reproduced, and load -> forget -> save -> implicit loads it."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recforget import DataError, DeletionRequest, forget

implicit_als = pytest.importorskip("implicit.cpu.als", reason="implicit is in the [interop] extra")
from recforget.interop.implicit import from_implicit, read_npz, to_implicit  # noqa: E402


def _matrix(seed: int = 0, shape=(40, 30)) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    m = (rng.random(shape) < 0.2) * rng.integers(1, 5, shape)
    return sp.csr_matrix(m.astype(np.float32))


def _fitted(use_cg: bool, iterations: int = 3):
    model = implicit_als.AlternatingLeastSquares(
        factors=5,
        regularization=0.3,
        alpha=2.0,
        iterations=iterations,
        use_cg=use_cg,
        random_state=1,
    )
    model.fit(_matrix(), show_progress=False)
    return model


@pytest.mark.parametrize("use_cg", [False, True], ids=["cholesky", "cg"])
def test_one_implicit_sweep_equals_one_recforget_sweep(use_cg):
    """implicit's solver and recforget's kernels solve the same objective (same CG steps)."""
    theirs = _fitted(use_cg)
    ours = from_implicit(theirs, _matrix())
    assert ours.weighting == "confidence" and ours.solver == ("cg" if use_cg else "cholesky")
    theirs.iterations = 1
    theirs.fit(_matrix(), show_progress=False)  # one more sweep from its current factors
    ours.sweeps(ours.seen_, 1)
    scale = np.abs(theirs.user_factors).max()
    assert np.abs(ours.user_factors_ - theirs.user_factors).max() < 1e-5 * scale
    assert np.abs(ours.item_factors_ - theirs.item_factors).max() < 1e-5 * scale


def test_converged_implicit_model_is_certified_for_its_own_objective():
    theirs = _fitted(use_cg=False, iterations=200)
    ours = from_implicit(theirs, _matrix())
    assert ours.certify(tol=1e-3)["certified"]
    # and a different objective (recforget's default 1 + alpha r) does not certify it
    other = from_implicit(theirs, _matrix()).set_params(weighting="linear")
    assert other.certify(tol=1e-3)["certified"] is False


def test_npz_round_trip_forget_and_implicit_loads_it(tmp_path):
    theirs = _fitted(use_cg=True, iterations=10)
    theirs.save(str(tmp_path / "orig.npz"))
    model = from_implicit(tmp_path / "orig.npz", _matrix())
    result = forget(
        model,
        DeletionRequest(users=[3, 39], pairs=[(0, 5)] if _matrix()[0, 5] else []),
        "unlearn-als",
        tol=1e-4,
        max_sweeps=500,
    )
    assert result.receipt["certified"]
    to_implicit(result.model, tmp_path / "forgot.npz", like=tmp_path / "orig.npz")
    loaded = implicit_als.AlternatingLeastSquares.load(str(tmp_path / "forgot.npz"))
    assert loaded.user_factors.shape == theirs.user_factors.shape  # row numbers kept
    assert not loaded.user_factors[3].any() and not loaded.user_factors[39].any()
    users, items = np.array([0, 1, 7, 38]), np.array([5, 2, 29, 0])
    theirs_scores = np.einsum("ij,ij->i", loaded.user_factors[users], loaded.item_factors[items])
    np.testing.assert_allclose(
        theirs_scores, result.model.score(users, items), rtol=1e-6, atol=1e-7
    )
    ids, _ = loaded.recommend(1, _matrix()[1], N=5)
    ours = result.model.recommend([1], k=5)[0][0]
    np.testing.assert_array_equal(ids, ours)
    # the saved settings survive: regularisation, alpha, solver
    fields = read_npz(tmp_path / "forgot.npz")
    assert (fields["regularization"], fields["alpha"], fields["use_cg"]) == (0.3, 2.0, True)


def test_forgetting_matches_retraining_implicit_objective_from_scratch():
    """The forgotten model is a stationary point of implicit's objective on the remaining data,
    checked with an independent numpy evaluation of implicit's per-row normal equations."""
    theirs = _fitted(use_cg=False, iterations=30)
    m = _matrix()
    result = forget(
        from_implicit(theirs, m),
        DeletionRequest(users=[2]),
        "unlearn-als",
        tol=1e-6,
        max_sweeps=2000,
        solver="cholesky",
    )
    X, Y = (
        result.model.user_factors_.astype(np.float64),
        result.model.item_factors_.astype(np.float64),
    )
    C = m.toarray().astype(np.float64)[np.arange(40) != 2] * 2.0  # alpha * r, user 2 gone
    for u in range(len(X)):  # (Y^T C_u Y + lambda I) x_u = Y^T C_u p_u, C_u = 1 off the data
        c = np.where(C[u] > 0, C[u], 1.0)
        A = Y.T @ (c[:, None] * Y) + 0.3 * np.eye(5)
        b = Y.T @ (c * (C[u] > 0))
        np.testing.assert_allclose(X[u], np.linalg.solve(A, b), atol=2e-4)


def test_bad_files_are_named(tmp_path):
    np.savez(tmp_path / "x.npz", something=np.zeros(3))
    with pytest.raises(DataError, match=r"x\.npz"):
        from_implicit(tmp_path / "x.npz", _matrix())
    theirs = _fitted(use_cg=True)
    with pytest.raises(DataError, match="50 users"):
        from_implicit(theirs, sp.csr_matrix((50, 30)))


def test_data_as_interactions_with_row_number_ids_is_the_same_model():
    from recforget import Interactions

    theirs = _fitted(use_cg=True)
    coo = _matrix().tocoo()
    as_ids = from_implicit(theirs, Interactions.from_arrays(coo.row, coo.col, coo.data))
    as_matrix = from_implicit(theirs, _matrix())
    assert as_ids.seen_.fingerprint() == as_matrix.seen_.fingerprint()
    assert as_ids.seen_.shape == (40, 30)
    with pytest.raises(DataError, match="user id 40"):
        from_implicit(theirs, Interactions.from_arrays([40], [0], [1.0]))
