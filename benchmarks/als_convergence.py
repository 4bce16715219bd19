"""Sweeps and seconds to certify, plain ALS sweeps against accelerated ones (ALS-NCG, Anderson).

    python benchmarks/als_convergence.py --dataset ml-100k --json OUT.json [--regs 0.01,1,60]
        [--tols 1e-2,1e-3,1e-4] [--tasks fit,retrain,unlearn-1pct,unlearn-user,
        unlearn-1pct-from-implicit] [--drivers plain,ncg,anderson] [--max-sweeps 1000]
        [--cache DIR] [--plots DIR]
    python benchmarks/als_convergence.py --table OUT1.json [OUT2.json ...] [--plots DIR]

For every regularisation: fit ALS (64 factors, c = 1 + 10 r, Cholesky rows) on an 80/20
holdout to the tightest tolerance with each driver (task ``fit``); the accelerated fit that
reaches the lowest residual is the original model. Then, with each driver, the retrain
oracle and Unlearn-ALS (full sweeps, CG rows, the method's default) on a random 1% of the
interactions (``retrain``, ``unlearn-1pct``) and on one random user (``unlearn-user``), and
Unlearn-ALS on the 1% from factors fitted by implicit 0.7.3 for 15 iterations with the same
objective (``unlearn-1pct-from-implicit``, wrapped with ``ALS.from_factors``). Full-sweep runs
go once to the tightest tolerance; the row for a looser tolerance is the point of that run's
certificate trace where it first held (the sweeps do not depend on the tolerance, only the
stop does; ``from_trace`` marks these rows). Unlearn-ALS-selective depends on the tolerance
and runs once per tolerance (``method`` "unlearn-als-selective"; "plain" never hands over to
full sweeps). ``gap_closed`` is the share of the original-to-retrain gap in the deleted
pairs' mean score that a run closes (reference: the accelerated retrain at the tightest
tolerance). A driver spelled ``NAME+fixed`` (``plain+fixed``, ``anderson+fixed``) runs
Unlearn-ALS with the classic inexact rows, ``cg_steps`` (3) CG iterations on every row
(``inner_tol=None``; method label ``unlearn-als/fixed-cg``), instead of the default rows solved
to 0.1 times the tolerance; ``NAME+forcing`` solves them with the forcing term 0.1 (method
label ``unlearn-als/forcing``: each sweep cuts a row's residual tenfold, never past 0.1 times
the tolerance); ``anderson+sweep`` runs Anderson with the old safeguard (a refused step takes
the plain sweep's output, not the line search's point; label suffix ``/sweep-safeguard``);
``NAME+nofinish`` turns off the selective finish (``run_sweeps(finish=0)``: full sweeps until
certified; label suffix ``/no-finish``); ``anderson+fitall`` fits Anderson's mixing weights to
the residual of all factors, the rule before round 30, instead of the items' part (label
suffix ``/fit-all``).
Suffixes combine (``anderson+fixed+sweep``). Timings are under one BLAS and one numba thread.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

TASKS = ("fit", "retrain", "unlearn-1pct", "unlearn-user", "unlearn-1pct-from-implicit")
BENCH_REG = {"ml-100k": 60.0, "ml-1m": 100.0}  # recforget bench's default regularisation
COLUMNS = ("dataset", "regularization", "task", "method", "tol", "driver", "sweeps", "seconds")


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


FIXED = "+fixed"  # driver suffix: Unlearn-ALS's CG rows take a fixed cg_steps (inner_tol=None)
FORCING = "+forcing"  # ... rows solved with the forcing term FORCING_ETA (see unlearn_als)
SWEEP = "+sweep"  # ... Anderson's refused steps fall back to the plain sweep (the old safeguard)
NOFINISH = "+nofinish"  # ... no selective finish: full sweeps until certified (as before round 28)
FITALL = "+fitall"  # ... Anderson's weights fit all factors' residual (as before round 30)
SUFFIXES = (FIXED, FORCING, SWEEP, NOFINISH, FITALL)
DRIVERS = ("plain", "ncg", "anderson")  # the names the suffixes follow
FORCING_ETA = 0.1


def _strip(driver: str) -> str:
    """The driver's name without its suffixes, whatever their order."""
    return driver.split("+", 1)[0]


def _acc(driver: str) -> str | None:
    name = _strip(driver)
    return None if name == "plain" else name


def _rows_opts(driver: str, method: str) -> tuple[str, dict]:
    """``(method label, options)`` for a driver's suffixes (none: the method's defaults)."""
    label, opts = method, {}
    if FIXED in driver:
        label, opts["inner_tol"] = f"{label}/fixed-cg", None
    if FORCING in driver:
        label, opts["forcing"] = f"{label}/forcing", FORCING_ETA
    if SWEEP in driver:
        label = f"{label}/sweep-safeguard"
    if NOFINISH in driver:
        label = f"{label}/no-finish"
    if FITALL in driver:
        label = f"{label}/fit-all"
    return label, opts


@contextmanager
def _driver_defaults(driver: str):
    """Anderson's old safeguard (refusals take the plain sweep) for a "+sweep" driver, no
    selective finish for a "+nofinish" one, and weights fitted to all factors for "+fitall"."""
    from recforget.models import _als_sweeps as S

    old = S.DEFAULT_SAFEGUARD, S.FINISH_FRACTION, S.DEFAULT_ANDERSON_FIT
    S.DEFAULT_SAFEGUARD = "sweep" if SWEEP in driver else old[0]
    S.FINISH_FRACTION = 0.0 if NOFINISH in driver else old[1]
    S.DEFAULT_ANDERSON_FIT = "all" if FITALL in driver else old[2]
    try:
        yield
    finally:
        S.DEFAULT_SAFEGUARD, S.FINISH_FRACTION, S.DEFAULT_ANDERSON_FIT = old


def _rows_from_trace(base: dict, trace: list[dict], tols: list[float], total: float) -> list[dict]:
    """One row per tolerance: the first point of ``trace`` certified at it."""
    out = []
    for tol in tols:
        hit = next((p for p in trace if p["max_relative"] <= tol), None)
        last = trace[-1] if trace else {"sweep": 0, "seconds": 0.0, "max_relative": None}
        point = hit or last
        out.append(
            {
                **base,
                "tol": tol,
                "sweeps": int(point["sweep"]),
                "seconds": float(point["seconds"]) if hit else float(total),
                "certified": hit is not None,
                "residual": point["max_relative"],
                "from_trace": tol != min(tols),
            }
        )
    return out


def _deleted_score(model, request) -> float | None:
    if not request.pairs:
        return None
    u, i = zip(*request.pairs, strict=True)
    return float(np.mean(model.score(list(u), list(i))))


def _implicit_factors(train, params: dict, seed: int):
    """Factors of implicit 0.7.3 fitted 15 iterations on the same objective (c = 1 + alpha r)."""
    import scipy.sparse as sp
    from implicit.cpu.als import AlternatingLeastSquares

    C = sp.csr_matrix(train.to_csr().astype(np.float32))
    C.data = 1.0 + params["alpha"] * C.data  # implicit's Cui is the confidence itself
    model = AlternatingLeastSquares(
        factors=params["factors"],
        regularization=params["regularization"],
        alpha=1.0,
        iterations=15,
        random_state=seed,
        num_threads=1,
    )
    model.fit(C, show_progress=False)
    return np.asarray(model.user_factors), np.asarray(model.item_factors)


def run(args) -> list[dict]:
    from recforget import ALS, forget
    from recforget.data.datasets import load
    from recforget.data.split import random_holdout
    from recforget.evaluate.scenarios import make_request

    _warm_up(args.drivers)
    data = load(args.dataset)
    train, _ = random_holdout(data, 0.2, random_state=args.seed)
    requests = {
        "1pct": make_request(train, "interactions:0.01", random_state=args.seed + 1),
        "user": make_request(train, "user:1", random_state=args.seed + 1),
    }
    tols = sorted(args.tols, reverse=True)
    tmin = min(tols)
    rows: list[dict] = []
    traces: list[dict] = []
    for reg in args.regs:
        params = dict(
            factors=args.factors,
            regularization=reg,
            alpha=args.alpha,
            iterations=args.max_sweeps,
            grad_tol=tmin,
            solver="cholesky",
            random_state=args.seed,
        )
        base = {"dataset": args.dataset, "regularization": reg}

        def record(task, method, driver, model, seconds, *, rows=rows, base=base):
            trace = model.sweep_trace_
            traces.append(
                {**base, "task": task, "method": method, "driver": driver, "trace": trace}
            )
            new = _rows_from_trace(
                {**base, "task": task, "method": method, "driver": driver}, trace, tols, seconds
            )
            new[-1]["finish"] = dict(getattr(model, "finish_", {}))
            rows.extend(new)
            last = new[-1]
            _say(
                f"reg {base['regularization']} {task} {method} {driver}: {last['sweeps']} sweeps "
                f"{last['seconds']:.1f}s residual {last['residual'] or 0:.3g}"
            )
            return new

        original = _original(args, train, params, base, record)
        if original is None:
            continue
        retrain_ref = None
        scores = {"original": _deleted_score(original, requests["1pct"])}
        for task, req, method in (
            ("retrain", "1pct", "retrain"),
            ("unlearn-1pct", "1pct", "unlearn-als"),
            ("unlearn-user", "user", "unlearn-als"),
        ):
            if task not in args.tasks:
                continue
            for driver in args.drivers:
                label, opts = _rows_opts(driver, method)
                if method == "retrain":
                    if opts:
                        continue  # the retrain's (Cholesky) rows do not depend on them
                    label = _rows_opts(driver, "retrain")[0]
                with _driver_defaults(driver):
                    res = forget(
                        original,
                        requests[req],
                        method,
                        tol=tmin,
                        max_sweeps=args.max_sweeps,
                        accelerate=_acc(driver),
                        **opts,
                    )
                driver = _strip(driver)
                new = record(task, label, driver, res.model, res.receipt["seconds"])
                if req == "1pct":
                    score = _deleted_score(res.model, requests[req])
                    for row in new:
                        row["deleted_score"] = score if row is new[-1] else None
                        row["original_score"] = scores["original"]
                    if label == "retrain" and driver != "plain":
                        if retrain_ref is None or new[-1]["residual"] < retrain_ref[1]:
                            retrain_ref = (score, new[-1]["residual"])
        ref = None if retrain_ref is None else retrain_ref[0]
        for task, req in (("unlearn-1pct", "1pct"), ("unlearn-user", "user")):
            if task not in args.tasks:
                continue
            for tol in tols:
                for driver in args.drivers:
                    if _strip(driver) != driver:
                        continue  # selective rounds: the defaults only
                    res = forget(
                        original, requests[req], "unlearn-als-selective", tol=tol,
                        accelerate=_acc(driver),
                    )  # fmt: skip
                    r = res.receipt
                    row = {
                        **base,
                        "task": task,
                        "method": "unlearn-als-selective",
                        "driver": driver,
                        "tol": tol,
                        "sweeps": r["sweeps"],
                        "rows_solved": r["rows_solved"],
                        "seconds": r["seconds"],
                        "certified": r["certified"],
                        "residual": r["certificate"]["max_relative"],
                        "from_trace": False,
                    }
                    if req == "1pct":
                        row["deleted_score"] = _deleted_score(res.model, requests[req])
                        row["original_score"] = scores["original"]
                        row["gap_closed"] = _gap(scores["original"], ref, row["deleted_score"])
                    rows.append(row)
                    _say(f"reg {reg} {task} selective {driver} tol {tol}: {r['seconds']:.2f}s")
        if "unlearn-1pct-from-implicit" in args.tasks:
            t0 = time.perf_counter()
            X, Y = _implicit_factors(train, params, args.seed)
            _say(f"reg {reg} implicit 0.7.3, 15 iterations: {time.perf_counter() - t0:.1f}s")
            wrapped = ALS.from_factors(
                X, Y, train, **{k: v for k, v in params.items() if k != "factors"}
            )
            for driver in args.drivers:
                label, opts = _rows_opts(driver, "unlearn-als")
                with _driver_defaults(driver):
                    res = forget(
                        wrapped,
                        requests["1pct"],
                        "unlearn-als",
                        tol=tmin,
                        max_sweeps=args.max_sweeps,
                        accelerate=_acc(driver),
                        **opts,
                    )
                record(
                    "unlearn-1pct-from-implicit",
                    label,
                    _strip(driver),
                    res.model,
                    res.receipt["seconds"],
                )
        for row in rows:
            if row.get("deleted_score") is not None and "gap_closed" not in row:
                row["gap_closed"] = _gap(scores["original"], ref, row["deleted_score"])
    return [{"rows": rows, "traces": traces, "settings": _settings(args)}]


def _warm_up(drivers: list[str]) -> None:
    """Compile every kernel the timed runs use (numba) on a tiny problem, untimed."""
    from recforget import ALS, DeletionRequest, forget
    from recforget.data.interactions import Interactions
    from recforget.models._als_sweeps import _pack, line_coefficients

    rng = np.random.default_rng(0)
    cells = rng.choice(600, 300, replace=False)
    users, items = cells // 20, cells % 20
    data = Interactions.from_arrays(users, items, rng.integers(1, 6, 300).astype(float))
    pair = [(data.users.ids[0], data.items.ids[int(data.indices[0])])]
    for driver in sorted({_acc(d) or "plain" for d in drivers}):
        for solver in ("cholesky", "cg"):
            model = ALS(4, iterations=5, grad_tol=1e-6, solver=solver, accelerate=_acc(driver))
            model.fit(data)
            for method in ("retrain", "unlearn-als", "unlearn-als-selective"):
                forget(model, DeletionRequest(pairs=pair), method, accelerate=_acc(driver))
    # Anderson's fallback line search runs only on a refused step: compile it here too
    obj = model.objective(data)
    F = model._factors()
    line_coefficients(obj, F, _pack(F))


def _original(args, train, params, base, record):
    """Fit with every driver (task ``fit``) and return the best accelerated fit."""
    from recforget import ALS

    cache = None
    if args.cache:
        cache = Path(args.cache) / f"{args.dataset}_reg{params['regularization']:g}_{args.seed}"
    best = None
    if "fit" in args.tasks or cache is None or not cache.exists():
        names = [d for d in args.drivers if _strip(d) == d]
        drivers = names if "fit" in args.tasks else [d for d in names if d != "plain"]
        for driver in drivers or ["ncg"]:
            model = ALS(**{k: v for k, v in params.items()}, accelerate=_acc(driver))
            model.fit(train)
            if "fit" in args.tasks:
                record("fit", "fit", driver, model, model.fit_seconds_)
            if driver != "plain":
                res = model.sweep_trace_[-1]["max_relative"]
                if best is None or res < best[0]:
                    best = (res, model)
        if best is None:
            return None
        if cache is not None:
            best[1].save(cache)
        return best[1]
    return ALS.load(cache)


def _gap(orig, ref, score):
    if orig is None or ref is None or score is None or orig == ref:
        return None
    return float((orig - score) / (orig - ref))


def _settings(args) -> dict:
    return {
        "factors": args.factors,
        "alpha": args.alpha,
        "max_sweeps": args.max_sweeps,
        "seed": args.seed,
        "holdout": 0.2,
        "fit_solver": "cholesky",
        "unlearn_solver": "cg",
        "unlearn_rows": (
            "solved to 0.1 tol, at most 10 CG steps (+fixed drivers: cg_steps 3; +forcing: "
            f"forcing {FORCING_ETA})"
        ),
        "anderson_safeguard": "line (+sweep drivers: sweep)",
        "threads": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS")},
    }


# ---------------------------------------------------------------------- table and plots
def fill_gaps(rows: list[dict]) -> None:
    """``gap_closed`` against the accelerated retrain at the tightest tolerance (any JSON)."""
    refs: dict = {}
    for r in rows:
        if r["task"] == "retrain" and r["driver"] != "plain" and r.get("deleted_score") is not None:
            key = (r["dataset"], r["regularization"])
            if key not in refs or r["residual"] < refs[key]["residual"]:
                refs[key] = r
    for r in rows:
        ref = refs.get((r["dataset"], r["regularization"]))
        if r.get("gap_closed") is None and ref is not None and r.get("deleted_score") is not None:
            r["gap_closed"] = _gap(
                r.get("original_score"), ref["deleted_score"], r["deleted_score"]
            )


def table(results: list[dict]) -> str:
    rows = [r for res in results for r in res["rows"]]
    fill_gaps(rows)
    head = "| " + " | ".join(COLUMNS) + " | certified | speed-up vs plain | gap closed |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 3)]
    plain = {
        (r["dataset"], r["regularization"], r["task"], r["method"], r["tol"]): r
        for r in rows
        if r["driver"] == "plain"
    }
    for r in rows:
        p = plain.get((r["dataset"], r["regularization"], r["task"], r["method"], r["tol"]))
        speed = ""
        if p is not None and r["driver"] != "plain" and r["certified"] and r["seconds"] > 0:
            speed = f"{p['seconds'] / r['seconds']:.1f}x" + ("" if p["certified"] else " (>)")
        cells = [f"{r[c]:.3g}" if isinstance(r[c], float) else str(r[c]) for c in COLUMNS]
        gap = "" if r.get("gap_closed") is None else f"{r['gap_closed']:.3f}"
        lines.append("| " + " | ".join(cells) + f" | {r['certified']} | {speed} | {gap} |")
    return "\n".join(lines)


def plots(results: list[dict], folder: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    traces = [t for res in results for t in res["traces"]]
    written = []
    for key in sorted({(t["dataset"], t["regularization"], t["task"]) for t in traces}):
        fig, ax = plt.subplots(figsize=(6, 4))
        for t in traces:
            if (t["dataset"], t["regularization"], t["task"]) != key or not t["trace"]:
                continue
            secs = [p["seconds"] for p in t["trace"]]
            res = [p["max_relative"] for p in t["trace"]]
            method = t.get("method", "")
            tags = [
                name
                for tag, name in (
                    ("/fixed-cg", "3 CG steps a row"),
                    ("/forcing", "forcing term"),
                    ("/sweep-safeguard", "old safeguard"),
                    ("/fit-all", "weights fit all factors"),
                )
                if tag in method
            ]
            ax.semilogy(secs, res, label=t["driver"] + (f" ({', '.join(tags)})" if tags else ""))
        ax.set_xlabel("seconds")
        ax.set_ylabel("max relative row residual")
        ax.set_title(f"{key[0]} reg {key[1]:g}: {key[2]}")
        ax.legend()
        ax.grid(True, which="both", alpha=0.3)
        path = out / f"residual_vs_time_{key[0]}_reg{key[1]:g}_{key[2]}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", choices=("ml-100k", "ml-1m"), default="ml-100k")
    p.add_argument("--json", dest="json_path", default=None)
    p.add_argument("--regs", default=None, help="comma-separated (default 0.01,1,bench default)")
    p.add_argument("--tols", default="1e-2,1e-3,1e-4")
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--drivers", default="plain,ncg,anderson")
    p.add_argument("--factors", type=int, default=64)
    p.add_argument("--alpha", type=float, default=10.0)
    p.add_argument("--max-sweeps", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", default=None, help="keep the original models here")
    p.add_argument("--plots", default=None, help="write residual-vs-time PNGs here")
    p.add_argument("--table", nargs="+", default=None, help="only print the table of JSONs")
    args = p.parse_args(argv)
    if args.table:
        results = [r for path in args.table for r in json.loads(Path(path).read_text())]
    else:
        regs = args.regs or f"0.01,1,{BENCH_REG[args.dataset]:g}"
        args.regs = [float(x) for x in regs.split(",")]
        args.tols = [float(x) for x in args.tols.split(",")]
        args.tasks = args.tasks.split(",")
        args.drivers = args.drivers.split(",")
        unknown = set(args.tasks) - set(TASKS)
        if unknown:
            p.error(f"unknown task(s) {sorted(unknown)}; choose from {TASKS}")
        for driver in args.drivers:
            base, *suffixes = driver.split("+")
            if base not in DRIVERS or any(f"+{x}" not in SUFFIXES for x in suffixes):
                p.error(f"unknown driver {driver!r}: one of {DRIVERS}, then suffixes {SUFFIXES}")
            if (SWEEP in driver or FITALL in driver) and base != "anderson":
                p.error(f"driver {driver!r}: {SWEEP} and {FITALL} apply to anderson only")
        results = run(args)
        if args.json_path:
            Path(args.json_path).write_text(json.dumps(results, indent=1, default=float) + "\n")
    print(table(results))
    if args.plots:
        for path in plots(results, args.plots):
            _say(f"wrote {path}")
    return results


if __name__ == "__main__":
    main()
