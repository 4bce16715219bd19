"""``SparkALS``: ALS fit and warm sweeps over rating blocks, certified, resumable.

The estimator's parameters are those of :class:`recforget.ALS` (the same objective, the same
initialisation from ``random_state``, the same certificate); :class:`SparkALS` adds where and
how the sweeps run. Factors live on the driver and are broadcast to the blocks of the side
being solved (see :mod:`recforget.spark.blocks`); each sweep's state is written to Parquet
under ``checkpoint_dir`` so that a restarted driver resumes from the last complete sweep.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from recforget._rng import check_random_state, resolve_seed
from recforget._threads import one_blas_thread
from recforget.models._certificate import certificate
from recforget.models.als import ALS
from recforget.spark.blocks import (
    ObjectiveSpec,
    PassOptions,
    blocked_gram,
    build_blocks,
    run_pass,
    run_passes,
)
from recforget.spark.data import SparkInteractions

__all__ = ["SparkALS"]

_ORDERS = {"users-first": ("users", "items"), "items-first": ("items", "users")}


class SparkALS:
    """Bi-linear ALS on Spark with the single-machine kernels and certificate.

    Parameters
    ----------
    factors : int
    n_blocks : int or None
        Rating blocks per side (default: Spark's default parallelism). One block is one task.
    order : {"users-first", "items-first"}
        Which side each sweep solves first ("items-first" is MLlib's order).
    checkpoint_dir : str, Path or None
        Where each sweep's factors are written (Parquet) and resumed from.
    threads : int
        Numba threads per task (match ``spark.task.cpus``).
    progress : callable or None
        Called with a dict after every sweep (``sweep``, ``seconds``, ``max_relative``).
    **params
        :class:`recforget.ALS` parameters (``regularization``, ``feedback``, ``alpha``,
        ``weighting``, ``regularization_scaling``, ``iterations``, ``grad_tol``, ``solver``,
        ``cg_steps``, ``dtype``, ``random_state``, ...). Biases are not supported.

    Attributes
    ----------
    user_factors_, item_factors_ : ndarray
    users_, items_ : Vocabulary
    seen_ : SparkInteractions
    n_iter_, stop_reason_, certificate_, seed_, sweep_seconds_
    """

    def __init__(
        self,
        factors: int = 64,
        *,
        n_blocks: int | None = None,
        order: str = "users-first",
        checkpoint_dir: str | Path | None = None,
        threads: int = 1,
        progress: Callable[[dict], None] | None = None,
        **params: Any,
    ) -> None:
        self.estimator = ALS(factors, **params)
        self.n_blocks = n_blocks
        self.order = order
        self.checkpoint_dir = checkpoint_dir
        self.threads = threads
        self.progress = progress

    # ------------------------------------------------------------------ parameters
    @property
    def params(self) -> dict[str, Any]:
        return self.estimator.get_params()

    def spec(self) -> ObjectiveSpec:
        return ObjectiveSpec.from_params(self.params)

    def _validate(self, data: SparkInteractions) -> None:
        self.estimator._validate()
        if self.estimator.biases and self.estimator.feedback == "explicit":
            raise ValueError("the Spark engine has no biases (MLlib neither): set biases=False")
        if self.order not in _ORDERS:
            raise ValueError(f"order must be one of {tuple(_ORDERS)}, got {self.order!r}")
        if not isinstance(data, SparkInteractions):
            raise TypeError(f"expected SparkInteractions, got {type(data).__name__}")

    def shared(self, gram: np.ndarray) -> np.ndarray:
        """The shared term ``G`` of the row problems: the Gram matrix (implicit) or zero."""
        return gram if self.estimator.feedback == "implicit" else np.zeros_like(gram)

    def _blocks_per_side(self, data: SparkInteractions) -> int:
        if self.n_blocks is not None:
            if int(self.n_blocks) < 1:
                raise ValueError(f"n_blocks must be >= 1, got {self.n_blocks!r}")
            return int(self.n_blocks)
        return int(data.spark.sparkContext.defaultParallelism)

    def blocks(self, data: SparkInteractions) -> dict[str, Any]:
        """The persisted rating blocks of both sides of ``data`` (built once per data set)."""
        key = self._blocks_key(data)
        if key not in data._cache:
            nb = self._blocks_per_side(data)
            data._cache[key] = {
                side: build_blocks(data, side, nb, self.spec()) for side in ("users", "items")
            }
        return data._cache[key]

    def _blocks_key(self, data: SparkInteractions) -> tuple:
        return ("blocks", self._blocks_per_side(data), self.spec())

    def carry_blocks(self, old: SparkInteractions, removal, *, scales: bool = False):
        """Derive the remaining data's blocks from ``old``'s cached ones (no rebuild).

        ``removal`` is ``old.remove(...)``; the model's factors must stand on
        ``removal.data``. Does nothing and returns ``None`` when ``old`` has no blocks for
        this objective (they are then built from the remaining data when first needed).
        With ``scales``, returns each side's row scales ``||b_r||`` at the model's factors
        (computed in the same jobs), else ``{}``.
        """
        key = self._blocks_key(old)
        if key not in old._cache:
            return None
        from recforget.spark.update import update_sides

        data = removal.data
        spec = self.spec()
        stats = None
        if spec.feedback == "implicit" and spec.weighting == "bm25":
            stats = data.row_stats()
        nb = self._blocks_per_side(old)
        out, sc = update_sides(
            old._cache[key],
            nb,
            spec,
            removal,
            stats=stats,
            factors=self._side_factors(nb) if scales else None,
        )
        data._cache[key] = out
        return sc or {}

    def carry_removal(
        self,
        old: SparkInteractions,
        plan,
        *,
        scales: bool = False,
        first: PassOptions | None = None,
    ):
        """Find a removal's entries in ``old``'s cached blocks while deriving the remaining
        data's blocks from them: one Spark job, no scan of the interactions.

        ``plan`` is ``old.plan_removal(...)``; the model's factors must stand on ``plan.data``
        (transplanted with the plan's maps). Returns ``(removal, scales, passed)`` (``scales``
        as for :meth:`carry_blocks`; with ``first`` and ``scales``, ``passed`` is the
        :class:`~recforget.spark.blocks.PassResult` of a pass over the new user blocks with
        those options, run in the same job, or ``None``), or ``None`` when ``old`` has no
        cached blocks for this objective or the route does not apply (see
        :func:`recforget.spark.update.remove_with_blocks`); then ``plan.scan()`` and
        :meth:`carry_blocks` do it in two steps.
        """
        key = self._blocks_key(old)
        if key not in old._cache:
            return None
        from recforget.spark.update import remove_with_blocks

        nb = self._blocks_per_side(old)
        got = remove_with_blocks(
            old._cache[key],
            nb,
            self.spec(),
            plan,
            factors=self._side_factors(nb) if scales else None,
            first=first,
        )
        if got is None:
            return None
        removal, blocks, sc, passed = got
        plan.data._cache[key] = blocks
        return removal, sc or {}, passed

    def _side_factors(self, nb: int) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per side: (its factors, the other side's, the shared term of its row problems)."""
        S = {"users": self.user_factors_, "items": self.item_factors_}
        with one_blas_thread():
            G = {s: self.shared(blocked_gram(S[s], nb)) for s in S}
        return {
            "users": (S["users"], S["items"], G["items"]),
            "items": (S["items"], S["users"], G["users"]),
        }

    # ------------------------------------------------------------------ training
    def fit(self, data: SparkInteractions) -> SparkALS:
        """Fit from the same random factors as ``ALS(**params).fit`` on the same data."""
        self._validate(data)
        est = self.estimator
        seed = resolve_seed(est.random_state)
        rng = check_random_state(seed)
        dtype = np.dtype(est.dtype)
        k = est.factors
        X = (rng.standard_normal((data.n_users, k)) * 0.01).astype(dtype)
        Y = (rng.standard_normal((data.n_items, k)) * 0.01).astype(dtype)
        self.seed_ = seed
        self._set_state(X, Y, data)
        return self.sweeps(data, est.iterations, grad_tol=est.grad_tol, tag="fit")

    def _set_state(self, X: np.ndarray, Y: np.ndarray, data: SparkInteractions) -> None:
        self.user_factors_ = X
        self.item_factors_ = Y
        self.users_ = data.users
        self.items_ = data.items
        self.seen_ = data

    def sweeps(
        self,
        data: SparkInteractions,
        n: int,
        *,
        grad_tol: float | None = None,
        solver: str | None = None,
        tag: str = "sweeps",
    ) -> SparkALS:
        """Up to ``n`` sweeps from the current factors, stopping when the certificate holds.

        Each sweep is two passes: the first side's pass also returns that side's gradient
        norms *before* solving, which with the second side's norms after its solve (same
        pass) are the certificate of the previous sweep's state; a certified state is kept
        and the surplus solve discarded. With ``checkpoint_dir``, a run with the same data,
        parameters and ``tag`` resumes after its last written sweep.
        """
        self._validate(data)
        if data.users != self.users_ or data.items != self.items_:
            raise ValueError("the data's vocabularies differ from the model's")
        est = self.estimator
        solver = est.solver if solver is None else solver
        nb = self._blocks_per_side(data)
        blocks = self.blocks(data)
        first, second = _ORDERS[self.order]
        S = {"users": self.user_factors_, "items": self.item_factors_}
        ckpt = _Checkpoint(self.checkpoint_dir, self._run_key(data, tag, n, grad_tol, solver))
        start_sweep, last_post = 0, None
        resumed = ckpt.load()
        if resumed is not None:
            start_sweep, S["users"], S["items"], last_post = resumed
        with one_blas_thread():
            G = {s: blocked_gram(S[s], nb) for s in S}
        base = dict(solver=solver, cg_steps=est.cg_steps, threads=self.threads)
        certify = grad_tol is not None
        reason, cert, done = "iterations", None, start_sweep
        self.sweep_seconds_ = []
        self.block_seconds_ = []  # per sweep: (first side's blocks, second side's blocks)
        for t in range(start_sweep + 1, n + 1):
            t0 = time.perf_counter()
            check = certify and last_post is not None
            r1 = run_pass(
                blocks[first],
                nb,
                S[first],
                S[second],
                self.shared(G[second]),
                PassOptions(pre=check, **base),
            )
            if check:
                cert = certificate(
                    np.concatenate([r1.g_pre, last_post[0]]),
                    np.concatenate([r1.b_pre, last_post[1]]),
                )
                if cert["max_relative"] <= grad_tol:
                    reason = "grad_tol"
                    break
            S[first], G[first] = r1.X, r1.gram
            r2 = run_pass(
                blocks[second],
                nb,
                S[second],
                S[first],
                self.shared(G[first]),
                PassOptions(post=certify, **base),
            )
            S[second], G[second] = r2.X, r2.gram
            last_post = (r2.g_post, r2.b_post) if certify else None
            done = t
            seconds = time.perf_counter() - t0
            self.sweep_seconds_.append(seconds)
            self.block_seconds_.append((r1.block_seconds, r2.block_seconds))
            ckpt.save(t, S["users"], S["items"], last_post)
            self._report(
                {
                    "sweep": t,
                    "seconds": seconds,
                    "max_relative": None if cert is None else cert["max_relative"],
                }
            )
        else:
            if certify:
                r1 = run_pass(
                    blocks[first],
                    nb,
                    S[first],
                    S[second],
                    self.shared(G[second]),
                    PassOptions(solve="none", pre=True, **base),
                )
                post = (
                    last_post
                    if last_post is not None
                    else self._residuals(
                        blocks[second], nb, S[second], S[first], self.shared(G[first]), base
                    )
                )
                cert = certificate(
                    np.concatenate([r1.g_pre, post[0]]), np.concatenate([r1.b_pre, post[1]])
                )
                if cert["max_relative"] <= grad_tol:
                    reason = "grad_tol"
        self._set_state(S["users"], S["items"], data)
        self.n_iter_ = done
        self.stop_reason_ = reason
        if cert is not None:
            self.certificate_ = cert
        return self

    @staticmethod
    def _residuals(blocks, nb, X, Y, G, base) -> tuple[np.ndarray, np.ndarray]:
        r = run_pass(blocks, nb, X, Y, G, PassOptions(solve="none", pre=True, **base))
        return r.g_pre, r.b_pre

    def _report(self, info: dict) -> None:
        if self.progress is not None:
            self.progress(info)

    def _run_key(self, data, tag, n, grad_tol, solver) -> str:
        desc = {
            "tag": tag,
            "n": n,
            "grad_tol": grad_tol,
            "solver": solver,
            "order": self.order,
            "n_blocks": self._blocks_per_side(data),
            "spec": self.spec().to_dict(),
            "data": data.fingerprint() if self.checkpoint_dir is not None else None,
            "start": hashlib.sha256(
                self.user_factors_.tobytes() + self.item_factors_.tobytes()
            ).hexdigest(),
        }
        return hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:24]

    # ------------------------------------------------------------------ objective
    def certify(self, tol: float | None = None) -> dict[str, Any]:
        """Objective and certificate on the data the model stands on, from scratch.

        Two passes (one per side, in one Spark job) with no solve: every row's gradient norm
        and the objective's terms, summed from the blocks.
        """
        data = self.seen_
        nb = self._blocks_per_side(data)
        blocks = self.blocks(data)
        est = self.estimator
        base = dict(solver=est.solver, cg_steps=est.cg_steps, threads=self.threads)
        X, Y = self.user_factors_, self.item_factors_
        with one_blas_thread():
            Gx, Gy = blocked_gram(X, nb), blocked_gram(Y, nb)
        explicit = est.feedback == "explicit"
        opts = PassOptions(solve="none", pre=True, loss=True, explicit=explicit, **base)
        # both sides at fixed factors: independent, so one Spark job
        ru, ri = run_passes(
            [
                (blocks["users"], X, Y, self.shared(Gy), opts),
                (blocks["items"], Y, X, self.shared(Gx), opts),
            ]
        )
        cert = certificate(
            np.concatenate([ru.g_pre, ri.g_pre]), np.concatenate([ru.b_pre, ri.b_pre])
        )
        objective = ru.loss_data + ru.loss_ridge + ri.loss_ridge
        if not explicit:
            objective += float(np.sum(Gx * Gy))
        out: dict[str, Any] = {"objective": objective, "certificate": {**cert, "tol": tol}}
        if tol is not None:
            out["certified"] = bool(cert["max_relative"] <= tol)
        return out

    def model_hash(self) -> str:
        """sha256 of the factors (as :meth:`recforget.ALS.model_hash`)."""
        h = hashlib.sha256()
        for arr in (self.user_factors_, self.item_factors_):
            h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()

    # ------------------------------------------------------------------ conversions
    def to_local(self, data=None) -> ALS:
        """The single-machine :class:`recforget.ALS` with these factors (collects the data)."""
        local = self.seen_.to_interactions() if data is None else data
        model = ALS.from_factors(
            self.user_factors_,
            self.item_factors_,
            local,
            **{k: v for k, v in self.params.items() if k != "factors"},
        )
        model.n_iter_ = getattr(self, "n_iter_", 0)
        model.stop_reason_ = getattr(self, "stop_reason_", "external")
        return model

    @classmethod
    def from_local(cls, model: ALS, spark, **options: Any) -> SparkALS:
        """Distribute a fitted single-machine model and the data it stands on."""
        model._check_fitted()
        params = {k: v for k, v in model.get_params().items() if k != "factors"}
        new = cls(model.factors, **options, **params)
        data = SparkInteractions.from_interactions(spark, model.seen_)
        new.seed_ = model.seed_
        new._set_state(model.user_factors_.copy(), model.item_factors_.copy(), data)
        new.n_iter_ = model.n_iter_
        new.stop_reason_ = model.stop_reason_
        return new

    @classmethod
    def from_spark(
        cls,
        path: str | Path,
        data: SparkInteractions,
        *,
        reg_param: float = 0.1,
        implicit_prefs: bool = False,
        alpha: float = 1.0,
        **options: Any,
    ) -> SparkALS:
        """From an MLlib ``ALSModel`` directory, with MLlib's objective and sweep order."""
        from recforget.spark.interop import read_als_model, spark_params

        sf = read_als_model(path)
        params = spark_params(reg_param=reg_param, implicit_prefs=implicit_prefs, alpha=alpha)
        options.setdefault("order", "items-first")
        new = cls(sf.rank, **{**params, **options})
        X = _align_ids(sf.user_ids, sf.user_factors, data.users, "user")
        Y = _align_ids(sf.item_ids, sf.item_factors, data.items, "item")
        new.seed_ = resolve_seed(None)
        new._set_state(X, Y, data)
        new.n_iter_, new.stop_reason_ = 0, "external"
        return new

    def to_spark(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write an MLlib ``ALSModel`` directory (integer ids)."""
        from recforget.spark.interop import write_als_model

        est = self.estimator
        extra = {
            "spark": {
                "regParam": float(est.regularization),
                "implicitPrefs": est.feedback == "implicit",
                "alpha": float(est.alpha),
            },
            "model_hash": self.model_hash(),
        }
        return write_als_model(
            path,
            self.users_.ids.astype(np.int64),
            self.user_factors_,
            self.items_.ids.astype(np.int64),
            self.item_factors_,
            extra=extra,
            overwrite=overwrite,
        )


def _align_ids(ids, F, vocab, name) -> np.ndarray:
    from recforget.spark.interop import _align

    return _align(ids, F, vocab, name)


class _Checkpoint:
    """Per-sweep factor state in Parquet: ``DIR/<run>/sweep-NNNNN/{users,items}.parquet``."""

    def __init__(self, root: str | Path | None, key: str) -> None:
        self.dir = None if root is None else Path(root) / f"run-{key}"

    def save(self, t: int, X: np.ndarray, Y: np.ndarray, post) -> None:
        if self.dir is None:
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.dir.mkdir(parents=True, exist_ok=True)
        final = self.dir / f"sweep-{t:05d}"
        tmp = self.dir / f".sweep-{t:05d}.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        for name, M in (("users", X), ("items", Y)):
            cols = {
                "row": pa.array(np.arange(len(M), dtype=np.int64)),
                "features": pa.FixedSizeListArray.from_arrays(pa.array(M.reshape(-1)), M.shape[1]),
            }
            pq.write_table(pa.table(cols), tmp / f"{name}.parquet")
        if post is not None:
            pq.write_table(pa.table({"g": post[0], "b": post[1]}), tmp / "post.parquet")
        os.replace(tmp, final)
        _write_json(self.dir / "state.json", {"sweep": t, "dtype": str(X.dtype)})
        for old in sorted(self.dir.glob("sweep-*"))[:-2]:  # keep the last two sweeps
            shutil.rmtree(old)

    def load(self):
        if self.dir is None or not (self.dir / "state.json").exists():
            return None
        import pyarrow.parquet as pq

        state = json.loads((self.dir / "state.json").read_text())
        where = self.dir / f"sweep-{state['sweep']:05d}"
        dtype = np.dtype(state["dtype"])
        mats = []
        for name in ("users", "items"):
            t = pq.read_table(where / f"{name}.parquet")
            f = t.column("features").combine_chunks()
            k = f.type.list_size
            mats.append(np.asarray(f.flatten().to_numpy(), dtype=dtype).reshape(-1, k).copy())
        post = None
        if (where / "post.parquet").exists():
            p = pq.read_table(where / "post.parquet")
            post = (p.column("g").to_numpy(), p.column("b").to_numpy())
        print(f"resuming from {where}", file=sys.stderr)
        return state["sweep"], mats[0], mats[1], post


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)
