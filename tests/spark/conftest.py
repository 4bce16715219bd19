"""One SparkSession for the whole session (local[2], two shuffle partitions, UI off)."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from recforget import Interactions


@pytest.fixture(scope="session")
def spark():
    pytest.importorskip("pyspark")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("no JVM (java) on this machine")
    from recforget.spark.session import local_session

    session = local_session("local[2]", shuffle_partitions=2)
    yield session
    session.stop()


@pytest.fixture(scope="session")
def planted() -> Interactions:
    """Low-rank ratings 1..5 on a 30% support; non-contiguous ids; one user with nothing."""
    r = np.random.default_rng(0)
    U = r.standard_normal((50, 3))
    V = r.standard_normal((30, 3))
    mask = r.random((50, 30)) < 0.3
    R = np.where(mask, np.clip(np.round(U @ V.T + 3), 1, 5), 0)
    R[7] = 0
    return Interactions.from_csr(R, users=np.arange(50) * 3 + 11, items=np.arange(30) * 2 + 5)
