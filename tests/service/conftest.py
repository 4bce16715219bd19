"""Service fixtures: a tiny certified ALS model, and a database URL per backend.

PostgreSQL tests need ``RECFORGET_TEST_PG_URL`` (``make test`` starts a throw-away server with
``.ci/postgres.sh`` and sets it); each test gets a fresh database on that server.
"""

from __future__ import annotations

import os
import uuid

import numpy as np
import pytest

pytest.importorskip("sqlalchemy")
pytest.importorskip("cryptography")

PG_URL = os.environ.get("RECFORGET_TEST_PG_URL")
PG_SKIP = (
    "RECFORGET_TEST_PG_URL is not set: no PostgreSQL server for this run "
    "(`make test` starts one with .ci/postgres.sh)"
)
BACKENDS = [
    "sqlite",
    pytest.param("postgresql", marks=pytest.mark.skipif(not PG_URL, reason=PG_SKIP)),
]


def fresh_pg_database() -> tuple[str, str]:
    """Create an empty database on the test server; returns (url, name)."""
    import sqlalchemy as sa

    name = "rf_" + uuid.uuid4().hex[:12]
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    admin.dispose()
    return PG_URL.rsplit("/", 1)[0] + "/" + name, name


def drop_pg_database(name: str) -> None:
    import sqlalchemy as sa

    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.dispose()


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'service.db'}"
        return
    url, name = fresh_pg_database()
    yield url
    drop_pg_database(name)


def tiny_data(n_users: int = 40, n_items: int = 25, density: float = 0.25, seed: int = 0):
    """Random implicit data with string ids ("u7", "i3"), so raw ids are easy to look for."""
    from recforget.data.interactions import Interactions

    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < density
    mask[np.arange(n_users), rng.integers(0, n_items, n_users)] = True
    mask[rng.integers(0, n_users, n_items), np.arange(n_items)] = True
    u, i = np.nonzero(mask)
    return Interactions.from_arrays([f"u{x}" for x in u], [f"i{x}" for x in i])


@pytest.fixture(scope="session")
def tiny_model():
    from recforget import ALS

    return ALS(6, regularization=1.0, iterations=2000, grad_tol=1e-3, random_state=0).fit(
        tiny_data()
    )
