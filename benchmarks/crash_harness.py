"""Crash harness for the deletion service: SIGKILL workers and clients, check the invariants.

    python benchmarks/crash_harness.py --backend sqlite|postgresql --trials N --json OUT

Each trial ingests fresh rows, submits three requests (a user, two pairs) from a client
process while a worker process runs, and kills one of them with SIGKILL at a named fault point
(every point in turn: see recforget.service.faults), at a random moment ("random": both
processes killed after random delays), or freezes the worker with SIGSTOP past its lease while
another worker takes over and then resumes it ("fenced"). A fresh process then recovers, and
the invariants are checked from the database and the files alone (recforget.service.crashtest).
All trials run on one growing service. PostgreSQL: --url, else RECFORGET_TEST_PG_URL (a fresh
database is created on that server for the run); .ci/postgres.sh starts a server.
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")  # children fork warm from here
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402


def _pg_database(url: str) -> tuple[str, str]:
    import sqlalchemy as sa

    name = "crash_" + uuid.uuid4().hex[:10]
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    admin.dispose()
    return url.rsplit("/", 1)[0] + "/" + name, name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", choices=["sqlite", "postgresql"], required=True)
    ap.add_argument("--trials", type=int, default=300)
    ap.add_argument("--json", dest="out", required=True)
    ap.add_argument("--url", default=None, help="PostgreSQL server URL (postgresql+psycopg://)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lease", type=float, default=1.0, help="worker lease seconds")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--progress", action="store_true")
    args = ap.parse_args()

    from recforget import __version__
    from recforget.service import crashtest

    work = Path(args.workdir or tempfile.mkdtemp(prefix="recforget-crash-"))
    if args.backend == "sqlite":
        url = f"sqlite:///{work / 'service.db'}"
    else:
        server = args.url or os.environ.get("RECFORGET_TEST_PG_URL")
        if not server:
            ap.error("postgresql needs --url or RECFORGET_TEST_PG_URL (see .ci/postgres.sh)")
        url, _ = _pg_database(server)
    t0 = time.time()
    summary = crashtest.run(
        url,
        args.trials,
        work,
        seed=args.seed,
        lease=args.lease,
        backend=args.backend,
        progress=args.progress,
        start_method="fork",
    )
    summary.update(
        {
            "command": "python benchmarks/crash_harness.py "
            f"--backend {args.backend} --trials {args.trials} --json {args.out}",
            "library_version": __version__,
            "seed": args.seed,
            "lease_seconds": args.lease,
            "wall_seconds": time.time() - t0,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, shared with other work",
            "invariants": [
                "every acknowledged request ends COMPLETED exactly once with one receipt",
                "the store holds none of the erased data (audit)",
                "the serving version covers every completed request and is never half-written",
                "receipt and event chains and signatures verify; serving certificate holds",
                "a worker frozen past its lease never activates its version",
            ],
        }
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")
    keys = (
        "trials",
        "acknowledged",
        "completed",
        "lost",
        "double_applied",
        "half_written_served",
        "audit_failures",
        "fenced_violations",
    )
    print(json.dumps({k: summary[k] for k in keys}))
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    bad = sum(
        summary[k]
        for k in (
            "lost",
            "double_applied",
            "half_written_served",
            "audit_failures",
            "fenced_violations",
            "hung",
            "child_errors",
        )
    )
    raise SystemExit(1 if bad else 0)


if __name__ == "__main__":
    main()
