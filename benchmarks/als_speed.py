"""ALS fit speed, memory and accuracy against implicit==0.7.3, in one run, on the same data.

ML-1M (every rating an implicit positive), 80/20 random holdout, 64 factors, 15 iterations,
regularization 0.05, confidence c = 1 + 10 r for both libraries (implicit gets ``1 + 10 r`` as
its data with ``alpha=1``, which is the same objective), BLAS limited to one thread, both using
all cores for their row loops. Each fit runs in its own process so that peak memory (max RSS of
that process, data loading included) is measured per fit.

    python benchmarks/als_speed.py [--dataset ml-1m] [--factors 64] [--iterations 15]

Prints one JSON object, then a table.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

CONFIGS = ("recforget-cg", "implicit-cg", "recforget-cholesky", "implicit-cholesky")


def _data(dataset: str, seed: int):
    from recforget.data.split import random_holdout
    from recforget.evaluate.bench import prepare_data

    _, data = prepare_data(dataset)
    return random_holdout(data, 0.2, random_state=seed)


def _one(config: str, args: argparse.Namespace) -> dict:
    from recforget import ALS
    from recforget.evaluate.accuracy import evaluate_ranking

    train, test = _data(args.dataset, args.seed)
    solver = config.split("-")[1]
    if config.startswith("recforget"):
        ALS(args.factors, iterations=1, solver=solver, random_state=0).fit(train)  # JIT warm-up
        model = ALS(
            args.factors,
            regularization=args.regularization,
            alpha=args.alpha,
            iterations=args.iterations,
            solver=solver,
            random_state=args.seed,
        )
        start = time.perf_counter()
        model.fit(train)
        seconds = time.perf_counter() - start
    else:
        import implicit

        C = train.to_csr()
        C.data = 1.0 + args.alpha * C.data
        ext = implicit.cpu.als.AlternatingLeastSquares(
            factors=args.factors,
            regularization=args.regularization,
            alpha=1.0,
            iterations=args.iterations,
            use_cg=solver == "cg",
            random_state=args.seed,
        )
        import scipy.sparse as sp

        C = sp.csr_matrix(C).astype(np.float32)
        with threadpool_limits(1, "blas"):
            start = time.perf_counter()
            ext.fit(C, show_progress=False)
            seconds = time.perf_counter() - start
        model = ALS.from_factors(
            ext.user_factors,
            ext.item_factors,
            train,
            regularization=args.regularization,
            alpha=args.alpha,
        )
    metrics = evaluate_ranking(model, train, test, ks=(10,))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "config": config,
        "seconds": seconds,
        "peak_rss_mb": peak_mb,
        "auc": float(metrics["auc"]),
        "recall@10": float(metrics["recall@10"]),
        "ndcg@10": float(metrics["ndcg@10"]),
        "objective": float(model.loss()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-1m")
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=15)
    parser.add_argument("--regularization", type=float, default=0.05)
    parser.add_argument("--alpha", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--one", choices=CONFIGS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(_one(args.one, args)))
        return
    results = {}
    for config in CONFIGS:
        cmd = [sys.executable, __file__, "--one", config] + [
            f"--{k}={v}" for k, v in vars(args).items() if k != "one"
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results[config] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{config}: {results[config]['seconds']:.2f}s", file=sys.stderr)
    ratios = {
        solver: results[f"recforget-{solver}"]["seconds"] / results[f"implicit-{solver}"]["seconds"]
        for solver in ("cg", "cholesky")
    }
    auc_gap = {
        solver: results[f"recforget-{solver}"]["auc"] - results[f"implicit-{solver}"]["auc"]
        for solver in ("cg", "cholesky")
    }
    report = {
        "dataset": args.dataset,
        "factors": args.factors,
        "iterations": args.iterations,
        "regularization": args.regularization,
        "alpha": args.alpha,
        "results": results,
        "time_ratio_vs_implicit": ratios,
        "auc_gap_vs_implicit": auc_gap,
    }
    print(json.dumps(report, indent=2))
    print(f"\n{'config':<20}{'seconds':>9}{'peak MB':>9}{'AUC':>8}{'R@10':>8}{'NDCG@10':>9}")
    for r in results.values():
        print(
            f"{r['config']:<20}{r['seconds']:>9.2f}{r['peak_rss_mb']:>9.0f}{r['auc']:>8.4f}"
            f"{r['recall@10']:>8.4f}{r['ndcg@10']:>9.4f}"
        )
    for solver, ratio in ratios.items():
        print(
            f"{solver}: recforget/implicit time ratio {ratio:.2f}, AUC gap {auc_gap[solver]:+.4f}"
        )


if __name__ == "__main__":
    main()
