"""Streaming deletion latency: N sequential single-user or single-pair requests, each certified.

    python benchmarks/stream_latency.py --dataset ml-1m --kind user --requests 500 --json OUT
    python benchmarks/stream_latency.py --dataset ml-1m-x25 --kind pair --requests 200 \\
        --compare-fit --json OUT

Protocol: the data set's ratings as implicit positives, 80/20 random holdout (seeded), ALS with
64 factors fitted with conjugate gradient until the stationarity certificate holds at ``--tol``
(the bench's tolerance, 1e-2). A :class:`recforget.unlearn.stream.Forgetter` then serves N
requests one after another (one random remaining user, or one random remaining training pair,
each; seeded); each request's latency is the caller's wall clock from the call to the returned
receipt of a certified model (certificate, digests and the periodic from-scratch verification
included: by default spread over the requests, ``--verify-mode sliced``). The forgetter also
re-solves the deleted rows' neighbours whose residual exceeds ``--neighbour-target`` times the
tolerance (default 0.3; ``none`` to disable), as a retrain moves them too. At the end the
remaining data is retrained from scratch (same parameters and seed) and compared with the
streamed model (``--one-shot``: also with one-shot ``unlearn-als-selective`` on all the
deletions at once):

* ``gap_closed``: the deleted data's trace, as the forget benchmark measures it, closed by the
  stream relative to the retrain: ``(orig - stream) / (orig - retrain)`` of the deleted pairs'
  mean score. Deleted *users* have no rows left to score, so their trace is probed by fold-in:
  half of each deleted user's history (seeded, the same for every model) is folded into the
  model's item factors (the user's exact ALS row on those pairs) and the other half is scored.
* ``ndcg_rel_gap``: ``|NDCG@10(stream) - NDCG@10(retrain)| / NDCG@10(retrain)`` on the held-out
  pairs of the remaining users (a seeded sample of at most ``--eval-users`` users).

``--model gmf|neumf`` runs the same protocol on a neural model (:mod:`recforget.models.ncf`
defaults, one torch thread, seed ``--seed``, AltEraser's curvature prepared once ahead): the
:class:`~recforget.unlearn.ncf.stream.NCFForgetter` that ``Forgetter(model)`` returns serves
the requests with AltEraser's one-step update; the first ``--oneshot`` requests are also served
by ``recforget.forget(model, request, "alteraser")`` (a chain: each on the model the previous
one returned), wall clock included, and the chain's model is compared with the stream's at that
point. The trace is measured as ``benchmarks/ncf_unlearn.py`` does: for deleted users the
fold-in probe (:mod:`recforget.evaluate.foldin`: three quarters of each deleted user's history
folded into every model, item side and shared weights fixed, one common ridge, the rest scored),
for deleted pairs their mean predicted probability; ``gap_closed`` is
``(orig - stream) / (orig - retrain)`` of that score, ``mia_auc`` the probe's AUC. The receipts'
certificate is the plain fixed-sample objective's, reported as measured (as the one-shot
receipt's; one Newton step does not make a trained network stationary), so
``certified_all`` is false; ``decrease_verified_all`` says that every request's Armijo test
passed (the anchored objective decreased) and ``max_relative_residual`` is the largest
``max_relative`` of the receipts.

With ``--compare-fit`` the ALS fit itself (``--fit-iterations`` CG sweeps) is timed against
implicit 0.7.3 (CG) on the same training data, each in its own process (peak memory per fit).
Everything runs on one thread (BLAS, numba, implicit). Prints the JSON, then a table.
"""

from __future__ import annotations

import os

for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REGULARIZATION = {"ml-100k": 60.0, "ml-1m": 100.0, "ml-1m-x25": 100.0}


def _data(dataset: str, seed: int):
    from recforget.data.split import random_holdout
    from recforget.evaluate.bench import prepare_data

    _, data = prepare_data(dataset)
    return random_holdout(data, 0.2, random_state=seed)


def _quantiles(values) -> dict[str, float]:
    """``{"p50", "p95", "p99"}`` of ``values``."""
    return {f"p{q}": float(np.percentile(values, q)) for q in (50, 95, 99)}


def _degrees_like(args) -> np.ndarray:
    """History lengths of ``--requests`` users drawn uniformly (seeded, with replacement) from
    the ``--degree-like`` data set's training split: the deletion sizes to match."""
    train, _ = _data(args.degree_like, args.seed)
    counts = np.diff(train.indptr)
    rng = np.random.default_rng(args.seed + 3)
    return counts[rng.integers(train.n_users, size=args.requests)]


def _als(args, **extra):
    from recforget import ALS

    return ALS(
        args.factors,
        regularization=args.regularization,
        alpha=args.alpha,
        solver="cg",
        random_state=args.seed,
        **extra,
    )


def _touched_first(args) -> dict:
    """The forgetter's ``touched_first`` from ``--no-touched-first`` / ``--touched-target``
    (``1`` there means every touched row, ``True``)."""
    from recforget.unlearn.stream import DEFAULT_TOUCHED_FIRST

    if args.no_touched_first:
        return dict.fromkeys(DEFAULT_TOUCHED_FIRST, False)
    if args.touched_target is None:
        return dict(DEFAULT_TOUCHED_FIRST)
    value = True if args.touched_target >= 1 else args.touched_target
    return dict.fromkeys(DEFAULT_TOUCHED_FIRST, value)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------- fit comparison
def _fit_one(config: str, args) -> dict:
    train, _ = _data(args.dataset, args.seed)
    if config == "recforget-cg":
        from recforget import ALS

        ALS(4, iterations=1, solver="cg", random_state=0).fit(train)  # JIT warm-up
        model = _als(args, iterations=args.fit_iterations)
        start = time.perf_counter()
        model.fit(train)
        seconds = time.perf_counter() - start
    else:
        import implicit
        import scipy.sparse as sp
        from threadpoolctl import threadpool_limits

        C = train.to_csr()
        C.data = 1.0 + args.alpha * C.data  # implicit's data is the confidence (alpha=1)
        C = sp.csr_matrix(C).astype(np.float32)
        ext = implicit.cpu.als.AlternatingLeastSquares(
            factors=args.factors,
            regularization=args.regularization,
            alpha=1.0,
            iterations=args.fit_iterations,
            use_cg=True,
            num_threads=1,
            random_state=args.seed,
        )
        with threadpool_limits(1):
            start = time.perf_counter()
            ext.fit(C, show_progress=False)
            seconds = time.perf_counter() - start
    return {"config": config, "seconds": seconds, "peak_rss_mb": _peak_mb()}


def _compare_fit(args) -> dict:
    out = {}
    for config in ("recforget-cg", "implicit-cg"):
        cmd = [sys.executable, __file__, "--fit-one", config, *_forward(args)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        out[config] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"fit {config}: {out[config]['seconds']:.1f}s", file=sys.stderr)
    out["time_ratio_vs_implicit"] = out["recforget-cg"]["seconds"] / out["implicit-cg"]["seconds"]
    out["iterations"] = args.fit_iterations
    return out


def _forward(args) -> list[str]:
    keys = ("dataset", "factors", "regularization", "alpha", "seed", "fit_iterations")
    return [f"--{k.replace('_', '-')}={getattr(args, k)}" for k in keys]


def _original(args, train):
    """The certified original model: fitted, or loaded from ``--cache`` (same protocol)."""
    from recforget import ALS

    key = (
        f"stream-original-{args.dataset}-s{args.seed}-k{args.factors}-r{args.regularization}"
        f"-a{args.alpha}-t{args.tol}-m{args.max_sweeps}"
    )
    path = args.cache / key if args.cache else None
    if path is not None and (path / "manifest.json").is_file():
        model = ALS.load(path)
        if model.seen_.fingerprint() == train.fingerprint():
            manifest = json.loads((path / "manifest.json").read_text())
            print(f"original loaded from {path}", file=sys.stderr)
            return model, float(manifest["stream_fit_seconds"])
    model = _als(args, iterations=args.max_sweeps, grad_tol=args.tol)
    start = time.perf_counter()
    model.fit(train)
    seconds = time.perf_counter() - start
    if path is not None:
        model.save(path, extra_manifest={"stream_fit_seconds": seconds})
    return model, seconds


# ---------------------------------------------------------------------- traces
def _foldin_scores(model, histories: dict, seed: int) -> float:
    """Mean member score of the deleted users after folding in half of their history."""
    Y = model.item_factors_.astype(np.float64)
    k = Y.shape[1]
    G = Y.T @ Y + model.regularization * np.eye(k)
    rng = np.random.default_rng(seed)
    scores = []
    for _user, items in sorted(histories.items(), key=lambda kv: str(kv[0])):
        idx = model.items_.index(items, missing="ignore")
        idx = idx[idx >= 0]
        if len(idx) < 2:
            continue
        idx = idx[rng.permutation(len(idx))]
        fold, member = idx[: len(idx) // 2], idx[len(idx) // 2 :]
        Yf = Y[fold]
        # implicit ALS row on the fold-in pairs:
        # (Y^T Y + alpha Yf^T Yf + reg I) x = (1 + alpha) Yf^T 1
        A = G + model.alpha * (Yf.T @ Yf)
        x = np.linalg.solve(A, (1.0 + model.alpha) * Yf.sum(axis=0))
        scores.append(float(np.mean(Y[member] @ x)))
    return float(np.mean(scores)) if scores else float("nan")


def _pair_scores(model, pairs) -> float:
    users = [p[0] for p in pairs]
    items = [p[1] for p in pairs]
    return float(np.mean(model.score(users, items)))


def _gap(orig: float, retrain: float, method: float):
    if not np.isfinite([orig, retrain, method]).all() or orig == retrain:
        return None
    return float((orig - method) / (orig - retrain))


# ---------------------------------------------------------------------- stream
def _ndcg_on_sample(models, remaining, test_after, args) -> dict[str, float]:
    """NDCG@10 of each ``(name, model)`` on one seeded sample of the users with test items."""
    from recforget.evaluate.accuracy import evaluate_ranking

    eval_rng = np.random.default_rng(args.seed + 2)
    with_test = test_after.users.ids[test_after.user_counts() > 0]
    sample = eval_rng.choice(with_test, min(args.eval_users, len(with_test)), replace=False)
    return {
        m: float(
            evaluate_ranking(x, remaining, test_after, ks=(10,), metrics=("ndcg",), users=sample)[
                "ndcg@10"
            ]
        )
        for m, x in models
    }


def run(args) -> dict:
    from recforget import DeletionRequest
    from recforget.models.base import clone
    from recforget.unlearn.stream import Forgetter

    t0 = time.perf_counter()
    train, test = _data(args.dataset, args.seed)
    print(f"data {train!r} ({time.perf_counter() - t0:.1f}s)", file=sys.stderr)
    fit = _compare_fit(args) if args.compare_fit else None

    _als(args, iterations=1).set_params(factors=4).fit(train)  # JIT warm-up
    model, fit_seconds = _original(args, train)
    print(f"original: {model.n_iter_} sweeps, {fit_seconds:.1f}s", file=sys.stderr)

    start = time.perf_counter()
    forgetter = Forgetter(
        model,
        tol=args.tol,
        verify_every=args.verify_every or None,
        verify_mode=args.verify_mode,
        **(
            {}
            if args.neighbour_target == "default"
            else {"neighbour_target": args.neighbour_target}
        ),
        verify_entries=args.verify_entries or None,
        touched_first=_touched_first(args),
        cg_steps=args.cg_steps,
        setup_target=args.setup_target,
    )
    setup_seconds = time.perf_counter() - start
    print(f"forgetter setup {setup_seconds:.2f}s", file=sys.stderr)

    rng = np.random.default_rng(args.seed + 1)
    view = forgetter.view
    like = _degrees_like(args) if args.kind == "user" and args.degree_like else None
    deleted_sizes = []
    latencies, rows_solved, residuals, certified = [], [], [], []
    cpu_times = []  # the process's CPU time per request (one thread: what it would take alone)
    verify_times = []  # the part of each request spent on the from-scratch verification
    verifications = []
    deleted_pairs, histories = [], {}
    for n in range(args.requests):
        if args.kind == "user":
            alive = np.flatnonzero(view.user_alive)
            if like is None:
                u = int(alive[rng.integers(len(alive))])
            else:  # a random user whose history is as long as the reference's n-th
                gap = np.abs(view.user_counts[alive] - like[n])
                near = alive[gap == gap.min()]
                u = int(near[rng.integers(len(near))])
            deleted_sizes.append(int(view.user_counts[u]))
            raw = view.users.ids[u]
            histories[raw] = list(view.items.ids[view.indices[view.row_entries(u)]])
            request = DeletionRequest(users=[raw], request_id=f"r{n}")
        else:
            e = -1
            while e < 0:  # a random live slot
                e = int(rng.integers(view.capacity))
                e = e if view.live[e] else -1
            u = int(np.searchsorted(view.indptr, e, side="right") - 1)
            pair = (view.users.ids[u], view.items.ids[view.indices[e]])
            deleted_pairs.append(pair)
            request = DeletionRequest(pairs=[pair], request_id=f"r{n}")
        start, cpu = time.perf_counter(), time.process_time()
        receipt = forgetter.forget(request)
        latencies.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu)
        verify_times.append(receipt["verify_seconds"])
        rows_solved.append(receipt["rows_solved"])
        residuals.append(receipt["certificate"]["max_relative"])
        certified.append(bool(receipt["certified"]))
        if "verification" in receipt:
            verifications.append(
                {
                    "sequence": receipt["sequence"],
                    "drift": receipt["verification"]["drift"],
                    "certified": receipt["verification"]["certified"],
                    "mode": receipt["verification"]["mode"],
                }
            )
        if (n + 1) % max(1, args.requests // 10) == 0:
            print(f"{n + 1} requests, p50 {1e3 * np.median(latencies):.1f} ms", file=sys.stderr)
    streamed = forgetter.model
    remaining = forgetter.data
    stream_peak = _peak_mb()

    retrain = clone(model).set_params(random_state=model.seed_)
    start = time.perf_counter()
    retrain.fit(remaining)
    retrain_seconds = time.perf_counter() - start
    print(f"retrain: {retrain.n_iter_} sweeps, {retrain_seconds:.1f}s", file=sys.stderr)

    models = [("original", model), ("stream", streamed), ("retrain", retrain)]
    one_shot = None
    if args.one_shot:  # the same deletions as one request, one-shot selective Unlearn-ALS
        from recforget import forget

        gone_request = (
            DeletionRequest(users=list(histories))
            if args.kind == "user"
            else DeletionRequest(pairs=deleted_pairs)
        )
        start = time.perf_counter()
        result = forget(model, gone_request, "unlearn-als-selective", tol=args.tol)
        one_shot = {"method": "unlearn-als-selective", "seconds": time.perf_counter() - start}
        models.append(("one_shot", result.model))
        print(f"one-shot selective: {one_shot['seconds']:.1f}s", file=sys.stderr)
    if args.kind == "user":
        scores = {m: _foldin_scores(x, histories, args.seed) for m, x in models}
        gone = list(histories)
        test_after = test.remove(users=gone, missing="ignore").data
    else:
        scores = {m: _pair_scores(x, deleted_pairs) for m, x in models}
        test_after = test
    ndcg = _ndcg_on_sample(models[1:], remaining, test_after, args)
    if one_shot is not None:
        one_shot["gap_closed"] = _gap(scores["original"], scores["retrain"], scores["one_shot"])
        one_shot["ndcg_rel_gap"] = abs(ndcg["one_shot"] - ndcg["retrain"]) / ndcg["retrain"]
    lat_ms = 1e3 * np.asarray(latencies)
    final = forgetter.verify()
    return {
        "dataset": args.dataset,
        "model": "als",
        "kind": args.kind,
        "requests": args.requests,
        "seed": args.seed,
        "tol": args.tol,
        "params": {
            "factors": args.factors,
            "regularization": args.regularization,
            "alpha": args.alpha,
            "solver": "cg",
            "verify_every": args.verify_every,
            "verify_mode": args.verify_mode,
            "verify_entries": forgetter.verify_entries,
            "verify_pass_requests": forgetter._slices(),
            "neighbour_target": dict(forgetter.neighbour_target),
            "touched_first": dict(forgetter.touched_first),
            "cg_steps": forgetter._state.cg_steps,
            "setup_target": args.setup_target,
        },
        "data": {"users": train.n_users, "items": train.n_items, "train_nnz": train.nnz},
        "latency_ms": {
            **_quantiles(lat_ms),
            "mean": float(lat_ms.mean()),
            "max": float(lat_ms.max()),
        },
        "latency_ms_excluding_verification": _quantiles(lat_ms - 1e3 * np.asarray(verify_times)),
        "verify_ms_mean": float(1e3 * np.mean(verify_times)),
        "cpu_ms": _quantiles(1e3 * np.asarray(cpu_times)),
        "rows_solved": {"median": float(np.median(rows_solved)), "max": int(max(rows_solved))},
        "degree_like": args.degree_like,
        "deleted_pairs_per_request": (
            {"median": float(np.median(deleted_sizes)), "mean": float(np.mean(deleted_sizes))}
            if deleted_sizes
            else {"median": 1.0, "mean": 1.0}
        ),
        "certified_all": bool(all(certified)),
        "max_relative_residual": float(max(residuals)),
        "final_verification": {
            "drift": final["drift"],
            "certified": final["certified"],
            "max_relative": final["certificate"]["max_relative"],
        },
        "verifications": verifications,
        "deleted_score": scores,
        "gap_closed": _gap(scores["original"], scores["retrain"], scores["stream"]),
        "ndcg@10": ndcg,
        "ndcg_rel_gap": abs(ndcg["stream"] - ndcg["retrain"]) / ndcg["retrain"],
        "original_fit": {"seconds": fit_seconds, "sweeps": model.n_iter_},
        "retrain_seconds": retrain_seconds,
        "retrain_sweeps": retrain.n_iter_,
        "stream_seconds_total": float(np.sum(latencies)),
        "setup_seconds": setup_seconds,
        "peak_rss_mb": stream_peak,
        "one_shot": one_shot,
        "fit_comparison": fit,
        "threads": 1,
        "note": "2-core machine shared with other work; one thread for BLAS, numba and implicit",
    }


# ---------------------------------------------------------------------- neural models
def _ncf_original(args, train):
    """The original NCF model with its curvature prepared: fitted, or loaded from ``--cache``."""
    from recforget.models.ncf import NCF
    from recforget.unlearn.ncf import prepare

    key = f"stream-original-{args.dataset}-{args.model}-s{args.seed}"
    path = args.cache / key if args.cache else None
    if path is not None and (path / "manifest.json").is_file():
        model = NCF.load(path)
        if model.seen_.fingerprint() == train.fingerprint():
            manifest = json.loads((path / "manifest.json").read_text())
            print(f"original loaded from {path}", file=sys.stderr)
            return model, float(manifest["stream_fit_seconds"]), None
    model = NCF(args.model, random_state=args.seed, num_threads=1)
    start = time.perf_counter()
    model.fit(train)
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    prepare(model)
    prepare_seconds = time.perf_counter() - start
    if path is not None:
        model.save(path, extra_manifest={"stream_fit_seconds": seconds}, curvature=True)
    return model, seconds, prepare_seconds


def _max_param_diff(a, b) -> float:
    """Largest difference of two NCF models' parameters, rows matched by raw id."""
    ua = a.users_.index(b.users_.ids)
    ia = a.items_.index(b.items_.ids)
    out = 0.0
    for get, idx in (("all_user_vectors", ua), ("all_item_vectors", ia)):
        x = getattr(a.module_, get)().detach()[idx]
        y = getattr(b.module_, get)().detach()
        out = max(out, float((x - y).abs().max()))
    for k, v in a.module_.shared_parameters().items():
        out = max(out, float((v - b.module_.shared_parameters()[k]).detach().abs().max()))
    return out


def run_ncf(args) -> dict:
    import torch

    from recforget import DeletionRequest, forget
    from recforget.evaluate.attacks import interaction_mia, sample_non_members
    from recforget.evaluate.foldin import fold_in_split, fold_in_trace
    from recforget.evaluate.rows import gap_closed
    from recforget.models.ncf import NCF
    from recforget.unlearn.stream import Forgetter

    torch.set_num_threads(1)
    # JIT warm-up: the compiled sweep and the torch paths on a tiny model, outside the timing
    from recforget.data.generators import synthetic

    tiny = synthetic(40, 30, rank=3, density=0.2, random_state=0)
    warm = Forgetter(NCF("gmf", factors=4, epochs=2, num_threads=1, random_state=0).fit(tiny))
    warm.forget(DeletionRequest(users=[tiny.users.ids[0]]))
    t0 = time.perf_counter()
    train, test = _data(args.dataset, args.seed)
    print(f"data {train!r} ({time.perf_counter() - t0:.1f}s)", file=sys.stderr)
    model, fit_seconds, prepare_seconds = _ncf_original(args, train)
    print(f"original: {fit_seconds:.1f}s fit", file=sys.stderr)
    start = time.perf_counter()
    forgetter = Forgetter(model, tol=args.tol, verify_every=args.verify_every or None)
    setup_seconds = time.perf_counter() - start
    print(f"forgetter setup {setup_seconds:.2f}s", file=sys.stderr)

    rng = np.random.default_rng(args.seed + 1)
    view = forgetter.view
    latencies, seconds, blocks, affected, residuals, steps = [], [], [], [], [], []
    verifications, requests, deleted_pairs, users, cpu_times = [], [], [], [], []
    snapshot = None
    for n in range(args.requests):
        if args.kind == "user":
            alive = np.flatnonzero(view.user_alive)
            u = int(alive[rng.integers(len(alive))])
            users.append(view.users.ids[u])
            request = DeletionRequest(users=[view.users.ids[u]], request_id=f"r{n}")
        else:
            e = -1
            while e < 0:
                e = int(rng.integers(view.capacity))
                e = e if view.live[e] else -1
            u = int(np.searchsorted(view.indptr, e, side="right") - 1)
            pair = (view.users.ids[u], view.items.ids[view.indices[e]])
            deleted_pairs.append(pair)
            request = DeletionRequest(pairs=[pair], request_id=f"r{n}")
        requests.append(request)
        start, cpu = time.perf_counter(), time.process_time()
        receipt = forgetter.forget(request)
        latencies.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu)
        seconds.append(receipt["seconds"])
        blocks.append(receipt["blocks_solved"])
        affected.append(receipt["samples_affected"])
        residuals.append(receipt["certificate"]["max_relative"])
        steps.append((receipt["step"], receipt["loss_history"][-1]))
        if "verification" in receipt:
            v = receipt["verification"]
            verifications.append(
                {k: v[k] for k in ("drift", "loss_drift")} | {"sequence": receipt["sequence"]}
            )
        if n + 1 == min(args.oneshot, args.requests):
            snapshot = forgetter.model  # built outside the timed calls
        if (n + 1) % max(1, args.requests // 10) == 0:
            print(f"{n + 1} requests, p50 {1e3 * np.median(latencies):.1f} ms", file=sys.stderr)
    streamed, remaining = forgetter.model, forgetter.data
    stream_peak = _peak_mb()
    final = forgetter.verify()

    oneshot = None
    if args.oneshot:
        chain, walls, secs, cpus = model, [], [], []
        for request in requests[: args.oneshot]:
            start, cpu = time.perf_counter(), time.process_time()
            result = forget(chain, request, "alteraser")
            walls.append(time.perf_counter() - start)
            cpus.append(time.process_time() - cpu)
            secs.append(result.receipt["seconds"])
            chain = result.model
        oneshot = {
            "requests": len(walls),
            "wall_ms": [1e3 * w for w in walls],
            "seconds_ms": [1e3 * s for s in secs],
            "wall_p50_ms": float(1e3 * np.median(walls)),
            "cpu_p50_ms": float(1e3 * np.median(cpus)),
            "max_param_diff_vs_stream": _max_param_diff(chain, snapshot),
        }
        print(f"one-shot chain p50 {oneshot['wall_p50_ms']:.0f} ms", file=sys.stderr)

    retrain = NCF(**{**model.get_params(), "random_state": model.seed_})
    start = time.perf_counter()
    retrain.fit(remaining)
    retrain_seconds = time.perf_counter() - start
    print(f"retrain: {retrain_seconds:.1f}s", file=sys.stderr)

    models = (("original", model), ("stream", streamed), ("retrain", retrain))
    reg = model.objective_reg_
    if args.kind == "user":
        probe = fold_in_split(train, test, users, args.seed + 2)
        traces = {m: fold_in_trace(x, probe, reg=reg) for m, x in models}
        scores = {m: t["deleted_score"] for m, t in traces.items()}
        mia = {m: t["auc"] for m, t in traces.items()}
        test_after = test.remove(users=users, missing="ignore").data
    else:
        non = sample_non_members(
            train, test, len(deleted_pairs), args.seed + 2, users=[p[0] for p in deleted_pairs]
        )
        u = [p[0] for p in deleted_pairs]
        i = [p[1] for p in deleted_pairs]
        scores = {m: float(np.mean(x.predict_proba(u, i))) for m, x in models}
        mia = {m: float(interaction_mia(x, deleted_pairs, non)["auc"]) for m, x in models}
        test_after = test
    ndcg = _ndcg_on_sample(models[1:], remaining, test_after, args)
    lat_ms = 1e3 * np.asarray(latencies)
    return {
        "dataset": args.dataset,
        "model": args.model,
        "kind": args.kind,
        "requests": args.requests,
        "seed": args.seed,
        "tol": args.tol,
        "params": {
            k: (list(v) if isinstance(v, tuple) else v)
            for k, v in model.get_params().items()
            if k not in ("random_state", "device")
        },
        "objective_reg": reg,
        "data": {"users": train.n_users, "items": train.n_items, "train_nnz": train.nnz},
        "latency_ms": {
            **_quantiles(lat_ms),
            "mean": float(lat_ms.mean()),
            "max": float(lat_ms.max()),
        },
        # CPU time of this process per request (one thread): what a request costs when it
        # has a core to itself, whatever else shares the machine
        "cpu_ms": _quantiles(1e3 * np.asarray(cpu_times)),
        "method_ms_p50": float(1e3 * np.median(seconds)),
        "blocks_solved": {"median": float(np.median(blocks)), "max": int(max(blocks))},
        "samples": forgetter.setup["samples"],
        "samples_affected": {"median": float(np.median(affected)), "max": int(max(affected))},
        "certified_all": False,
        "decrease_verified_all": bool(all(t > 0 and h <= 0 for t, h in steps)),
        "max_relative_residual": float(max(residuals)),
        "original_max_relative": forgetter.setup["certificate"]["certificate"]["max_relative"],
        "final_verification": {
            "drift": final["drift"],
            "loss_drift": final["loss_drift"],
            "max_relative": final["certificate"]["max_relative"],
        },
        "verifications": verifications,
        "deleted_score": scores,
        "mia_auc": mia,
        "trace": "fold-in probe" if args.kind == "user" else "deleted pairs",
        "gap_closed": gap_closed(scores["original"], scores["retrain"], scores["stream"]),
        "ndcg@10": ndcg,
        "ndcg_rel_gap": abs(ndcg["stream"] - ndcg["retrain"]) / ndcg["retrain"],
        "oneshot": oneshot,
        "original_fit": {"seconds": fit_seconds, "prepare_seconds": prepare_seconds},
        "retrain_seconds": retrain_seconds,
        "stream_seconds_total": float(np.sum(latencies)),
        "setup_seconds": setup_seconds,
        "peak_rss_mb": stream_peak,
        "threads": 1,
        "note": "2-core machine shared with other work; one thread for torch and BLAS",
    }


def table(r: dict) -> str:
    if r.get("model", "als") != "als":
        return _ncf_table(r)
    lat = r["latency_ms"]
    lines = [
        f"# stream latency: {r['dataset']} / als / {r['requests']} {r['kind']} requests",
        "",
        "| p50 ms | p95 ms | p99 ms | CPU p50 / p99 ms | rows solved (median) | certified all "
        "| max rel. residual | gap closed | NDCG@10 rel. gap | retrain s | stream total s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {lat['p50']:.1f} | {lat['p95']:.1f} | {lat['p99']:.1f} | "
        f"{r['cpu_ms']['p50']:.1f} / {r['cpu_ms']['p99']:.1f} | "
        f"{r['rows_solved']['median']:.0f} | {r['certified_all']} | "
        f"{r['max_relative_residual']:.2e} | "
        f"{'n/a' if r['gap_closed'] is None else format(r['gap_closed'], '.3f')} | "
        f"{r['ndcg_rel_gap']:.4f} | {r['retrain_seconds']:.1f} | "
        f"{r['stream_seconds_total']:.1f} |",
    ]
    p = r["params"]
    lines.insert(
        1,
        f"\nneighbour_target {p.get('neighbour_target')}, setup_target {p.get('setup_target')}, "
        f"touched first "
        f"{p.get('touched_first', True)}, verification {p.get('verify_mode', 'full')}, a pass "
        f"every {p.get('verify_pass_requests', p['verify_every'])} requests; 2-core machine "
        "shared with other work, one thread",
    )
    ex = r["latency_ms_excluding_verification"]
    size = r.get("deleted_pairs_per_request")
    if r["kind"] == "user" and size:
        like = (
            f", users drawn with the history lengths of {r['degree_like']}'s"
            if r.get("degree_like")
            else ""
        )
        lines += ["", f"Deleted pairs per request: median {size['median']:.0f}{like}"]
    lines += [
        "",
        f"Without the from-scratch verification (mean {r['verify_ms_mean']:.1f} ms per request): "
        f"p50 {ex['p50']:.1f}, p95 {ex['p95']:.1f}, p99 {ex['p99']:.1f} ms",
    ]
    shot = r.get("one_shot")
    if shot:
        lines += [
            "",
            f"Same deletions as one request, {shot['method']}: {shot['seconds']:.1f} s, gap closed "
            f"{shot['gap_closed']:.3f}, NDCG@10 rel. gap {shot['ndcg_rel_gap']:.4f}",
        ]
    fit = r.get("fit_comparison")
    if fit:
        lines += [
            "",
            f"ALS fit, {fit['iterations']} CG sweeps, one thread: recforget "
            f"{fit['recforget-cg']['seconds']:.1f} s ({fit['recforget-cg']['peak_rss_mb']:.0f} MB"
            f" peak), implicit 0.7.3 {fit['implicit-cg']['seconds']:.1f} s "
            f"({fit['implicit-cg']['peak_rss_mb']:.0f} MB peak): ratio "
            f"{fit['time_ratio_vs_implicit']:.2f}",
        ]
    return "\n".join(lines)


def _ncf_table(r: dict) -> str:
    lat, one = r["latency_ms"], r.get("oneshot")
    gap = "n/a" if r["gap_closed"] is None else format(r["gap_closed"], ".3f")
    lines = [
        f"# stream latency: {r['dataset']} / {r['model']} (AltEraser) / {r['requests']} "
        f"{r['kind']} requests",
        "",
        "| p50 ms | p95 ms | p99 ms | CPU p50 ms | method p50 ms | one-shot wall p50 ms "
        "| one-shot CPU p50 ms | blocks (median) "
        "| samples affected (median) | decrease verified all | max rel. residual | gap closed "
        "| MIA AUC stream / retrain | NDCG@10 rel. gap | retrain s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {lat['p50']:.1f} | {lat['p95']:.1f} | {lat['p99']:.1f} | {r['cpu_ms']['p50']:.1f} | "
        f"{r['method_ms_p50']:.1f} | "
        f"{'-' if not one else format(one['wall_p50_ms'], '.0f')} | "
        f"{'-' if not one else format(one['cpu_p50_ms'], '.0f')} | "
        f"{r['blocks_solved']['median']:.0f} | {r['samples_affected']['median']:.0f} "
        f"of {r['samples']} | {r['decrease_verified_all']} | {r['max_relative_residual']:.3f} | "
        f"{gap} | {r['mia_auc']['stream']:.4f} / {r['mia_auc']['retrain']:.4f} | "
        f"{r['ndcg_rel_gap']:.4f} | {r['retrain_seconds']:.1f} |",
    ]
    if one:
        lines += [
            "",
            f"One-shot chain (`recforget.forget(..., 'alteraser')`, first {one['requests']} "
            f"requests): wall p50 {one['wall_p50_ms']:.0f} ms; largest parameter difference "
            f"from the stream's model at that point {one['max_param_diff_vs_stream']:.2e}.",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-1m")
    parser.add_argument("--model", default="als", choices=["als", "gmf", "neumf"])
    parser.add_argument("--kind", default="user", choices=["user", "pair"])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--regularization", type=float, default=None)
    parser.add_argument("--alpha", type=float, default=10.0)
    parser.add_argument("--tol", type=float, default=1e-2)
    parser.add_argument("--max-sweeps", type=int, default=200)
    parser.add_argument("--verify-every", type=int, default=100)
    parser.add_argument("--verify-mode", default="sliced", choices=["sliced", "full"])
    parser.add_argument(
        "--neighbour-target",
        type=lambda x: x if x == "default" else None if x == "none" else float(x),
        default="default",
        help="Forgetter's neighbour_target ('none': only rows over the tolerance; default: "
        "the Forgetter's, 0.3 for users, 0.03 for pairs)",
    )
    parser.add_argument(
        "--verify-entries",
        type=int,
        default=25_000,
        help="sliced verification: most entries recomputed per request (0: verify_every only)",
    )
    parser.add_argument("--no-touched-first", action="store_true")
    parser.add_argument(
        "--touched-target",
        type=float,
        default=None,
        help="re-solve first only the touched rows the deletions shifted by more than this x "
        "tol, for every kind (1: all of them; default: the forgetter's)",
    )
    parser.add_argument(
        "--cg-steps", type=int, default=None, help="CG steps per re-solve (default: the model's)"
    )
    parser.add_argument(
        "--degree-like",
        help="user requests: delete users whose history is as long as those of a uniform "
        "sample of this data set's users (e.g. ml-1m: equal-sized deletions on the expansion)",
    )
    parser.add_argument("--setup-target", type=float, default=0.3)
    parser.add_argument("--eval-users", type=int, default=2000)
    parser.add_argument("--compare-fit", action="store_true")
    parser.add_argument(
        "--one-shot",
        action="store_true",
        help="also forget all the requests at once with unlearn-als-selective (its gap closed)",
    )
    parser.add_argument(
        "--cache", type=Path, help="keep the fitted original here and reuse it (same protocol)"
    )
    parser.add_argument("--fit-iterations", type=int, default=15)
    parser.add_argument(
        "--oneshot", type=int, default=5, help="neural models: one-shot chain on this many"
    )
    parser.add_argument(
        "--fit-one", choices=["recforget-cg", "implicit-cg"], help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.regularization is None:
        args.regularization = REGULARIZATION.get(args.dataset, 100.0)
    if args.fit_one:
        print(json.dumps(_fit_one(args.fit_one, args)))
        return
    result = run(args) if args.model == "als" else run_ncf(args)
    text = json.dumps(result, indent=2)
    print(text)
    print()
    print(table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
        args.json.with_suffix(".md").write_text(table(result) + "\n")


if __name__ == "__main__":
    main()
