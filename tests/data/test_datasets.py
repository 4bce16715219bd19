"""Data sets: wheel fetching and caching (offline, with a fake wheel), synthetic generators."""

from __future__ import annotations

import dataclasses
import hashlib
import subprocess
import time
import zipfile

import numpy as np
import pytest

from recforget.data import DataError, block_diagonal, load, load_item_genres, synthetic
from recforget.data import datasets as ds

INTER = (
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\r\n"
    "1m_1\tToy Story (1995)\t5\t978300760\r\n"
    '1m_1\t"Great" Day (1990)\t3\t978302109\r\n'
    "1m_10\tToy Story (1995)\t4\t978301968\r\n"
)
ITEM = (
    "item_id:token\tmovie_title:token\trelease_year:float\tgenre:token\r\n"
    "Toy Story (1995)\tToy Story\t1995\tAnimation Children's Comedy\r\n"
    '"Great" Day (1990)\t"Great" Day\t1990\tDrama\r\n'
)


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A fake 'ml-1m' wheel in a cache folder, registered with its real sha256."""
    cache = tmp_path / "cache"
    cache.mkdir()
    wheel = cache / "fake-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("fake/ml-1m.inter", INTER)
        z.writestr("fake/ml-1m.item", ITEM)
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    source = ds.Source(
        "fake==0.1", wheel.name, digest, "fake/ml-1m.inter", "fake/ml-1m.item", "1m_"
    )
    monkeypatch.setitem(ds.SOURCES, "ml-1m", source)
    return cache


def test_load_from_wheel_and_cache(fake):
    data = load("ml-1m", cache_dir=fake)
    assert data.users.ids.tolist() == [1, 10]  # "1m_<id>" mapped back to ints
    assert data.items.ids.tolist() == ['"Great" Day (1990)', "Toy Story (1995)"]
    assert data.nnz == 3 and data.values.tolist() == [3.0, 5.0, 4.0]
    assert data.timestamps.tolist() == [978302109, 978300760, 978301968]
    assert (fake / "ml-1m.v1.npz").is_file()
    (fake / ds.SOURCES["ml-1m"].wheel).unlink()  # the second load needs only the parsed cache
    again = load("ml-1m", cache_dir=fake)
    assert again.fingerprint() == data.fingerprint()
    assert again.users == data.users and again.items == data.items
    np.testing.assert_array_equal(again.timestamps, data.timestamps)
    np.testing.assert_array_equal(load("ml-1m", cache_dir=fake, rating_col=None).values, 1.0)


def test_env_var_names_the_cache(fake, monkeypatch):
    monkeypatch.setenv("RECFORGET_DATA", str(fake))
    assert ds.cache_folder() == fake
    assert load("ml-1m").nnz == 3


def test_stale_cache_is_rebuilt(fake):
    (fake / "ml-1m.v1.npz").write_bytes(b"not a zip")
    assert load("ml-1m", cache_dir=fake).nnz == 3


def test_item_genres(fake):
    genres = load_item_genres("ml-1m", cache_dir=fake)
    assert genres["item"].tolist() == ["Toy Story (1995)", '"Great" Day (1990)']
    assert genres["genres"].tolist() == [["Animation", "Children's", "Comedy"], ["Drama"]]
    assert genres["title"].tolist() == ["Toy Story", '"Great" Day']


def test_checksum_mismatch(fake, monkeypatch):
    src = dataclasses.replace(ds.SOURCES["ml-1m"], sha256="0" * 64)
    monkeypatch.setitem(ds.SOURCES, "ml-1m", src)
    with pytest.raises(RuntimeError, match="sha256"):
        load("ml-1m", cache_dir=fake)


def test_download_failure_says_what_to_do(tmp_path, monkeypatch):
    def fail(cmd, **kw):
        assert cmd[1:4] == ["-m", "pip", "download"] and "recbole==1.2.1" in cmd
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution\n")

    monkeypatch.setattr(ds.subprocess, "run", fail)
    with pytest.raises(RuntimeError) as err:
        load("ml-100k", cache_dir=tmp_path)
    msg = str(err.value)
    assert "No matching distribution" in msg
    assert "recbole-1.2.1-py3-none-any.whl" in msg and "RECFORGET_DATA" in msg
    assert "read_movielens" in msg
    assert not list(tmp_path.iterdir())  # no debris left behind


def test_bad_inter_file_names_member_and_line(tmp_path, monkeypatch):
    wheel = tmp_path / "bad-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        text = (
            "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t2\t3\t9\n1\t3\tx\t9\n"
        )
        z.writestr("bad/x.inter", text)
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    monkeypatch.setitem(
        ds.SOURCES, "ml-100k", ds.Source("bad==0.1", wheel.name, digest, "bad/x.inter", "none")
    )
    with pytest.raises(DataError) as err:
        load("ml-100k", cache_dir=tmp_path)
    assert err.value.line == 3 and err.value.column == "rating"
    assert "bad/x.inter" in str(err.value)


def test_unknown_name():
    with pytest.raises(ValueError, match="ml-100k"):
        load("ml-20m")  # type: ignore[arg-type]


# ---------------------------------------------------------------------- real data


@pytest.mark.realdata
@pytest.mark.parametrize(
    ("name", "shape", "nnz", "n_catalogue"),
    [("ml-100k", (943, 1682), 100_000, 1682), ("ml-1m", (6040, 3706), 1_000_209, 3883)],
)
def test_real_movielens(name, shape, nnz, n_catalogue):
    t0 = time.perf_counter()
    data = load(name)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = load(name)
    cached = time.perf_counter() - t0
    print(f"{name}: first load {first:.2f}s, cached {cached:.3f}s")
    assert data.shape == shape and data.nnz == nnz and data.timestamps is not None
    assert again.fingerprint() == data.fingerprint()
    assert data.users.is_integer
    assert set(np.unique(data.values)) == {1.0, 2.0, 3.0, 4.0, 5.0}
    genres = load_item_genres(name)
    assert len(genres) == n_catalogue
    assert set(data.items.ids.tolist()) <= set(genres["item"].tolist())


# ---------------------------------------------------------------------- synthetic


@pytest.mark.parametrize("feedback", ["implicit", "explicit"])
def test_synthetic_is_seeded(feedback):
    a = synthetic(50, 30, rank=3, density=0.2, feedback=feedback, random_state=1)
    b = synthetic(50, 30, rank=3, density=0.2, feedback=feedback, random_state=1)
    c = synthetic(50, 30, rank=3, density=0.2, feedback=feedback, random_state=2)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    assert a.shape == (50, 30)
    assert (a.user_counts() >= 1).all()


def test_synthetic_implicit_has_fixed_user_degree():
    data = synthetic(40, 50, density=0.1, random_state=0)
    assert (data.user_counts() == 5).all()
    np.testing.assert_array_equal(data.values, 1.0)


def test_synthetic_explicit_is_low_rank_without_noise():
    rank = 3
    data = synthetic(60, 40, rank=rank, density=1.0, feedback="explicit", random_state=0)
    dense = data.to_csr().toarray()
    s = np.linalg.svd(dense, compute_uv=False)
    assert s[rank] < 1e-9 * s[0]
    noisy = synthetic(60, 40, rank=rank, density=1.0, noise=0.5, feedback="explicit")
    s = np.linalg.svd(noisy.to_csr().toarray(), compute_uv=False)
    assert s[rank] > 1e-3 * s[0]


def test_synthetic_validates():
    with pytest.raises(ValueError):
        synthetic(density=0)
    with pytest.raises(ValueError):
        synthetic(feedback="ratings")  # type: ignore[arg-type]


@pytest.mark.parametrize("density", [1.0, 0.3])
def test_block_diagonal(density):
    data = block_diagonal(3, 4, 5, density=density, random_state=0)
    assert data.shape == (12, 15)
    dense = data.to_csr().toarray() > 0
    ub = np.arange(12)[:, None] // 4
    ib = np.arange(15)[None, :] // 5
    assert not dense[ub != ib].any()  # nothing outside the blocks
    assert dense.any(axis=1).all() and dense.any(axis=0).all()
    if density == 1.0:
        assert dense[ub == ib].all()
    again = block_diagonal(3, 4, 5, density=density, random_state=0)
    assert again.fingerprint() == data.fingerprint()


def test_block_diagonal_drop_block_removes_its_items_signal():
    data = block_diagonal(2, 3, 4)
    left = data.drop_users([0, 1, 2])
    assert left.n_users == 3
    assert left.item_counts()[:4].sum() == 0 and (left.item_counts()[4:] == 3).all()
