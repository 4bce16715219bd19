"""Load test of the deletion service over HTTP on loopback: submitters and readers at once.

Server (``recforget service serve``) and worker (``recforget service worker``) run as
subprocesses over a service home holding an ALS model of MovieLens 1M (implicit, 64 factors,
certified to ``--tol``) and its 1M interactions in the store (SQLite by default, or ``--db``).
For ``--seconds``, N submitter threads send small deletion requests (a whole user, or 1 to 3
pairs of another user; every subject distinct, so each must complete) with unique
Idempotency-Keys, every fifth one sent twice (the replay must return the same request), at
``--think`` seconds between a submitter's requests; M readers fetch top-10 recommendations of
users no request touches, at ``--read-rate`` per reader. The readers run in a process of
their own (one asyncio loop, one keep-alive connection per reader, a small HTTP/1.1 client:
sending, parsing and the clock cost tens of microseconds a request), so the latency they
measure is the server's, not the wait for the load generator's own GIL behind its submitter
threads; each connects and sends one uncounted request before the clock starts.
``--serve-workers`` starts that many server processes. Then the run
waits (at most ``--drain`` s) for every acknowledged request to complete and checks the
ledger: lost (acknowledged, not COMPLETED), duplicated (a key with more than one request, a
replay answered with another id, more receipts than requests), latencies and batch sizes.
Bounded: at most ``--max-requests`` submissions and 127.0.0.1 only.

    flock /tmp/recforget-bench.lock python benchmarks/service_load.py --seconds 60 \\
        --submitters 8 --readers 8 --json benchmarks/results/service_load_ml-1m.json

One BLAS/numba thread per process (the machine is shared; the JSON records its cores).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[var] = "1"

import httpx  # noqa: E402
import numpy as np  # noqa: E402

GROUND = "GDPR Art. 17(1)(b)"
CLI = [sys.executable, "-c", "from recforget.cli import main; main()"]
HOST = "127.0.0.1"


def quantiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "max": None, "n": 0}
    a = np.asarray(values)
    return {
        "p50": float(np.percentile(a, 50)),
        "p99": float(np.percentile(a, 99)),
        "max": float(a.max()),
        "n": len(values),
    }


def model_for(args, cache: Path):
    """The ML-1M ALS model (fitted once per parameter set, then loaded from ``cache``)."""
    from recforget import ALS
    from recforget.evaluate.bench import prepare_data

    params = dict(
        factors=args.factors,
        regularization=args.regularization,
        alpha=args.alpha,
        iterations=200,
        grad_tol=args.tol,
        solver="cholesky",
        random_state=0,
    )
    key = "als-" + "-".join(f"{k}{v}" for k, v in sorted(params.items()))
    path = cache / key
    if (path / "config.json").exists():
        return ALS.load(path), 0.0
    _, data = prepare_data(args.dataset)
    t0 = time.perf_counter()
    model = ALS(**params).fit(data)
    seconds = time.perf_counter() - t0
    model.save(path)
    return model, seconds


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def plan_requests(model, n: int, seed: int) -> tuple[list[dict], list[str]]:
    """``n`` deletion bodies on distinct subjects, and users no request touches (readers)."""
    rng = random.Random(seed)
    users = [str(u) for u in model.users_.ids]
    rng.shuffle(users)
    cut = min(1000, len(users) // 4)
    readers_pool, rest = users[:cut], users[cut:]
    seen = model.seen_
    bodies = []
    for k in range(n):
        if not rest:
            break
        u = rest.pop()
        if k % 2 == 0:
            bodies.append({"users": [u], "legal_ground": GROUND})
        else:
            row = model.users_.index([u])[0]
            items = seen.items.ids[seen.indices[seen.indptr[row] : seen.indptr[row + 1]]]
            pick = rng.sample(list(items), min(len(items), rng.randint(1, 3)))
            bodies.append(
                {
                    "pairs": [{"user": u, "item": str(i)} for i in pick],
                    "legal_ground": GROUND,
                }
            )
    return bodies, readers_pool


async def _get(reader, writer, request: bytes) -> tuple[int, bytes]:
    """One keep-alive HTTP/1.1 exchange: (status, body); the response must carry a length."""
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = dict(
        (k.strip().lower(), v.strip()) for k, v in (x.split(":", 1) for x in lines[1:] if x)
    )
    body = await reader.readexactly(int(headers["content-length"]))
    if headers.get("connection", "").lower() == "close":
        raise ConnectionResetError("server closed the connection")
    return status, body


async def _read_loop(k, port, token, users, rate, t_start, t_end, seed, lat, status):
    """Reader ``k``: GET top-10 of a random user every ``1/rate`` s from ``t_start``."""
    rng = random.Random(seed)
    gap = 1.0 / rate
    # before the clock starts: connect, and one request (not counted) to warm the path
    conn = await asyncio.open_connection(HOST, port)
    warm = f"GET /v1/recommendations/{users[0]}?k=10 HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
    await _get(*conn, (warm + f"Authorization: Bearer {token}\r\n\r\n").encode())
    nxt = t_start + gap * rng.random()  # readers out of phase
    while True:
        delay = nxt - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if time.time() >= t_end:
            break
        path = f"/v1/recommendations/{rng.choice(users)}?k=10"
        req = (
            f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nAuthorization: Bearer {token}\r\n\r\n"
        ).encode()
        t = time.perf_counter()
        try:
            if conn is None:
                conn = await asyncio.open_connection(HOST, port)
            code, body = await _get(*conn, req)
            if code == 200 and len(json.loads(body)["items"]) != 10:
                code = -2  # an answer without its ten items does not count as one
        except (OSError, asyncio.IncompleteReadError, ValueError, KeyError):
            code = -1
            if conn is not None:
                conn[1].close()
            conn = None
        dt = time.perf_counter() - t
        status[code] = status.get(code, 0) + 1
        if code == 200:
            lat.append((time.time() - dt, dt * 1000))
        nxt += gap
    if conn is not None:
        conn[1].close()


def read_load(port, tokens_, users, rate, t_start, t_end, seed, out) -> None:
    """The readers' process: all readers on one event loop; results as JSON to ``out``."""
    lat: list[float] = []
    status: dict[int, int] = {}

    async def run():
        await asyncio.gather(
            *(
                _read_loop(k, port, tok, users, rate, t_start, t_end, -1 - k - seed, lat, status)
                for k, tok in enumerate(tokens_)
            )
        )

    asyncio.run(run())
    Path(out).write_text(json.dumps({"samples": sorted(lat), "status": status}))


def start(cmd, log: Path, env=None) -> subprocess.Popen:
    fh = open(log, "wb")
    return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--submitters", type=int, default=8)
    p.add_argument("--readers", type=int, default=8)
    p.add_argument("--json", dest="out", default=None)
    p.add_argument("--dataset", default="ml-1m")
    p.add_argument("--db", default=None, help="Database URL (default: SQLite in the home)")
    p.add_argument("--workdir", default="/tmp/recforget-service-load")
    p.add_argument("--factors", type=int, default=64)
    p.add_argument("--regularization", type=float, default=100.0)
    p.add_argument("--alpha", type=float, default=10.0)
    p.add_argument("--tol", type=float, default=1e-2)
    p.add_argument("--window", type=float, default=0.2, help="worker batch window (s)")
    p.add_argument("--think", type=float, default=1.0, help="s between a submitter's requests")
    p.add_argument("--read-rate", type=float, default=20.0, help="requests/s per reader")
    p.add_argument("--serve-workers", type=int, default=1, help="server processes")
    p.add_argument("--max-requests", type=int, default=2000)
    p.add_argument("--drain", type=float, default=120.0)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.seconds <= 0 or args.seconds > 900:
        p.error("--seconds must be in (0, 900]")

    from recforget.service import DeletionService
    from recforget.service.http import tokens

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    home = work / "home"
    if home.exists():
        shutil.rmtree(home)
    model, fit_seconds = model_for(args, work / "models")
    t0 = time.perf_counter()
    svc = DeletionService.init(home, model, url=args.db)
    init_seconds = time.perf_counter() - t0
    _, admin = tokens.create(svc.engine, "load-ops", ["admin"])
    client_tokens = [
        tokens.create(svc.engine, f"load-{k}", ["submit", "read"])[1]
        for k in range(args.submitters + args.readers)
    ]
    bodies, reader_users = plan_requests(model, args.max_requests, args.seed)
    del model

    env = dict(os.environ)
    port = free_port()
    base = f"http://{HOST}:{port}"
    server = start(
        [*CLI, "service", "serve", "--home", str(home), "--host", HOST, "--port", str(port),
         "--reload-poll", "0.2", "--log-level", "warning", "--workers", str(args.serve_workers)],
        work / "serve.log", env,
    )  # fmt: skip
    worker = start(
        [*CLI, "service", "worker", "--home", str(home), "--window", str(args.window)],
        work / "worker.log",
        env,
    )
    procs = [server, worker]
    result: dict = {}
    try:
        deadline = time.time() + 120
        while True:
            try:
                if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.time() > deadline or server.poll() is not None or worker.poll() is not None:
                raise RuntimeError("server or worker did not become ready; see " + str(work))
            time.sleep(0.2)
        # warm-up: one request end to end (the worker's first pass compiles its kernels)
        adm = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {admin}"}, timeout=60)
        warm = adm.post(
            "/v1/deletions", json=bodies.pop(), headers={"Idempotency-Key": "warm-up"}
        ).json()["request_id"]
        t_warm = time.perf_counter()
        while adm.get(f"/v1/deletions/{warm}").json()["state"] != "COMPLETED":
            if time.perf_counter() - t_warm > 300:
                raise RuntimeError("warm-up request did not complete")
            time.sleep(0.1)
        warm_seconds = time.perf_counter() - t_warm

        stop = threading.Event()
        lock = threading.Lock()
        acked: dict[str, str] = {}  # idempotency key -> request id
        replay_mismatch: list[str] = []
        errors: list[str] = []
        submitted = [0]
        queue = list(reversed(bodies))

        def submitter(k: int) -> None:
            rng = random.Random(args.seed * 1000 + k)
            c = httpx.Client(
                base_url=base, headers={"Authorization": f"Bearer {client_tokens[k]}"}, timeout=30
            )
            n = 0
            while not stop.is_set():
                with lock:
                    if not queue:
                        return
                    body = queue.pop()
                    submitted[0] += 1
                key = f"s{k}-{n}"
                n += 1
                for attempt in range(2 if n % 5 == 0 else 1):
                    try:
                        r = c.post("/v1/deletions", json=body, headers={"Idempotency-Key": key})
                    except httpx.TransportError as exc:
                        errors.append(f"{key}: {type(exc).__name__}")
                        continue
                    if r.status_code != 202:
                        errors.append(f"{key}: HTTP {r.status_code} {r.text[:200]}")
                        continue
                    rid = r.json()["request_id"]
                    with lock:
                        if key in acked and acked[key] != rid:
                            replay_mismatch.append(key)
                        acked.setdefault(key, rid)
                    if attempt and r.headers.get("idempotent-replayed") != "true":
                        replay_mismatch.append(key)
                stop.wait(args.think * rng.uniform(0.5, 1.5))
            c.close()

        reads_out = work / "readers.json"
        reads_out.unlink(missing_ok=True)
        t_start = time.time() + 3.0  # the reader process is up (spawned) by then
        readers = multiprocessing.get_context("spawn").Process(
            target=read_load,
            args=(
                port,
                client_tokens[args.submitters :],
                reader_users,
                args.read_rate,
                t_start,
                t_start + args.seconds,
                args.seed,
                str(reads_out),
            ),
        )
        readers.start()
        threads = [threading.Thread(target=submitter, args=(k,)) for k in range(args.submitters)]
        time.sleep(max(0.0, t_start - time.time()))
        t_load = time.time()
        for t in threads:
            t.start()
        stop.wait(args.seconds)
        stop.set()
        for t in threads:
            t.join(60)
        readers.join(60)
        load_seconds = time.time() - t_load
        got = json.loads(reads_out.read_text())
        rec_lat = [ms for _, ms in got["samples"]]  # (start time, ms), kept in the workdir
        rec_status = {int(c): n for c, n in got["status"].items()}

        # drain: every acknowledged request must complete
        ids = set(acked.values())
        R = None
        deadline = time.time() + args.drain
        import sqlalchemy as sa

        from recforget.service import db as sdb

        while True:
            with svc.engine.connect() as conn:
                R = sdb.requests
                rows = conn.execute(sa.select(R)).all()
            states = {r.id: r.state for r in rows}
            if all(states.get(i) in ("COMPLETED", "REJECTED", "FAILED") for i in ids):
                break
            if time.time() > deadline:
                break
            time.sleep(0.5)
        drain_seconds = time.time() - t_load - load_seconds
        with svc.engine.connect() as conn:
            rows = conn.execute(sa.select(sdb.requests)).all()
            receipts = conn.execute(sa.select(sdb.receipts.c.request_id, sdb.receipts.c.body)).all()
        by_id = {r.id: r for r in rows}
        mine = [by_id[i] for i in ids if i in by_id]
        lost = sum(1 for i in ids if i not in by_id or by_id[i].state != "COMPLETED")
        keys = {}
        for r in rows:
            keys[(r.client, r.idempotency_key)] = keys.get((r.client, r.idempotency_key), 0) + 1
        per_request = {}
        batches = {}
        for rid, body in receipts:
            per_request[rid] = per_request.get(rid, 0) + 1
            b = json.loads(body)["batch"]
            batches[b["id"]] = b["size"]
        duplicated = (
            sum(n - 1 for n in keys.values() if n > 1)
            + len(set(replay_mismatch))
            + sum(n - 1 for n in per_request.values() if n > 1)
        )
        completion = [
            (r.completed_at - r.received_at) * 1000 for r in mine if r.state == "COMPLETED"
        ]
        t_audit = time.perf_counter()
        audit = svc.audit()
        sizes = sorted(batches.values())
        result = {
            "seconds": round(load_seconds, 3),
            "submitters": args.submitters,
            "readers": args.readers,
            "submitted": submitted[0],
            "acknowledged": len(ids),
            "completed": sum(1 for r in mine if r.state == "COMPLETED"),
            "rejected": sum(1 for r in mine if r.state == "REJECTED"),
            "failed": sum(1 for r in mine if r.state == "FAILED"),
            "lost": lost,
            "duplicated": duplicated,
            "replays_sent": sum(1 for k in acked if int(k.split("-")[1]) % 5 == 4),
            "submit_errors": errors[:20],
            "completion_latency_ms": quantiles(completion),
            "recommend_latency_ms": quantiles(rec_lat),
            "recommend_status": {str(k): v for k, v in sorted(rec_status.items())},
            "recommend_rate_per_s": round(len(rec_lat) / load_seconds, 1),
            "batch_sizes": {
                "batches": len(sizes),
                "mean": float(np.mean(sizes)) if sizes else None,
                "max": max(sizes) if sizes else None,
                "all": sizes,
            },
            "drain_seconds": round(drain_seconds, 3),
            "audit_ok": audit["ok"],
            "audit_problems": audit["problems"][:10],
            "audit_seconds": round(time.perf_counter() - t_audit, 3),
            "warmup_completion_seconds": round(warm_seconds, 3),
            "setup": {
                "dataset": args.dataset,
                "interactions": int(svc.serving()["watermark"]),
                "backend": svc.url.split(":")[0],
                "fit_seconds": round(fit_seconds, 3),
                "init_seconds": round(init_seconds, 3),
                "factors": args.factors,
                "tol": args.tol,
                "window": args.window,
                "think": args.think,
                "read_rate": args.read_rate,
                "method": "unlearn-als-selective",
                "serve_workers": args.serve_workers,
                "readers": "own process, asyncio, one keep-alive connection each",
            },
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "threads_per_process": 1,
                "shared": "other work ran on the same machine during this run",
            },
        }
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        svc.close()
    text = json.dumps(result, indent=1)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    print(text)
    return result


if __name__ == "__main__":
    main()
