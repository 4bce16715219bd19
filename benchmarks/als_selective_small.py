"""Small requests from a certified original: the deleted pairs' gap each method closes.

One original at the bench's default certificate (64 factors, the bench's regularisation,
alpha 10, ``grad_tol=1e-4``, seed 0, 80/20 holdout); for each request seed, a request of
``--scenario`` pairs, the retrain at the model's rule, ``unlearn-als`` at it, and
``unlearn-als-selective`` at it and at the tighter ``--selective-tol`` values. ``gap_closed``
is the share of the original-to-retrain gap in the deleted pairs' mean score. Sweeps and rows
solved do not depend on the machine's load; seconds do.

    python benchmarks/als_selective_small.py [--dataset ml-1m] [--scenario interactions:200]
        [--seeds 1,2] [--selective-tol 3e-5 --selective-tol 1e-5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

REGULARIZATION = {"ml-100k": 60.0, "ml-1m": 100.0}


def main(argv: list[str] | None = None) -> int:
    from recforget.data.split import random_holdout
    from recforget.evaluate.bench import prepare_data
    from recforget.evaluate.scenarios import make_request
    from recforget.models.als import ALS
    from recforget.unlearn import forget

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="ml-1m", choices=["ml-100k", "ml-1m"])
    p.add_argument("--scenario", default="interactions:200")
    p.add_argument("--tol", type=float, default=1e-4, help="the original's grad_tol")
    p.add_argument("--seeds", default="1,2", help="request seeds")
    p.add_argument("--selective-tol", type=float, action="append", help="repeatable")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    _, data = prepare_data(args.dataset)
    train, _ = random_holdout(data, 0.2, random_state=0)
    reg = REGULARIZATION[args.dataset]
    model = ALS(64, regularization=reg, alpha=10.0, iterations=200, grad_tol=args.tol)
    model.set_params(random_state=0).fit(train)
    runs = [("unlearn-als", args.tol), ("unlearn-als-selective", args.tol)]
    runs += [("unlearn-als-selective", t) for t in args.selective_tol or [3e-5, 1e-5]]
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        request = make_request(train, args.scenario, random_state=seed)
        pairs = request.pairs
        before = _deleted_score(model, pairs)
        start = time.perf_counter()
        oracle = forget(model, request, "retrain")
        retrain_seconds = time.perf_counter() - start
        gap = before - _deleted_score(oracle.model, pairs)
        for method, tol in runs:
            start = time.perf_counter()
            r = forget(model, request, method, tol=tol)
            row = {
                "seed": seed,
                "pairs": len(request.pairs),
                "method": method,
                "tol": tol,
                "gap_closed": (before - _deleted_score(r.model, pairs)) / gap,
                "seconds": time.perf_counter() - start,
                "sweeps": r.receipt.get("sweeps"),
                "rows_solved": r.receipt.get("rows_solved"),
                "certified": r.receipt.get("certified"),
                "retrain_seconds": retrain_seconds,
                "retrain_sweeps": oracle.receipt.get("sweeps"),
            }
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    out = {"dataset": args.dataset, "scenario": args.scenario, "tol": args.tol, "rows": rows}
    text = json.dumps(out, indent=1)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    else:
        print(text)
    return 0


def _deleted_score(model, pairs) -> float:
    """Mean score of the deleted pairs."""
    import numpy as np

    users = [u for u, _ in pairs]
    items = [i for _, i in pairs]
    return float(np.mean(model.score(users, items)))


if __name__ == "__main__":
    sys.exit(main())
