"""Alternating least squares for implicit and explicit feedback."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from recforget._rng import check_random_state, resolve_seed
from recforget._threads import one_blas_thread, single_blas
from recforget.data.interactions import Interactions
from recforget.io import load_model_dir, save_model_dir
from recforget.kernels.weighting import WEIGHTINGS
from recforget.models._als_objective import ALSObjective, Factors
from recforget.models._als_sweeps import DEFAULT_ACCELERATION, check_accelerate, run_sweeps
from recforget.models._certificate import certified
from recforget.models.base import Recommender

_CHOICES = {
    "feedback": ("implicit", "explicit"),
    "weighting": WEIGHTINGS,
    "regularization_scaling": ("none", "frequency"),
    "solver": ("cholesky", "cg"),
    "dtype": ("float32", "float64"),
}


class ALS(Recommender):
    """Matrix factorisation by alternating least squares (bi-linear model ``s = x_u . y_i``).

    Implicit feedback minimises the Hu-Koren-Volinsky weighted objective over all cells,
    explicit feedback the squared error over observed ratings (optionally with biases); see
    :class:`recforget.models._als_objective.ALSObjective` for the exact formulas. Each sweep
    solves every user row with items fixed, then every item row with users fixed, with the
    kernels of :mod:`recforget.kernels.als` (the same kernels the unlearning methods use).

    Parameters
    ----------
    factors : int
        Latent dimension ``k``.
    regularization : float
        Ridge weight ``lambda``.
    feedback : {"implicit", "explicit"}
    alpha : float
        Implicit feedback: confidence ``c = 1 + alpha * w(r)``.
    weighting : {"linear", "log", "bm25", "confidence"}
        Implicit feedback: ``w(r)`` (see :mod:`recforget.kernels.weighting`). BM25 uses global
        statistics, recomputed from whatever data the objective is built on. ``"confidence"``
        is implicit's convention: ``c = alpha * |r|`` itself (no ``1 +``), ``p = [r > 0]``.
    biases : bool
        Explicit feedback: learn a global mean and user/item biases.
    regularization_scaling : {"none", "frequency"}
        ``"frequency"`` scales each row's ``lambda`` by its number of entries (ALS-WR, Spark).
    iterations : int
        Maximum number of sweeps.
    tol : float or None
        Stop when a sweep lowers the objective by less than ``tol`` relative to its value.
    grad_tol : float or None
        Stop when the stationarity certificate holds at ``grad_tol``: every row's relative
        residual (its gradient norm over its own gradient-at-zero norm, floored) is at most
        ``grad_tol`` (:mod:`recforget.models._certificate`). This is the stopping rule the
        unlearning methods certify against, so a retrain with ``grad_tol`` is compared like
        with like.
        With neither ``tol`` nor ``grad_tol``, all ``iterations`` are run. ``stop_reason_``
        records which rule stopped the fit.
    solver : {"cholesky", "cg"}
        Exact per-row Cholesky solve, or ``cg_steps`` warm-started conjugate-gradient steps.
    cg_steps : int
    accelerate : {"auto", "ncg", "anderson", None}
        Sweep driver (:mod:`recforget.models._als_sweeps`): ``None`` runs plain ALS sweeps,
        ``"ncg"`` ALS-NCG (nonlinear conjugate gradient preconditioned by the sweep, with an
        exact line search), ``"anderson"`` safeguarded Anderson mixing of the sweeps. Each
        iteration costs one sweep and the objective never increases. ``"auto"`` (default)
        uses ``"anderson"`` when sweeping to a certificate (``grad_tol``) and plain sweeps for a
        fixed number of iterations, so ``ALS(iterations=15)`` is classic ALS.
    dtype : {"float32", "float64"}
        Factor precision (systems are solved in float64 either way).
    bm25_k1, bm25_b, log_epsilon : float
        Parameters of the BM25 and log weightings.
    random_state : int, Generator or None
        Seed of the factor initialisation (recorded as ``seed_``).
    show_progress : bool

    Attributes
    ----------
    user_factors_ : ndarray of shape (n_users, factors)
    item_factors_ : ndarray of shape (n_items, factors)
    user_bias_, item_bias_ : ndarray or None
    global_mean_ : float
    users_, items_ : Vocabulary
    seen_ : Interactions
        The data the model stands on.
    loss_history_ : list of float
        Objective after each sweep (when ``tol`` is set or ``track_loss``).
    n_iter_ : int
    stop_reason_ : {"iterations", "tol", "grad_tol"}
    driver_ : {"plain", "ncg", "anderson"}
        The sweep driver the last fit or ``sweeps`` call used.
    sweep_trace_ : list of dict
        With ``grad_tol``: ``{"sweep", "seconds", "max_relative"}`` after every iteration.
    seed_ : int

    Examples
    --------
    >>> from recforget import ALS, Interactions
    >>> data = Interactions.from_arrays([1, 1, 2, 3], ["a", "b", "a", "c"])
    >>> model = ALS(factors=2, iterations=3, random_state=0).fit(data)
    >>> model.user_factors_.shape
    (3, 2)
    """

    def __init__(
        self,
        factors: int = 64,
        *,
        regularization: float = 0.05,
        feedback: str = "implicit",
        alpha: float = 10.0,
        weighting: str = "linear",
        biases: bool = False,
        regularization_scaling: str = "none",
        iterations: int = 15,
        tol: float | None = None,
        grad_tol: float | None = None,
        solver: str = "cholesky",
        cg_steps: int = 3,
        accelerate: str | None = "auto",
        dtype: str = "float32",
        bm25_k1: float = 100.0,
        bm25_b: float = 0.8,
        log_epsilon: float = 1.0,
        track_loss: bool = False,
        random_state: int | np.random.Generator | None = None,
        show_progress: bool = False,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.feedback = feedback
        self.alpha = alpha
        self.weighting = weighting
        self.biases = biases
        self.regularization_scaling = regularization_scaling
        self.iterations = iterations
        self.tol = tol
        self.grad_tol = grad_tol
        self.solver = solver
        self.cg_steps = cg_steps
        self.accelerate = accelerate
        self.dtype = dtype
        self.bm25_k1 = bm25_k1
        self.bm25_b = bm25_b
        self.log_epsilon = log_epsilon
        self.track_loss = track_loss
        self.random_state = random_state
        self.show_progress = show_progress

    # ------------------------------------------------------------------ validation
    def _validate(self) -> None:
        for name, choices in _CHOICES.items():
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {getattr(self, name)!r}")
        for name in ("factors", "iterations", "cg_steps"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("regularization", "alpha", "bm25_k1", "log_epsilon"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if not 0 <= self.bm25_b <= 1:
            raise ValueError(f"bm25_b must be in [0, 1], got {self.bm25_b!r}")
        for name in ("tol", "grad_tol"):
            value = getattr(self, name)
            if value is not None and not (np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be None or a positive number, got {value!r}")
        if self.accelerate != "auto":
            check_accelerate(self.accelerate)
        if self.feedback == "explicit" and self.regularization == 0:
            raise ValueError("explicit feedback needs regularization > 0 (rows may be singular)")

    @single_blas
    def objective(self, data: Interactions) -> ALSObjective:
        """The objective this model's parameters define on ``data`` (built from ``data`` alone)."""
        return ALSObjective(
            data,
            feedback=self.feedback,
            regularization=self.regularization,
            regularization_scaling=self.regularization_scaling,
            alpha=self.alpha,
            weighting=self.weighting,
            biases=self.biases,
            dtype=np.dtype(self.dtype),
            bm25_k1=self.bm25_k1,
            bm25_b=self.bm25_b,
            log_epsilon=self.log_epsilon,
        )

    # ------------------------------------------------------------------ training
    def fit(self, interactions: Interactions) -> ALS:
        """Fit from random factors on ``interactions``; returns ``self``."""
        self._validate()
        if not isinstance(interactions, Interactions):
            raise TypeError(f"fit expects Interactions, got {type(interactions).__name__}")
        seed = resolve_seed(self.random_state)
        rng = check_random_state(seed)
        dtype = np.dtype(self.dtype)
        k = self.factors
        X = (rng.standard_normal((interactions.n_users, k)) * 0.01).astype(dtype)
        Y = (rng.standard_normal((interactions.n_items, k)) * 0.01).astype(dtype)
        explicit_biases = self.feedback == "explicit" and self.biases
        F = Factors(
            X,
            Y,
            np.zeros(interactions.n_users, dtype=dtype) if explicit_biases else None,
            np.zeros(interactions.n_items, dtype=dtype) if explicit_biases else None,
        )
        self.seed_ = seed
        self._set_state(F, interactions)
        self.sweeps(interactions, self.iterations, tol=self.tol, grad_tol=self.grad_tol, fresh=True)
        return self

    def sweeps(
        self,
        interactions: Interactions,
        n: int,
        *,
        tol: float | None = None,
        grad_tol: float | None = None,
        fresh: bool = False,
        accelerate: str | None = "auto",
        inner_tol: float | None = None,
        forcing: float | None = None,
        finish: float | None = None,
    ) -> ALS:
        """Run up to ``n`` ALS sweeps on ``interactions`` starting from the current factors.

        Used by ``fit`` (from random factors) and by warm-start unlearning. The data must share
        the model's vocabularies. ``accelerate`` overrides the model's driver for this call
        (``"auto"``: the model's ``accelerate`` parameter). ``inner_tol`` (CG rows only) solves
        each row to that relative residual, ``cg_steps`` being a cap, instead of running
        ``cg_steps`` iterations on every row; ``forcing`` (with ``inner_tol``) loosens that
        target while a row is far from its solution; ``finish`` (with ``grad_tol``) is the
        share of failing rows at which a selective finish is tried (``None``: the default,
        ``0``: never; see ``run_sweeps``). Sets ``n_iter_``,
        ``stop_reason_``, ``loss_history_``, ``sweep_trace_`` and, with ``grad_tol``,
        ``certificate_`` (the last stationarity check).
        """
        self._check_fitted()
        self._check_vocab(interactions)
        driver = self._driver(accelerate, grad_tol)
        obj = self.objective(interactions)
        F = self._factors()
        start = time.perf_counter()
        with one_blas_thread():
            run = run_sweeps(
                obj,
                F,
                n,
                solver=self.solver,
                cg_steps=self.cg_steps,
                tol=tol,
                grad_tol=grad_tol,
                accelerate=driver,
                inner_tol=inner_tol,
                forcing=forcing,
                finish=finish,
                track_loss=self.track_loss,
                progress=self.show_progress,
            )
        if run.certificate is not None:
            self.certificate_ = run.certificate
        self._set_state(F, interactions)
        self.n_iter_ = run.sweeps
        self.stop_reason_ = run.reason
        self.driver_ = driver or "plain"
        self.sweep_trace_ = run.trace
        self.finish_ = {
            "attempts": run.finish_attempts,
            "rounds": run.finish_rounds,
            "rows": run.finish_users + run.finish_items,
            "users": run.finish_users,
            "items": run.finish_items,
            "finished": run.finished,
        }
        self.loss_history_ = (
            run.history
            if fresh or not hasattr(self, "loss_history_")
            else (self.loss_history_ + run.history)
        )
        self.fit_seconds_ = time.perf_counter() - start
        return self

    def _driver(self, accelerate: str | None, grad_tol: float | None) -> str | None:
        """The sweep driver for one call: ``accelerate`` unless "auto", else the model's."""
        choice = self.accelerate if accelerate == "auto" else accelerate
        if choice == "auto":
            return DEFAULT_ACCELERATION if grad_tol is not None else None
        return check_accelerate(choice)

    @classmethod
    def from_factors(
        cls,
        user_factors: np.ndarray,
        item_factors: np.ndarray,
        data: Interactions,
        *,
        user_bias: np.ndarray | None = None,
        item_bias: np.ndarray | None = None,
        **params: Any,
    ) -> ALS:
        """Wrap factors trained by any procedure (SGD, BPR, implicit, ...) as a fitted model.

        The rows must follow ``data``'s vocabularies; ``params`` define the objective that
        unlearning will minimise on the remaining data (the factors need not be a minimiser
        of it: the unlearning sweeps make them one).
        """
        model = cls(factors=int(np.shape(user_factors)[1]), **params)
        model._validate()
        dtype = np.dtype(model.dtype)
        X = np.ascontiguousarray(user_factors, dtype=dtype)
        Y = np.ascontiguousarray(item_factors, dtype=dtype)
        if X.ndim != 2 or Y.ndim != 2 or X.shape[1] != Y.shape[1]:
            raise ValueError(f"factor shapes {X.shape} and {Y.shape} do not match")
        if X.shape[0] != data.n_users or Y.shape[0] != data.n_items:
            raise ValueError(
                f"factors have {X.shape[0]} users x {Y.shape[0]} items; the data has "
                f"{data.n_users} x {data.n_items}"
            )
        if not (np.all(np.isfinite(X)) and np.all(np.isfinite(Y))):
            raise ValueError("factors contain NaN or inf")
        needs_bias = model.feedback == "explicit" and model.biases
        bu = bi = None
        if needs_bias:
            bu = np.zeros(len(X), dtype) if user_bias is None else np.asarray(user_bias, dtype)
            bi = np.zeros(len(Y), dtype) if item_bias is None else np.asarray(item_bias, dtype)
        model.seed_ = resolve_seed(model.random_state)
        model._set_state(Factors(X, Y, bu, bi), data)
        model.n_iter_ = 0
        model.stop_reason_ = "external"
        model.loss_history_ = []
        return model

    # ------------------------------------------------------------------ state
    def _set_state(self, F: Factors, data: Interactions) -> None:
        self.user_factors_ = F.X
        self.item_factors_ = F.Y
        self.user_bias_ = F.bu
        self.item_bias_ = F.bi
        self.global_mean_ = self.objective(data).global_mean if self.biases else 0.0
        self.users_ = data.users
        self.items_ = data.items
        self.seen_ = data

    def _factors(self) -> Factors:
        return Factors(self.user_factors_, self.item_factors_, self.user_bias_, self.item_bias_)

    # ------------------------------------------------------------------ objective
    @single_blas
    def loss(self, interactions: Interactions | None = None) -> float:
        """The exact objective being minimised, on ``interactions`` (default: training data)."""
        self._check_fitted()
        data = self.seen_ if interactions is None else interactions
        self._check_vocab(data)
        return self.objective(data).loss(self._factors())

    def stationarity(self, interactions: Interactions | None = None) -> dict[str, float]:
        """Gradient-norm certificate of the objective on ``interactions`` (default: training)."""
        self._check_fitted()
        data = self.seen_ if interactions is None else interactions
        self._check_vocab(data)
        return self.objective(data).stationarity(self._factors())

    @single_blas
    def certify(self, tol: float | None = None) -> dict[str, Any]:
        """Objective and stationarity certificate on the data the model stands on.

        Returns ``{"objective", "certificate": {..., "tol"}, "certified"}`` (``certified`` only
        when ``tol`` is given): the receipt's proof that the model is a stationary point of the
        objective built on its own data.
        """
        self._check_fitted()
        obj = self.objective(self.seen_)
        F = self._factors()
        cert = obj.stationarity(F)
        out: dict[str, Any] = {"objective": obj.loss(F), "certificate": {**cert, "tol": tol}}
        if tol is not None:
            out["certified"] = certified(cert, tol)
        return out

    # ------------------------------------------------------------------ scoring
    def _score_rows(self, user_idx: np.ndarray) -> np.ndarray:
        scores = self.user_factors_[user_idx] @ self.item_factors_.T
        if self.user_bias_ is not None:
            scores = scores + (self.global_mean_ + self.user_bias_[user_idx])[:, None]
            scores = scores + self.item_bias_[None, :]
        return scores

    def _score_pairs(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        X = self.user_factors_[u].astype(np.float64)
        s = np.einsum("ij,ij->i", X, self.item_factors_[i].astype(np.float64))
        if self.user_bias_ is not None:
            s += self.global_mean_ + self.user_bias_[u] + self.item_bias_[i]
        return s

    def model_hash(self) -> str:
        """sha256 of the learned arrays (factors and biases)."""
        import hashlib

        h = hashlib.sha256()
        for arr in (self.user_factors_, self.item_factors_, self.user_bias_, self.item_bias_):
            if arr is not None:
                h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path, *, extra_manifest: dict[str, Any] | None = None) -> Path:
        """Write ``arrays.npz`` + ``config.json`` + ``manifest.json`` (no pickle) to ``path``.

        The training interactions are saved too: unlearning needs the data the model stands on.
        """
        self._check_fitted()
        arrays = {
            "user_factors": self.user_factors_,
            "item_factors": self.item_factors_,
            **self._saved_data(),
        }
        if self.user_bias_ is not None:
            arrays["user_bias"] = self.user_bias_
            arrays["item_bias"] = self.item_bias_
        params = self._saved_params()
        manifest = self._manifest(stop_reason=self.stop_reason_, global_mean=self.global_mean_)
        if extra_manifest:
            manifest.update(extra_manifest)
        return save_model_dir(path, kind="als", arrays=arrays, config=params, manifest=manifest)

    @classmethod
    def load(cls, path: str | Path) -> ALS:
        """Read a model written by :meth:`save` (bit-exact)."""
        params, manifest, arrays = load_model_dir(path, "als")
        model = cls(**params)
        data = cls._restored_data(arrays)
        F = Factors(
            np.ascontiguousarray(arrays["user_factors"]),
            np.ascontiguousarray(arrays["item_factors"]),
            arrays.get("user_bias"),
            arrays.get("item_bias"),
        )
        model._set_state(F, data)
        model.global_mean_ = float(manifest.get("global_mean", 0.0))
        model._restore_manifest(manifest)
        model.stop_reason_ = manifest["stop_reason"]
        return model
