"""What a tighter certificate costs: Unlearn-ALS sweeps and row solves at each tolerance.

The same original and request as ``benchmarks/lira.py --model als`` (64 factors, the bench's
regularisation, alpha 10, ``grad_tol=1e-2``, seed 0, 80/20 holdout, request seed 1); each
certified method is run at its default tolerance (the model's ``grad_tol``) and at the given
tighter ones. Sweeps and rows solved do not depend on the machine's load; seconds do.

    python benchmarks/als_tolerance_cost.py [--dataset ml-1m] [--tol 0.003 --tol 0.001 ...]
        [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

METHODS = ("unlearn-als", "unlearn-als-selective")
REGULARIZATION = {"ml-100k": 60.0, "ml-1m": 100.0}


def main(argv: list[str] | None = None) -> int:
    from recforget.data.split import random_holdout
    from recforget.evaluate.bench import prepare_data
    from recforget.evaluate.scenarios import make_request
    from recforget.models.als import ALS
    from recforget.unlearn import forget

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="ml-1m", choices=["ml-100k", "ml-1m"])
    p.add_argument("--scenario", default="interactions:0.01")
    p.add_argument("--tol", type=float, action="append", help="tolerance (repeatable)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    tols = [None, *(args.tol or [3e-3, 1e-3, 1e-4])]
    _, data = prepare_data(args.dataset)
    train, _ = random_holdout(data, 0.2, random_state=0)
    model = ALS(
        64,
        regularization=REGULARIZATION[args.dataset],
        alpha=10.0,
        iterations=200,
        grad_tol=1e-2,
        random_state=0,
    )
    start = time.perf_counter()
    model.fit(train)
    out = {"dataset": args.dataset, "scenario": args.scenario, "threads": 1}
    out["fit_seconds"] = time.perf_counter() - start
    request = make_request(train, args.scenario, random_state=1)
    rows = []
    for method, tol in [("retrain", None)] + [(m, t) for m in METHODS for t in tols]:
        receipt = forget(model, request, method, **({} if tol is None else {"tol": tol})).receipt
        row = {
            "method": method,
            "tol": tol,
            "seconds": receipt["seconds"],
            "sweeps": receipt.get("sweeps"),
            "rows_solved": receipt.get("rows_solved"),
            "residual": receipt.get("certificate", {}).get("max_relative"),
        }
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    out["rows"] = rows
    text = json.dumps(out, indent=1)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
