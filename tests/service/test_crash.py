"""Crash safety with real processes killed by SIGKILL (or frozen by SIGSTOP past their lease).

The invariants are checked from the database and the files alone
(:func:`recforget.service.crashtest.check`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import sqlalchemy as sa

from recforget import DeletionRequest
from recforget.service import crashtest
from recforget.service import db as sdb
from recforget.service.faults import ENV, fault

CLI = [sys.executable, "-c", "from recforget.cli import main; main()"]


def _cli_worker(home, faults: str | None, timeout=120):
    env = {k: v for k, v in os.environ.items() if k != ENV}
    if faults:
        env[ENV] = faults
    return subprocess.run(
        [
            *CLI,
            "service",
            "worker",
            "--home",
            str(home),
            "--window",
            "0",
            "--lease",
            "5",
            "--idle-exit",
            "6",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow  # two interpreter start-ups per backend: ~20 s on a busy 2-core machine
def test_the_cli_worker_killed_mid_write_recovers_on_restart(tmp_path, db_url):
    svc = crashtest.tiny_service(tmp_path / "home", db_url, n_users=60, n_items=20, density=0.2)
    with svc.engine.connect() as conn:
        t = sdb.interactions
        item = conn.execute(sa.select(t.c.item_id).where(t.c.user_id == "user5")).scalars().first()
    acked = [
        svc.submit("c", "k1", DeletionRequest(users=["user3"]), "GDPR").request_id,
        svc.submit("c", "k2", DeletionRequest(pairs=[("user5", item)]), "GDPR").request_id,
    ]
    assert {svc.status(r)["state"] for r in acked} == {"DATA_DELETED"}
    svc.engine.dispose()
    # killed while writing the version: a temporary directory is left, nothing is served
    run = _cli_worker(tmp_path / "home", "build.mid_write=kill")
    assert run.returncode == -signal.SIGKILL, run.stderr
    assert "fault point build.mid_write: SIGKILL" in run.stderr
    leftovers = [p.name for p in svc.versions_dir.iterdir()]
    assert any(n.startswith(".tmp-") for n in leftovers)
    assert svc.serving()["id"] == 1
    assert {svc.status(r)["state"] for r in acked} == {"BUILDING"}
    with svc.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(sdb.receipts)).scalar() == 0
    # a clean restart recovers: everything acknowledged completes exactly once
    run = _cli_worker(tmp_path / "home", None)
    assert run.returncode == 0, run.stderr
    res = crashtest.check(svc, acked)
    assert res["completed"] == len(acked) == 2, res["problems"]
    assert res["lost"] == res["double_applied"] == res["half_written_served"] == 0
    assert res["audit_failures"] == 0, res["problems"]
    assert not any(p.name.startswith(".tmp-") for p in svc.versions_dir.iterdir())
    svc.close()


@pytest.fixture(scope="module")
def trial_service(tmp_path_factory):
    """One growing service for every trial (as the harness runs them)."""
    import numpy as np

    work = tmp_path_factory.mktemp("trials")
    svc = crashtest.tiny_service(work / "home", f"sqlite:///{work / 'service.db'}")
    yield svc, work, np.random.default_rng(1)
    svc.close()


QUICK = ("delete.in_txn", "build.mid_write", "complete.after_switch", "fenced")  # rest: slow


@pytest.mark.parametrize(
    "kind",
    [k if k in QUICK else pytest.param(k, marks=pytest.mark.slow) for k in crashtest.TRIAL_KINDS],
)
def test_one_trial_per_point_keeps_the_invariants(trial_service, kind):
    svc, work, rng = trial_service
    res = crashtest.run_trial(svc, kind, len(list(work.glob("ack-*"))), rng, work)
    assert res["hit"], f"the trial never reached {kind}: {res}"
    assert res["lost"] == 0 and res["double_applied"] == 0, res["problems"]
    assert res["half_written_served"] == 0 and res["audit_failures"] == 0, res["problems"]
    assert res["fenced_violations"] == 0 and res["hung"] == 0
    assert res["acknowledged"] == res["completed"]
    if kind not in crashtest.SUBMIT_POINTS and kind != "random":
        assert res["completed"] == 3, res


def test_fault_spec_is_validated(monkeypatch):
    monkeypatch.setenv(ENV, "nowhere=kill")
    with pytest.raises(ValueError, match="unknown fault point 'nowhere'"):
        fault("build.mid_write")
    monkeypatch.setenv(ENV, "build.mid_write=explode")
    with pytest.raises(ValueError, match="kill, stop or sleep"):
        fault("build.mid_write")
    monkeypatch.setenv(ENV, "build.mid_write=sleep:0")
    fault("build.mid_write")  # armed, harmless
    fault("delete.in_txn")  # not armed
