"""Crash trials: kill real worker and client processes at fault points, check invariants.

Used by ``tests/service/test_crash.py`` and ``benchmarks/crash_harness.py``. Children are real
processes (forked from the harness, so that a trial costs no interpreter start-up); they are
killed with SIGKILL (by a fault point or by the harness at a random moment) or frozen with
SIGSTOP past their lease and resumed. After each trial a fresh process recovers, and the
invariants are checked from the database and the files alone:

* every acknowledged request is COMPLETED, exactly once, with exactly one receipt;
* the serving version's directory is complete (every file matches its recorded sha256);
* ``audit`` passes: chains, signatures, fingerprints, no erased data in the store, the serving
  version covers every completed request and its certificate holds from scratch;
* a worker frozen past its lease never activates its version or writes a receipt.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from recforget.service import db
from recforget.service.core import DeletionService
from recforget.service.faults import ENV, POINTS
from recforget.service.states import State
from recforget.service.versions import VersionIntegrityError, verify_files
from recforget.service.worker import WorkerConfig

SUBMIT_POINTS = ("submit.after_commit", "delete.in_txn")
TRIAL_KINDS = (*POINTS, "random", "fenced")
GROUND = "GDPR Art. 17(1)(a)"


def tiny_service(home: Path, url: str, *, n_users=300, n_items=60, density=0.08, seed=0):
    """A service over a small random implicit data set and a certified ALS (about 1 s)."""
    from recforget import ALS
    from recforget.data.interactions import Interactions

    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < density
    mask[np.arange(n_users), rng.integers(0, n_items, n_users)] = True
    mask[rng.integers(0, n_users, n_items), np.arange(n_items)] = True
    u, i = np.nonzero(mask)
    data = Interactions.from_arrays([f"user{x}" for x in u], [f"item{x}" for x in i])
    model = ALS(6, regularization=1.0, iterations=2000, grad_tol=1e-3, random_state=seed)
    return DeletionService.init(home, model.fit(data), url=url)


# ---------------------------------------------------------------------------- children
def _worker_child(home: str, url: str, faults: str, lease: float, idle_exit: float) -> None:
    os.environ[ENV] = faults
    svc = DeletionService(home, url)
    cfg = WorkerConfig(window=0.0, poll=0.01, lease_seconds=lease)
    svc.worker(cfg).run(idle_exit=idle_exit)
    svc.close()


def _recover_child(home: str, url: str, lease: float, deadline: float) -> None:
    os.environ.pop(ENV, None)
    svc = DeletionService(home, url)
    cfg = WorkerConfig(window=0.0, poll=0.01, lease_seconds=lease)
    open_states = [
        s.value for s in (State.RECEIVED, State.DATA_DELETED, State.BUILDING, State.STAGED)
    ]
    while time.time() < deadline:
        svc.worker(cfg).run(idle_exit=0.2)
        with svc.engine.connect() as conn:
            left = conn.execute(
                sa.select(sa.func.count()).where(db.requests.c.state.in_(open_states))
            ).scalar_one()
        if not left:
            break
    svc.close()


def _submit_child(home: str, url: str, faults: str, specs: list, ack_path: str) -> None:
    from recforget import DeletionRequest

    os.environ[ENV] = faults
    svc = DeletionService(home, url)
    with open(ack_path, "a") as ack:
        for key, kind, subject in specs:
            req = (
                DeletionRequest(users=[subject])
                if kind == "user"
                else DeletionRequest(pairs=[tuple(subject)])
            )
            sub = svc.submit("harness", key, req, GROUND)
            ack.write(sub.request_id + "\n")  # acknowledged: the caller now knows the id
            ack.flush()
            os.fsync(ack.fileno())
    svc.close()


_CTX: dict[str, Any] = {}
START_METHOD = "forkserver"


def _context() -> Any:
    """How children start. "forkserver" (default): they fork from a clean interpreter that
    has imported recforget but run no threaded kernel (forking after GNU OpenMP started is
    unsafe). "fork": they fork from the harness itself, warm, which is safe only under numba's
    workqueue threading layer (``warm_up`` checks it)."""
    if START_METHOD not in _CTX:
        ctx = mp.get_context(START_METHOD)
        if START_METHOD == "forkserver":
            ctx.set_forkserver_preload(
                ["recforget.service.crashtest", "recforget.service._crash_warm"]
            )
            # the fork server inherits this environment: a fork-safe, warm threading layer
            saved = {k: os.environ.get(k) for k in ("NUMBA_THREADING_LAYER", "NUMBA_NUM_THREADS")}
            os.environ["NUMBA_THREADING_LAYER"] = "workqueue"
            os.environ["NUMBA_NUM_THREADS"] = "1"
            try:
                ctx.Process(target=_entry, args=("_noop", ())).start()  # starts the server
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
        _CTX[START_METHOD] = ctx
    return _CTX[START_METHOD]


def _noop() -> None:
    pass


def warm_up(svc: DeletionService) -> str:
    """Run every kernel and import every unlearning method once in this process; returns
    numba's threading layer (forking children from here needs "workqueue")."""
    import numba

    from recforget import DeletionRequest, forget

    _, model = svc.load_version()
    forget(model, DeletionRequest(users=[model.users_.ids[0]]), "unlearn-als-selective")
    svc.engine.dispose()
    return numba.threading_layer()


def _entry(name: str, args: tuple) -> None:
    code = 0
    try:
        globals()[name](*args)
    except BaseException:  # pragma: no cover - reported through the exit code
        import traceback

        traceback.print_exc()
        code = 3
    os._exit(code)


def _start(target, *args) -> mp.Process:
    p = _context().Process(target=_entry, args=(target.__name__, args), daemon=False)
    p.start()
    return p


def _wait(p: mp.Process, timeout: float) -> int:
    p.join(timeout)
    if p.is_alive():
        os.kill(p.pid, signal.SIGKILL)
        p.join()
        return -999  # hung
    return int(p.exitcode)


def _stopped(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"
    except (FileNotFoundError, IndexError):
        return False


# ---------------------------------------------------------------------------- one trial
def _pick_subjects(svc: DeletionService, rng: np.random.Generator, trial: int) -> list:
    t = db.interactions
    with svc.engine.connect() as conn:
        rows = conn.execute(sa.select(t.c.user_id, t.c.item_id)).all()
    users = sorted({u for u, _ in rows if u.startswith("user")})
    user = users[int(rng.integers(len(users)))]
    others = [r for r in rows if r[0] != user]
    pairs = [others[int(k)] for k in rng.choice(len(others), 2, replace=False)]
    return [
        (f"t{trial}-u", "user", user),
        (f"t{trial}-p0", "pair", list(pairs[0])),
        (f"t{trial}-p1", "pair", list(pairs[1])),
    ]


def run_trial(
    svc: DeletionService,
    kind: str,
    trial: int,
    rng: np.random.Generator,
    work: Path,
    *,
    lease: float = 0.5,
    worker_idle: float = 0.6,
) -> dict[str, Any]:
    """One trial of ``kind`` (a fault point, "random" or "fenced"); returns its findings."""
    home, url = str(svc.home), svc.url
    svc.ingest([(f"fresh{trial}", f"item{k}", 1.0) for k in range(3)])  # the store grows
    specs = _pick_subjects(svc, rng, trial)
    ack_path = work / f"ack-{trial}.txt"
    ack_path.write_text("")
    with svc.engine.connect() as conn:
        before = conn.execute(sa.select(sa.func.count()).select_from(db.receipts)).scalar_one()
    svc.engine.dispose()  # nothing shared across fork
    sub_faults = f"{kind}=kill" if kind in SUBMIT_POINTS else ""
    wrk_faults = ""
    if kind in POINTS and kind not in SUBMIT_POINTS:
        wrk_faults = f"{kind}=kill"
    elif kind == "fenced":
        wrk_faults = "complete.before_txn=stop"
    submitter = _start(_submit_child, home, url, sub_faults, specs, str(ack_path))
    worker = _start(_worker_child, home, url, wrk_faults, lease, worker_idle)
    out: dict[str, Any] = {"kind": kind, "trial": trial, "hit": False, "hung": 0}
    if kind == "random":
        kill_sub, kill_wrk = rng.uniform(0.0, 0.4), rng.uniform(0.05, 1.5)
        t0 = time.time()
        for delay, p in sorted([(kill_sub, submitter), (kill_wrk, worker)], key=lambda x: x[0]):
            time.sleep(max(0.0, t0 + delay - time.time()))
            if p.is_alive():
                os.kill(p.pid, signal.SIGKILL)
                out["hit"] = True
    fenced_token = None
    if kind == "fenced":
        deadline = time.time() + 30
        while time.time() < deadline and worker.is_alive() and not _stopped(worker.pid):
            time.sleep(0.01)
        if _stopped(worker.pid):
            out["hit"] = True
            with svc.engine.connect() as conn:
                fenced_token = conn.execute(
                    sa.select(db.leases.c.token).where(db.leases.c.name == "writer")
                ).scalar_one()
            svc.engine.dispose()
            _wait(submitter, 60)
            time.sleep(lease + 0.05)
            _wait(_start(_recover_child, home, url, lease, time.time() + 30), 60)
            os.kill(worker.pid, signal.SIGCONT)
    codes = [_wait(submitter, 60), _wait(worker, 60)]
    out["exit_codes"] = {"submitter": codes[0], "worker": codes[1]}
    out["hung"] = sum(c == -999 for c in codes)
    if kind in POINTS:
        out["hit"] = -signal.SIGKILL in codes
    _wait(_start(_recover_child, home, url, lease, time.time() + 60), 90)
    acked = [x for x in ack_path.read_text().split() if x]
    out.update(check(svc, acked, receipts_before=before, fenced_token=fenced_token))
    for who, code in out["exit_codes"].items():
        if code not in (0, -signal.SIGKILL):
            out["problems"].append(f"{who} exited with status {code}")
    out["child_errors"] = sum(c not in (0, -signal.SIGKILL) for c in codes)
    return out


def check(
    svc: DeletionService,
    acked: list[str],
    *,
    receipts_before: int = 0,
    fenced_token: int | None = None,
) -> dict[str, Any]:
    """The invariants, from the database and the files alone."""
    R, Q, E, V = db.receipts, db.requests, db.events, db.versions
    res: dict[str, Any] = {
        "acknowledged": len(acked),
        "completed": 0,
        "lost": 0,
        "double_applied": 0,
        "half_written_served": 0,
        "audit_failures": 0,
        "fenced_violations": 0,
        "problems": [],
    }
    with svc.engine.connect() as conn:
        for rid in acked:
            state = conn.execute(sa.select(Q.c.state).where(Q.c.id == rid)).scalar()
            n_receipts = conn.execute(
                sa.select(sa.func.count()).where(R.c.request_id == rid)
            ).scalar_one()
            n_done = conn.execute(
                sa.select(sa.func.count()).where(E.c.request_id == rid, E.c.kind == "completed")
            ).scalar_one()
            if state == State.COMPLETED.value and n_receipts == 1 and n_done == 1:
                res["completed"] += 1
            elif state != State.COMPLETED.value or n_receipts == 0:
                res["lost"] += 1
                res["problems"].append(f"acknowledged request {rid} ended {state}")
            if n_receipts > 1 or n_done > 1:
                res["double_applied"] += 1
        s = conn.execute(sa.select(db.serving)).one()
        sv = conn.execute(sa.select(V).where(V.c.id == s.version_id)).one()
        if fenced_token is not None:
            bad = conn.execute(
                sa.select(sa.func.count()).where(
                    V.c.lease_token == fenced_token, V.c.generation.is_not(None)
                )
            ).scalar_one()
            res["fenced_violations"] = int(bad)
    try:
        if sv.path.startswith(".tmp-"):
            raise VersionIntegrityError("serving a temporary directory")
        verify_files(svc.versions_dir / sv.path, json.loads(sv.files))
    except VersionIntegrityError as exc:
        res["half_written_served"] = 1
        res["problems"].append(str(exc))
    report = svc.audit()
    if not report["ok"]:
        res["audit_failures"] = 1
        res["problems"] += report["problems"]
    svc.engine.dispose()
    return res


def run(
    url: str,
    trials: int,
    work: Path,
    *,
    seed: int = 0,
    lease: float = 0.5,
    backend: str = "",
    progress: bool = False,
    start_method: str = "forkserver",
    worker_idle: float = 0.6,
) -> dict[str, Any]:
    """``trials`` trials cycling through every kind, on one growing service; the summary."""
    global START_METHOD
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    svc = tiny_service(work / "home", url, n_users=max(300, trials + 100), seed=seed)
    START_METHOD = start_method
    if start_method == "fork" and warm_up(svc) != "workqueue":
        raise RuntimeError("forking warm children needs NUMBA_THREADING_LAYER=workqueue")
    keys = (
        "acknowledged",
        "completed",
        "lost",
        "double_applied",
        "half_written_served",
        "audit_failures",
        "fenced_violations",
        "hung",
        "child_errors",
    )
    total: dict[str, Any] = {
        "backend": backend,
        "start_method": start_method,
        "trials": 0,
        **{k: 0 for k in keys},
    }
    points: dict[str, dict[str, int]] = {}
    problems: list[str] = []
    t0 = time.time()
    for k in range(trials):
        kind = TRIAL_KINDS[k % len(TRIAL_KINDS)]
        res = run_trial(svc, kind, k, rng, work, lease=lease, worker_idle=worker_idle)
        total["trials"] += 1
        p = points.setdefault(kind, {"trials": 0, "hit": 0, "lost": 0, "audit_failures": 0})
        p["trials"] += 1
        p["hit"] += int(res["hit"])
        p["lost"] += res["lost"]
        p["audit_failures"] += res["audit_failures"]
        for key in keys:
            total[key] += res.get(key, 0)
        problems += [f"trial {k} ({kind}): {x}" for x in res["problems"]]
        if progress:
            print(
                f"trial {k:4d} {kind:24s} hit={int(res['hit'])} lost={res['lost']} "
                f"audit={res['audit_failures']}",
                flush=True,
            )
    with svc.engine.connect() as conn:
        total["requests_in_ledger"] = conn.execute(
            sa.select(sa.func.count()).select_from(db.requests)
        ).scalar_one()
        total["versions"] = conn.execute(
            sa.select(sa.func.count()).select_from(db.versions)
        ).scalar_one()
    total["points"] = points
    total["problems"] = problems[:50]
    total["seconds"] = time.time() - t0
    svc.close()
    return total


__all__ = ["check", "run", "run_trial", "tiny_service"]
