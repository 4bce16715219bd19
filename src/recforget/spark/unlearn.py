"""``forget`` on Spark: Unlearn-ALS (full and selective) and the retrain oracle, with receipts.

The same methods as :mod:`recforget.unlearn.als`, on :class:`~recforget.spark.SparkALS`:

* ``"unlearn-als"``: the old factors (removed users' and items' rows dropped) warm-start full
  sweeps on the remaining data until the stationarity certificate holds;
* ``"unlearn-als-selective"``: each round is one pass per side in which every block computes
  its rows' gradients and re-solves only those above the tolerance (plus, in the first round,
  every kept row that lost data); only re-solved rows travel back; it stops after the first
  pass that re-solves nothing once both sides' latest gradients are within the tolerance;
* ``"retrain"``: fit from the model's seed on the remaining data (the oracle).

The remaining data's blocks are derived from the model's cached blocks by removing the deleted
entries (:mod:`recforget.spark.update`; the same job finds the removed entries, so the
interactions are not scanned, and, for the selective method, runs its first users pass), or
built from the remaining data when none are cached;
either way every statistic of the objective (frequency-scaled ridge weights, BM25 statistics)
is recomputed without the deleted data, and the blocks equal a rebuild byte for byte. The
receipt has the single-machine receipt's fields, with ``engine: "spark"``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from recforget._threads import one_blas_thread
from recforget.models._certificate import certificate, row_floor
from recforget.spark.blocks import PassOptions, blocked_gram, run_pass, run_passes
from recforget.spark.data import SparkInteractions
from recforget.spark.engine import SparkALS
from recforget.unlearn.api import request_fields
from recforget.unlearn.requests import DeletionRequest

__all__ = ["METHODS", "SparkUnlearnResult", "forget"]

DEFAULT_TOL = 1e-3
DEFAULT_MAX_SWEEPS = 200
METHODS = ("retrain", "unlearn-als", "unlearn-als-selective")


@dataclass(frozen=True)
class SparkUnlearnResult:
    model: SparkALS
    data: SparkInteractions
    receipt: dict[str, Any]


def _transplant(model: SparkALS, removal) -> SparkALS:
    new = SparkALS(
        model.estimator.factors,
        n_blocks=model.n_blocks,
        order=model.order,
        checkpoint_dir=model.checkpoint_dir,
        threads=model.threads,
        progress=model.progress,
        **{k: v for k, v in model.params.items() if k != "factors"},
    )
    keep_u = removal.user_map >= 0
    keep_i = removal.item_map >= 0
    new.seed_ = model.seed_
    new._set_state(
        np.ascontiguousarray(model.user_factors_[keep_u]),
        np.ascontiguousarray(model.item_factors_[keep_i]),
        removal.data,
    )
    return new


def _tol(model: SparkALS, tol: float | None) -> float:
    if tol is None:
        tol = model.estimator.grad_tol if model.estimator.grad_tol is not None else DEFAULT_TOL
    if not (np.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    return float(tol)


def _prepare(model: SparkALS, removal, *, scales: bool = False, prepared=None):
    """The transplanted model, its blocks on the remaining data (updated, not rebuilt, when
    the old data's blocks are cached) and, with ``scales``, the rows' ``||b_r||`` there.

    ``prepared`` is what :func:`forget` already did with the removal (see
    :func:`_remove_carrying_blocks`), returned as is."""
    if prepared is not None:
        return prepared
    new = _transplant(model, removal)
    t0 = time.perf_counter()
    sc = new.carry_blocks(model.seen_, removal, scales=scales)
    if sc is None:
        new.blocks(removal.data)
    timing = {
        "blocks": "updated" if sc is not None else "built",
        "removal": "scan",
        "blocks_seconds": time.perf_counter() - t0,
    }
    return new, (sc or None), timing


def unlearn_als(
    model, removal, *, tol=None, max_sweeps=DEFAULT_MAX_SWEEPS, solver="cg", _prepared=None
):
    tol = _tol(model, tol)
    new, _, timing = _prepare(model, removal, prepared=_prepared)
    new.sweeps(removal.data, max_sweeps, grad_tol=tol, solver=solver, tag="unlearn-als")
    n = removal.data.n_users + removal.data.n_items
    return new, {
        "tol": tol,
        "sweeps": new.n_iter_,
        "rows_solved": new.n_iter_ * n,
        "stop_reason": new.stop_reason_,
        "sweep_seconds": new.sweep_seconds_,
        "timing": timing,
    }


def unlearn_als_selective(
    model,
    removal,
    *,
    tol=None,
    max_rounds=10 * DEFAULT_MAX_SWEEPS,
    solver="cholesky",
    touched_first=True,
    other_sums=True,
    _prepared=None,
    _first=None,
):
    """Rounds of gradient-then-solve passes over the blocks, re-solving rows over ``tol``.

    A round is a users pass then an items pass. Each pass computes its rows' gradients,
    re-solves those over ``tol`` (in the first round also every kept row that lost data), and
    returns its rows' gradients after solving. The other side's gradients from its last pass
    stay exact while this pass moves no row, so the method stops after the first pass that
    re-solves nothing when both sides' latest gradients are within ``tol``: the certificate
    of the final state, from the passes themselves. The receipt's certificate is recomputed
    from scratch by :func:`forget`.

    ``solver`` defaults to exact (Cholesky) row solves, unlike the single-machine method's
    conjugate gradient: a round costs two Spark jobs whatever it solves, and the few rows a
    round re-solves are cheap to solve exactly, so exact solves that leave no row just over
    the tolerance save rounds (on ML-1M, a 1% deletion at 1e-2 takes 2 rounds instead of 6).

    With ``other_sums`` (default), every pass after the first also returns its blocks' shares
    of the other side's row gradients; when they show, with a margin, that the next pass would
    re-solve no row and that the certificate would hold after it, that pass is not run: its
    outcome (no row moved, those gradients) is known, and the method stops one Spark job
    earlier, with the same factors, passes and rows re-solved.
    """
    tol = _tol(model, tol)
    new, scales, timing = _prepare(model, removal, scales=True, prepared=_prepared)
    data = removal.data
    nb = new._blocks_per_side(data)
    blocks = new.blocks(data)
    est = new.estimator
    base = dict(solver=solver, cg_steps=est.cg_steps, threads=new.threads)
    S = {"users": new.user_factors_, "items": new.item_factors_}
    with one_blas_thread():
        G = {s: blocked_gram(S[s], nb) for s in S}
    touched = {"users": np.zeros(data.n_users, bool), "items": np.zeros(data.n_items, bool)}
    if touched_first:
        touched["users"][removal.user_map[removal.affected_users]] = True
        touched["items"][removal.item_map[removal.affected_items]] = True
    t0 = time.perf_counter()
    if scales is None:  # blocks built, not updated: one pass per side (one job) for the scales
        opts = PassOptions(solve="none", pre=True, **base)
        ru, ri = run_passes(
            [
                (blocks["users"], S["users"], S["items"], new.shared(G["items"]), opts),
                (blocks["items"], S["items"], S["users"], new.shared(G["users"]), opts),
            ]
        )
        scales = {"users": ru.b_pre, "items": ri.b_pre}
        timing["scales_seconds"] = time.perf_counter() - t0
    post: dict[str, tuple | None] = {"users": None, "items": None}
    solved = {"users": 0, "items": 0}
    rounds = passes = 0
    moved_this_round = False
    cert = None
    seconds: list[float] = []
    reason = "max_rounds"
    known = None  # the next pass's outcome, when the last pass showed it re-solves nothing
    spec = new.spec()
    while passes < 2 * max_rounds:
        s, o = ("users", "items") if passes % 2 == 0 else ("items", "users")
        # the floor of the row scales: this side's are exact (they depend on the other side's
        # factors only, which have not moved since), the other side's are from its last pass
        floor = row_floor(np.concatenate([scales["users"], scales["items"]]))
        t0 = time.perf_counter()
        # from the second pass on, a pass also returns the other side's partial gradient
        # sums, from which the driver sees whether the next pass would re-solve nothing
        opts = PassOptions(
            solve="selective",
            post=True,
            tol=tol,
            floor=floor,
            other=len(S[o]) if passes >= 1 and other_sums else 0,
            **base,
        )
        mark = touched[s] if passes < 2 else None
        if known is not None:
            r, known = known, None
            timing["last_pass"] = "from the previous pass's partial sums (no job)"
        elif passes == 0 and _first is not None and _same_rows(_first, tol, floor, mark):
            # the first users pass ran in the block update's job, with the rows' gradients
            # before solving returned: the rows it re-solved are those this floor selects
            r = _first
            timing["first_pass"] = "in the block update's job"
        else:
            r = run_pass(blocks[s], nb, S[s], S[o], new.shared(G[o]), opts, mark)
        passes += 1
        S[s], G[s] = r.X, r.gram
        n = len(r.solved)
        solved[s] += n
        moved_this_round = moved_this_round or n > 0
        if n:
            post[o] = None  # this side moved: the other side's gradients are stale
        post[s] = (r.g_post, r.b_post)
        scales[s] = r.b_post
        if n and r.other is not None and passes >= 2:
            known = _pass_known_idle(r, o, S, G[o], new.shared(r.gram), spec, scales, post, tol)
        seconds.append(time.perf_counter() - t0)
        new._report(
            {
                "sweep": (passes + 1) // 2,
                "side": s,
                "seconds": seconds[-1],
                "rows_solved": n,
            }
        )
        if s == "items":
            rounds += moved_this_round
            moved_this_round = False
        if post[o] is not None:  # both sides' gradients are those of the current state
            cert = certificate(
                np.concatenate([post["users"][0], post["items"][0]]),
                np.concatenate([post["users"][1], post["items"][1]]),
            )
            if cert["max_relative"] <= tol:
                reason = "grad_tol"
                break
    new._set_state(S["users"], S["items"], data)
    new.n_iter_ = rounds
    new.stop_reason_ = reason
    new.sweep_seconds_ = seconds
    if cert is not None:
        new.certificate_ = cert
    timing["pass_seconds"] = seconds
    return new, {
        "tol": tol,
        "sweeps": rounds,
        "passes": passes,
        "rows_solved": solved["users"] + solved["items"],
        "rows_solved_users": solved["users"],
        "rows_solved_items": solved["items"],
        "stop_reason": new.stop_reason_,
        "sweep_seconds": seconds,
        "timing": timing,
    }


#: how far under the tolerance the gradients from partial sums must be for the driver to take
#: the next pass as one that re-solves nothing (they are summed in another order than the row
#: kernel's, so they differ from its gradients in the last bits)
_KNOWN_MARGIN = 1e-6


def _pass_known_idle(r, o: str, S, gram_o, shared, spec, scales, post, tol: float):
    """The next pass (side ``o``) as a :class:`PassResult`, when the partial sums the last pass
    returned show that it re-solves no row and that the certificate holds after it; else None.

    Row ``j`` of ``o`` has ``grad_j = 2 ((G + lambda_j) y_j + sum_b partial_b[j])`` (the row
    kernel's formula, its sum over the rated rows split by block); its selection threshold and
    the certificate must hold with a margin of :data:`_KNOWN_MARGIN` (relative), so that the
    row kernel's gradients select no row either: the pass would leave every factor as it is,
    and its gradients are those of the final state."""
    from recforget.spark.blocks import PassResult, row_ridge

    grad_sum, rhs_sum, counts = r.other
    Y = S[o].astype(np.float64)
    lam = row_ridge(spec, counts)
    grad = 2.0 * (Y @ shared + lam[:, None] * Y + grad_sum)
    g = np.sqrt(np.einsum("ij,ij->i", grad, grad))
    b = 2.0 * np.sqrt(np.einsum("ij,ij->i", rhs_sum, rhs_sum))
    floor = row_floor(np.concatenate([scales["users"], scales["items"]]))
    bar = tol * (1.0 - _KNOWN_MARGIN)
    if np.any(g > bar * np.maximum(b, floor)):
        return None
    both = {o: (g, b), **{k: v for k, v in post.items() if k != o}}
    cert = certificate(
        np.concatenate([both["users"][0], both["items"][0]]),
        np.concatenate([both["users"][1], both["items"][1]]),
    )
    if cert["max_relative"] > bar:
        return None
    return PassResult(
        X=S[o], gram=gram_o, solved=np.empty(0, np.int64), g_pre=g, b_pre=b, g_post=g, b_post=b
    )


def _same_rows(r, tol: float, floor: float, touched: np.ndarray) -> bool:
    """Whether a selective pass run with another floor re-solved the rows this one selects."""
    over = np.flatnonzero(r.g_pre > tol * np.maximum(r.b_pre, floor))
    return bool(np.array_equal(np.union1d(over, np.flatnonzero(touched)), r.solved))


def retrain(model, removal, *, tol=None, max_sweeps=None, _prepared=None):
    new, _, timing = _prepare(model, removal, prepared=_prepared)
    if tol is not None:
        new.estimator.set_params(grad_tol=tol, tol=None)
    if max_sweeps is not None:
        new.estimator.set_params(iterations=max_sweeps)
    new.estimator.set_params(random_state=model.seed_)
    new.fit(removal.data)
    n = removal.data.n_users + removal.data.n_items
    return new, {
        "tol": tol if tol is not None else model.estimator.grad_tol,
        "sweeps": new.n_iter_,
        "rows_solved": new.n_iter_ * n,
        "stop_reason": new.stop_reason_,
        "sweep_seconds": new.sweep_seconds_,
        "timing": timing,
    }


def _remove_carrying_blocks(model: SparkALS, plan, method: str, options: dict):
    """``(removal, prepared, first)``: with the old data's blocks cached, the removal's entries
    are found by the job that derives the remaining data's blocks (and, for the selective
    method, the row scales and its first users pass), ``prepared`` is what :func:`_prepare`
    would return and ``first`` that pass's result (or ``None``); otherwise the removal comes
    from a scan of the interactions and ``prepared`` and ``first`` are ``None``."""
    if not plan.asks_nothing:
        new = _transplant(model, plan)
        selective = method == "unlearn-als-selective"
        first = None
        if selective and options.get("touched_first", True):
            # the selective method's first pass (users; the floor checked on the driver after)
            first = PassOptions(
                solve="selective",
                post=True,
                tol=_tol(new, options.get("tol")),
                floor=0.0,
                solver=options.get("solver", "cholesky"),
                cg_steps=new.estimator.cg_steps,
                threads=new.threads,
            )
        t0 = time.perf_counter()
        got = new.carry_removal(model.seen_, plan, scales=selective, first=first)
        if got is not None:
            removal, sc, passed = got
            timing = {
                "blocks": "updated",
                "removal": "found by the block update",
                "blocks_seconds": time.perf_counter() - t0,
            }
            return removal, (new, sc or None, timing), passed
    return plan.scan(), None, None


_IMPL = {
    "retrain": retrain,
    "unlearn-als": unlearn_als,
    "unlearn-als-selective": unlearn_als_selective,
}


def forget(
    model: SparkALS,
    request: DeletionRequest,
    method: str = "unlearn-als",
    *,
    missing: Literal["error", "ignore"] = "error",
    **options: Any,
) -> SparkUnlearnResult:
    """Make a :class:`SparkALS` forget ``request``; as :func:`recforget.forget` on one machine.

    Returns the new model, the remaining data (a :class:`SparkInteractions`) and a receipt with
    the same fields as the single-machine receipt (``method``, ``request_digest``, ``removed``,
    data fingerprints, ``seconds``, ``sweeps``, ``objective``, ``certificate``, ``certified``,
    ``model_hash``), plus ``engine``, ``n_blocks`` and ``sweep_seconds``. The certificate is
    recomputed from scratch on the remaining data, outside the timed section.
    """
    from recforget import __version__

    if method not in _IMPL:
        raise ValueError(f"unknown Spark method {method!r}; choose from {METHODS}")
    if not isinstance(request, DeletionRequest):
        raise TypeError(f"request must be a DeletionRequest, got {type(request).__name__}")
    data = model.seen_
    start = time.perf_counter()
    plan = data.plan_removal(
        pairs=request.pairs, users=request.users, items=request.items, missing=missing
    )
    removal, prepared, first = _remove_carrying_blocks(model, plan, method, options)
    remove_seconds = time.perf_counter() - start
    if prepared is not None:  # the block update found the removal: its time is the blocks'
        remove_seconds -= prepared[2]["blocks_seconds"]
    if removal.is_noop:
        if prepared is not None:  # nothing was removed: drop the blocks made for nothing
            for blocks in removal.data._cache.pop(model._blocks_key(removal.data)).values():
                blocks.unpersist()
        new, info = model, {"noop": True, "sweeps": 0, "rows_solved": 0}
    else:
        extra = {"_first": first} if first is not None else {}
        new, info = _IMPL[method](model, removal, _prepared=prepared, **extra, **options)
        info["noop"] = False
    seconds = time.perf_counter() - start
    timing = {"remove_seconds": remove_seconds, **info.pop("timing", {})}
    if not info["noop"]:
        t0 = time.perf_counter()
        info.update(new.certify(tol=info.pop("tol", None)))
        timing["certify_seconds"] = time.perf_counter() - t0
    info.pop("tol", None)
    info["timing"] = timing
    receipt = {
        "method": method,
        "model": "als",
        "engine": "spark",
        "n_blocks": model._blocks_per_side(data),
        **request_fields(request, removal, 0),
        "data_fingerprint_before": data.fingerprint(),
        "data_fingerprint_after": removal.data.fingerprint(),
        "seconds": seconds,
        "library_version": __version__,
        **info,
        "model_hash": new.model_hash(),
    }
    return SparkUnlearnResult(model=new, data=removal.data, receipt=receipt)
