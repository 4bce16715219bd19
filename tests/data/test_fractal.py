"""Fractal (Kronecker) expansion: shape, spectrum of the seed, block structure, degrees, seeds."""

from __future__ import annotations

import numpy as np
import pytest

from recforget import Interactions
from recforget.data import datasets
from recforget.data.fractal import _block_means, _polar, kronecker_expand, seed_matrix


def _heavy_tailed(m: int, n: int, seed: int) -> Interactions:
    """Implicit data with Zipf-like user activity and item popularity, and timestamps."""
    r = np.random.default_rng(seed)
    act = r.pareto(1.5, m) + 1
    pop = r.pareto(1.2, n) + 1
    p = np.minimum(1.0, 0.05 * np.outer(act, pop) / act.mean() / pop.mean())
    R = r.random((m, n)) < p
    R[np.arange(m), r.integers(0, n, m)] = True
    values = r.integers(1, 6, (m, n)).astype(float) * R
    data = Interactions.from_csr(values)
    return Interactions(
        data.indptr, data.indices, data.values, data.users, data.items, np.arange(data.nnz) * 7
    )


@pytest.fixture(scope="module")
def base() -> Interactions:
    return _heavy_tailed(120, 80, seed=3)


def _unnormalised_seed(data: Interactions, a: int, b: int) -> np.ndarray:
    """The seed before folding, from a dense SVD (independent of seed_matrix's svds path)."""
    U, s, Vt = np.linalg.svd(data.to_csr().toarray(), full_matrices=False)
    k = min(a, b)
    Ur = _polar(_block_means(U[:, :k], a))
    Vr = _polar(_block_means(Vt[:k].T, b))
    return Ur @ np.diag(s[:k]) @ Vr.T


def test_seed_matrix_keeps_the_top_singular_values(base):
    a, b = 4, 6
    S = _unnormalised_seed(base, a, b)
    s_data = np.linalg.svd(base.to_csr().toarray(), compute_uv=False)
    s_seed = np.linalg.svd(S, compute_uv=False)
    np.testing.assert_allclose(s_seed[: min(a, b)], s_data[: min(a, b)], rtol=1e-10)
    P = seed_matrix(base, (a, b), random_state=0)
    assert P.shape == (a, b) and P.min() >= 0 and P.max() == pytest.approx(1.0)
    np.testing.assert_allclose(P, np.abs(S) / np.abs(S).max(), rtol=1e-6, atol=1e-9)


def test_polar_factor_has_orthonormal_columns(rng):
    M = rng.standard_normal((9, 3))
    Q = _polar(M)
    np.testing.assert_allclose(Q.T @ Q, np.eye(3), atol=1e-12)
    # it is the closest such matrix: no random orthonormal matrix is closer
    for _ in range(20):
        Z, _ = np.linalg.qr(rng.standard_normal((9, 3)))
        assert np.linalg.norm(M - Q) <= np.linalg.norm(M - Z) + 1e-12


def test_shape_count_and_blocks(base):
    a, b = 3, 2
    out = kronecker_expand(base, (a, b), random_state=5)
    m, n = base.shape
    assert out.shape == (a * m, b * n)
    keep = np.clip(seed_matrix(base, (a, b), random_state=np.random.default_rng(5)), 0.01, 0.95)
    expected = sum(
        min(max(int(base.nnz * keep[p, q]), 1), base.nnz) for p in range(a) for q in range(b)
    )
    assert out.nnz == expected
    dense = out.to_csr().toarray()
    orig = base.to_csr().toarray()
    orig_rows = np.sort((orig != 0).sum(axis=1))
    for p in range(a):
        for q in range(b):
            block = dense[p * m : (p + 1) * m, q * n : (q + 1) * n]
            assert (block != 0).sum() == min(max(int(base.nnz * keep[p, q]), 1), base.nnz)
            # a thinned row/column shuffle of the data: row degrees dominated by the data's,
            # values a sub-multiset of the data's
            assert np.all(np.sort((block != 0).sum(axis=1)) <= orig_rows)
            got = np.bincount(block[block != 0].astype(int), minlength=6)
            assert np.all(got <= np.bincount(orig[orig != 0].astype(int), minlength=6))
    # timestamps are copied with their entries: every one is a real timestamp
    assert set(out.timestamps.tolist()) <= set(base.timestamps.tolist())


def test_degree_statistics_keep_their_shape():
    data = _heavy_tailed(400, 300, seed=11)
    out = kronecker_expand(data, (3, 3), random_state=0)
    rate = out.nnz / (9 * data.nnz)  # mean keep rate
    for got, ref, blocks in (
        (out.user_counts(), data.user_counts(), 3),
        (out.item_counts(), data.item_counts(), 3),
    ):
        # mean degree scales by (blocks x mean keep rate) exactly
        assert got.mean() == pytest.approx(blocks * rate * ref.mean(), rel=1e-12)
        # the spread relative to the mean (fat tail) is kept
        cv_got, cv_ref = got.std() / got.mean(), ref.std() / ref.mean()
        assert cv_got == pytest.approx(cv_ref, rel=0.35)

        # the heaviest rows stay heavy: the top 1% holds a similar share of the entries
        def top_share(c):
            c = np.sort(c)[::-1]
            return c[: max(1, len(c) // 100)].sum() / c.sum()

        assert top_share(got) == pytest.approx(top_share(ref), rel=0.5)


def test_deterministic_and_seeded(base):
    one = kronecker_expand(base, (2, 3), random_state=7)
    two = kronecker_expand(base, (2, 3), random_state=7)
    other = kronecker_expand(base, (2, 3), random_state=8)
    for name in ("indptr", "indices", "values", "timestamps"):
        np.testing.assert_array_equal(getattr(one, name), getattr(two, name))
    assert one.fingerprint() != other.fingerprint()


def test_expand_caches_and_keys_on_data_and_parameters(base, tmp_path):
    first = datasets.expand(base, (2, 2), random_state=1, cache_dir=tmp_path)
    files = list(tmp_path.glob("expand-*.npz"))
    assert len(files) == 1
    again = datasets.expand(base, (2, 2), random_state=1, cache_dir=tmp_path)
    assert again.fingerprint() == first.fingerprint()
    np.testing.assert_array_equal(again.timestamps, first.timestamps)
    datasets.expand(base, (2, 2), random_state=2, cache_dir=tmp_path)
    datasets.expand(base.with_values(np.ones(base.nnz)), (2, 2), random_state=1, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("expand-*.npz"))) == 3
    files[0].write_bytes(b"not an npz")  # a damaged cache is rebuilt, not trusted
    rebuilt = datasets.expand(base, (2, 2), random_state=1, cache_dir=tmp_path)
    assert rebuilt.fingerprint() == first.fingerprint()


@pytest.mark.parametrize("factors", [(0, 2), (2,), (1.5, 2), "ab", (True, 2)])
def test_bad_factors(base, factors):
    with pytest.raises(ValueError, match="factors"):
        kronecker_expand(base, factors, random_state=0)


def test_one_by_one_is_a_thinned_shuffle(base):
    out = kronecker_expand(base, (1, 1), random_state=0, max_keep=1.0)
    assert out.nnz == base.nnz
    assert np.array_equal(np.sort(out.user_counts()), np.sort(base.user_counts()))
    assert np.array_equal(np.sort(out.item_counts()), np.sort(base.item_counts()))


def test_unknown_name_lists_the_expansions():
    with pytest.raises(ValueError, match="ml-1m-x25"):
        datasets.load("ml-2m")


@pytest.mark.realdata
def test_ml_1m_x25(tmp_path_factory):
    data = datasets.load("ml-1m-x25")
    base = datasets.load("ml-1m")
    assert data.shape == (10 * base.n_users, 10 * base.n_items)
    assert data.nnz >= 25_000_000
