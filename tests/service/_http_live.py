"""Live servers for the HTTP tests: ``recforget service serve`` in a subprocess on loopback.

Imported by the HTTP test modules (fixtures and helpers).

Each server runs over a service home made from the tiny model of ``tests/service/conftest.py``,
on SQLite or on a fresh PostgreSQL database (the same server the core's tests use, from
``RECFORGET_TEST_PG_URL``). Tests talk to it with httpx over a real socket; a worker, when a
test needs one, runs in the test process against the same database.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")


def _core_conftest():
    """The core tests' conftest (its PostgreSQL helpers), loaded by path under its own name."""
    import importlib.util

    path = Path(__file__).with_name("conftest.py")
    spec = importlib.util.spec_from_file_location("_service_conftest", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_core = _core_conftest()
BACKENDS, fresh_pg_database, drop_pg_database = (
    _core.BACKENDS,
    _core.fresh_pg_database,
    _core.drop_pg_database,
)
# for tests whose PostgreSQL run adds little (the logic under test is not the database's)
SQLITE_THEN_SLOW_PG = [
    "sqlite",
    pytest.param(
        "postgresql",
        marks=[pytest.mark.slow, pytest.mark.skipif(not _core.PG_URL, reason=_core.PG_SKIP)],
    ),
]

GROUND = "GDPR Art. 17(1)(b)"
CLI = [sys.executable, "-c", "from recforget.cli import main; main()"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Live:
    """A running server: its URL, tokens by role, its home and database, its log file."""

    base: str
    home: Path
    url: str
    log: Path
    proc: subprocess.Popen
    tokens: dict[str, str] = field(default_factory=dict)
    token_ids: dict[str, str] = field(default_factory=dict)

    def client(self, role: str | None = None, **kw) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[role]}"} if role else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=30, **kw)

    def service(self):
        from recforget.service import DeletionService

        return DeletionService(self.home, self.url)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


ROLES = {
    "admin": ("ops", ["admin"]),
    "crm": ("crm", ["submit", "read"]),
    "reader": ("crm", ["read"]),
    "submitter": ("crm2", ["submit"]),
    "other": ("other", ["submit", "read"]),
    "revoked": ("crm", ["submit", "read"]),
}


def start_server(home: Path, url: str, *, env: dict | None = None, args=()) -> Live:
    from recforget.service import DeletionService
    from recforget.service.http import tokens

    svc = DeletionService(home, url)
    live_tokens, ids = {}, {}
    for role, (client, scopes) in ROLES.items():
        ids[role], live_tokens[role] = tokens.create(svc.engine, client, scopes)
    tokens.revoke(svc.engine, ids["revoked"])
    svc.close()
    port = free_port()
    log = home / f"serve-{port}.log"
    cmd = [
        *CLI, "service", "serve", "--home", str(home), "--port", str(port),
        "--max-body", "65536", "--reload-poll", "0.1", "--heartbeat-stale", "5", *args,
    ]  # fmt: skip
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            cmd, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise RuntimeError(f"server did not start:\n{log.read_text()}")
        time.sleep(0.1)
    return Live(base, home, url, log, proc, live_tokens, ids)


def stop_server(live: Live) -> None:
    live.proc.send_signal(signal.SIGTERM)
    try:
        live.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        live.proc.kill()
        live.proc.wait()


def make_home(tmp: Path, backend: str, model):
    from recforget.service import DeletionService

    if backend == "sqlite":
        url, name = f"sqlite:///{tmp / 'service.db'}", None
    else:
        url, name = fresh_pg_database()
    DeletionService.init(tmp / "home", model, url=url).close()
    return tmp / "home", url, name


@pytest.fixture(scope="module", params=BACKENDS)
def live(request, tmp_path_factory, tiny_model):
    """One server per backend for a test module (tests use distinct subjects and keys)."""
    home, url, name = make_home(tmp_path_factory.mktemp(request.param), request.param, tiny_model)
    server = start_server(home, url)
    yield server
    stop_server(server)
    if name:
        drop_pg_database(name)


@pytest.fixture(params=BACKENDS)
def fresh_live(request, tmp_path, tiny_model):
    """Factory: a server of its own (for tests that break things), stopped afterwards."""
    started, names = [], []

    def make(**kw) -> Live:
        home, url, name = make_home(tmp_path / f"s{len(started)}", request.param, tiny_model)
        names.append(name)
        started.append(start_server(home, url, **kw))
        return started[-1]

    yield make
    for s in started:
        stop_server(s)
    for name in names:
        if name:
            drop_pg_database(name)


def drain(live: Live, **config) -> int:
    """Run a worker in this process until the queue is empty; returns requests completed."""
    from recforget.service import WorkerConfig

    svc = live.service()
    try:
        return svc.worker(WorkerConfig(window=0.0, poll=0.01, **config)).run(idle_exit=0.1)
    finally:
        svc.close()


def wait_for(pred, timeout: float = 30.0, what: str = "condition"):
    deadline = time.time() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
