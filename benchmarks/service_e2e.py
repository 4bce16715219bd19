"""End to end through the deletion service on ML-1M: submit -> COMPLETED with a verifying receipt.

    python benchmarks/service_e2e.py --json benchmarks/results/service_e2e_ml-1m.json

Fits the benchmark's ALS on all of ML-1M (implicit), initialises a service (SQLite, the
default) with it, starts ``recforget service worker`` as a separate process at the default
batch window, forgets one warm-up request (the worker loads and verifies the serving version
and rebuilds its data from the store), then times ``--requests`` sequential requests from
``submit`` to COMPLETED as a client sees it (polling the ledger), verifying each receipt's
Ed25519 signature and certificate; finally ``audit`` re-verifies everything.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

PARAMS = dict(  # the ALS benchmark's ML-1M parameters (benchmarks/results/als_unlearn_ml-1m.json)
    factors=64,
    regularization=100.0,
    alpha=10.0,
    iterations=200,
    grad_tol=0.01,
    solver="cholesky",
    random_state=0,
)


def _wait(svc, rid: str, timeout: float) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        st = svc.status(rid)
        if st["state"] in ("COMPLETED", "REJECTED", "FAILED"):
            return st
        time.sleep(0.005)
    raise TimeoutError(f"request {rid} not finished after {timeout} s: {svc.status(rid)['state']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", dest="out", required=True)
    ap.add_argument("--requests", type=int, default=10)
    ap.add_argument("--window", type=float, default=0.2, help="worker batch window (default)")
    ap.add_argument("--dataset", default="ml-1m", choices=["ml-100k", "ml-1m"])
    ap.add_argument("--db", default=None, help="database URL (default: SQLite in the home)")
    args = ap.parse_args()

    from recforget import ALS, DeletionRequest, __version__
    from recforget.data import datasets
    from recforget.service import DeletionService
    from recforget.service.receipts import verify_signature

    data = datasets.load(args.dataset)
    data = data.with_values(np.ones(data.nnz))
    t0 = time.perf_counter()
    model = ALS(**PARAMS).fit(data)
    fit_s = time.perf_counter() - t0
    home = Path(tempfile.mkdtemp(prefix="recforget-e2e-"))
    t0 = time.perf_counter()
    svc = DeletionService.init(home / "svc", model, url=args.db)
    init_s = time.perf_counter() - t0
    worker = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from recforget.cli import main; main()",
            "service",
            "worker",
            "--home",
            str(home / "svc"),
            "--window",
            str(args.window),
        ],
        stderr=subprocess.DEVNULL,
    )
    try:
        rng = np.random.default_rng(0)
        users = rng.choice(data.users.ids, args.requests + 1, replace=False)
        t0 = time.perf_counter()
        first = svc.submit("bench", "warm-up", DeletionRequest(users=[users[0]]), "GDPR Art. 17")
        _wait(svc, first.request_id, 600)
        warm_s = time.perf_counter() - t0
        key = svc.public_key()
        runs = []
        for n, user in enumerate(users[1:]):
            if n % 2:  # alternate whole users and single interactions
                row = data.indptr[data.users.index([user])[0]]
                req = DeletionRequest(pairs=[(user, data.items.ids[data.indices[row]])])
            else:
                req = DeletionRequest(users=[user])
            t0 = time.perf_counter()
            sub = svc.submit("bench", f"r{n}", req, "GDPR Art. 17(1)(b)")
            ack = time.perf_counter() - t0
            st = _wait(svc, sub.request_id, 120)
            total = time.perf_counter() - t0
            rc = st["receipt"]
            body = rc["receipt"]
            runs.append(
                {
                    "kind": "pair" if req.pairs else "user",
                    "state": st["state"],
                    "seconds_submit_to_completed": total,
                    "seconds_to_ack": ack,
                    "unlearn_seconds": body["timings"]["unlearn_seconds"],
                    "build_seconds": body["timings"]["build_seconds"],
                    "batch_size": body["batch"]["size"],
                    "certified": body["certified"],
                    "max_relative_gradient": body["certificate"]["max_relative"],
                    "signature_valid": verify_signature(
                        key["public_key"], rc["hash"], rc["signature"]
                    ),
                    "rows_solved": body["rows_solved"],
                }
            )
        t0 = time.perf_counter()
        report = svc.audit()
        audit_s = time.perf_counter() - t0
    finally:
        worker.terminate()
        worker.wait(30)
    lat = np.array([r["seconds_submit_to_completed"] for r in runs])
    out = {
        "command": f"python benchmarks/service_e2e.py --dataset {args.dataset} --json {args.out} "
        f"--requests {args.requests} --window {args.window}",
        "dataset": args.dataset,
        "n_users": data.n_users,
        "n_items": data.n_items,
        "nnz": data.nnz,
        "params": PARAMS,
        "database": svc.url.split("://")[0],
        "batch_window_s": args.window,
        "fit_seconds": fit_s,
        "init_seconds": init_s,
        "warm_up_request_seconds": warm_s,
        "requests": len(runs),
        "all_completed_verified": all(
            r["state"] == "COMPLETED" and r["certified"] and r["signature_valid"] for r in runs
        ),
        "submit_to_completed_s": {
            "median": float(np.median(lat)),
            "max": float(lat.max()),
            "min": float(lat.min()),
            "mean": float(lat.mean()),
        },
        "under_2s": bool(lat.max() < 2.0),
        "audit_ok": report["ok"],
        "audit_problems": report["problems"],
        "audit_seconds": audit_s,
        "runs": runs,
        "library_version": __version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, shared with other work; "
        "one BLAS/numba thread",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(
        json.dumps(
            {
                k: out[k]
                for k in (
                    "requests",
                    "all_completed_verified",
                    "submit_to_completed_s",
                    "under_2s",
                    "audit_ok",
                )
            }
        )
    )
    svc.close()
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
