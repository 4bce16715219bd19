"""Neural collaborative filtering (He et al., 2017) behind the estimator contract.

This module imports torch; nothing else in :mod:`recforget` imports it at import time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recforget._rng import check_random_state, resolve_seed
from recforget.data.errors import DataError
from recforget.data.interactions import Interactions
from recforget.io import load_model_dir, save_model_dir
from recforget.models._ncf_module import ARCHS, NCFModule, build_module
from recforget.models._trainer import (
    SCHEDULES,
    NCFTrainer,
    mean_bce,
    sample_negatives,
    training_pairs,
)
from recforget.models.base import Recommender

WEIGHTS_FILE = "weights.safetensors"
_SCORE_CELLS = 1 << 18  # (user, item) pairs per scoring chunk


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """torch intra-op threads set to ``n`` for the block (``None``: left alone)."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


class NCF(Recommender):
    """Neural collaborative filtering: GMF, MLP or NeuMF trained on implicit feedback.

    Every stored entry of the training data is a positive (implicit feedback: values, even 0,
    are ignored); each epoch draws ``negatives`` items per positive uniformly among the items
    the user has no entry for, and AdamW minimises the binary cross-entropy

    .. math::

        L = -\\frac{1}{N} \\Big[ \\sum_{(u,i) \\in \\mathcal{P}} \\log \\sigma(z_{ui})
            + \\sum_{(u,j) \\in \\mathcal{N}} \\log (1 - \\sigma(z_{uj})) \\Big]

    with decoupled weight decay. Logits: GMF :math:`z = h^\\top (p_u \\odot q_i) + b`;
    MLP :math:`z = h^\\top \\mathrm{tower}([p_u, q_i]) + b`; NeuMF feeds both branches, with
    separate embeddings, into one output layer (no pre-training).

    Parameters
    ----------
    arch : {"neumf", "gmf", "mlp"}
    factors : int
        Width of the GMF embeddings (GMF and NeuMF).
    layers : sequence of int
        MLP tower widths; ``layers[0]`` is the width of the concatenated user and item MLP
        embeddings (each ``layers[0] // 2``, as in the reference implementation), the last is
        the MLP's predictive factors. ``(64, 32, 16)`` is ``Linear(64, 32), ReLU,
        Linear(32, 16), ReLU``.
    epochs : int
    batch_size : int
    lr, weight_decay : float
        AdamW step size (its peak, under ``lr_schedule="cosine"``) and decoupled weight decay.
        The decay acts once per batch, so its effect over an epoch grows with
        ``nnz * (1 + negatives) / batch_size``. The defaults were chosen on held-out NDCG@10
        (docs/results.md): a much smaller ``lr`` barely trains in 20 epochs, a much larger
        ``weight_decay`` shrinks the model back to popularity.
    lr_schedule : {"cosine", "constant"}
        Step size over the batches of :meth:`fit`: cosine-annealed from ``lr`` to 0 over the
        ``epochs`` (default), or ``lr`` throughout. Annealing ends training near a minimum of
        the sampled loss instead of wherever the last noisy step left it, so two seeds (or a
        model and its retrain) end closer together, and the Newton steps of
        :mod:`recforget.unlearn.ncf`, which start from a stationary point, have less to undo
        (the measured effect is in docs/results.md).
        Fine-tuning (:meth:`train_epochs`) uses a constant step unless asked otherwise.
    negatives : int
        Negatives per positive per epoch.
    device : str or torch.device
        Where the network lives and trains (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...).
    num_threads : int or None
        torch intra-op CPU threads while this model trains or scores (restored afterwards);
        ``None`` leaves torch's setting alone. Small networks on a busy machine train much
        faster with 1.
    random_state : int, Generator or None
        Seed of initialisation (a torch Generator), negative sampling and shuffling (a numpy
        Generator); recorded as ``seed_``. On CPU the same seed (and thread count) gives a
        bit-identical model.

    Attributes
    ----------
    module_ : NCFModule
        The network (see :mod:`recforget.models._ncf_module` for its functional interface).
    users_, items_ : Vocabulary
    seen_ : Interactions
        The training data (the positives the model stands on).
    seed_ : int
    objective_reg_ : float
        Ridge :math:`\\lambda` of the fixed-sample retraining objective used by
        :meth:`certify` and the unlearners of :mod:`recforget.unlearn.ncf`: after :meth:`fit`,
        the value under which the trained network is closest to stationary
        (:func:`recforget.models._ncf_objective.calibrated_reg`). Saved with the model.
    loss_history_ : list of float
        Mean BCE of each epoch (on that epoch's negatives).
    epoch_seconds_ : list of float
    n_iter_ : int
        Epochs run.

    Notes
    -----
    :meth:`_score_rows` (and hence :meth:`score`, :meth:`recommend`) returns **logits**; use
    :meth:`predict_proba_rows` / :meth:`predict_proba` for probabilities. The ranking is the same.

    Examples
    --------
    >>> from recforget import Interactions
    >>> from recforget.models.ncf import NCF
    >>> data = Interactions.from_arrays([1, 1, 2, 3], ["a", "b", "a", "c"])
    >>> model = NCF("gmf", factors=4, epochs=2, random_state=0).fit(data)
    >>> model.predict_proba_rows([0]).shape
    (1, 3)
    """

    kind = "ncf"

    def __init__(
        self,
        arch: str = "neumf",
        factors: int = 32,
        *,
        layers: Sequence[int] = (64, 32, 16),
        epochs: int = 20,
        batch_size: int = 4096,
        lr: float = 5e-3,
        weight_decay: float = 0.2,
        lr_schedule: str = "cosine",
        negatives: int = 4,
        device: str | torch.device = "cpu",
        num_threads: int | None = None,
        random_state: int | np.random.Generator | None = None,
    ) -> None:
        self.arch = arch
        self.factors = factors
        self.layers = layers
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.lr_schedule = lr_schedule
        self.negatives = negatives
        self.device = device
        self.num_threads = num_threads
        self.random_state = random_state

    # ------------------------------------------------------------------ validation
    def _validate(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        for name, low in (("factors", 1), ("epochs", 0), ("batch_size", 1), ("negatives", 1)):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        layers = self.layers
        if (
            isinstance(layers, (str, bytes))
            or not isinstance(layers, Sequence)
            or len(layers) == 0
            or not all(isinstance(w, (int, np.integer)) and w >= 1 for w in layers)
        ):
            raise ValueError(
                f"layers must be a non-empty sequence of positive ints, got {layers!r}"
            )
        if self.arch != "gmf" and (layers[0] < 2 or layers[0] % 2):
            raise ValueError(
                f"layers[0] must be even (two embeddings of layers[0] // 2): {layers!r}"
            )
        if not (np.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if not (np.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be a number >= 0, got {self.weight_decay!r}")
        if self.lr_schedule not in SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {SCHEDULES}, got {self.lr_schedule!r}")
        n = self.num_threads
        if n is not None and (not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1):
            raise ValueError(f"num_threads must be None or an integer >= 1, got {n!r}")
        torch.device(self.device)  # raises on a malformed device string

    def _threads(self):
        return torch_threads(getattr(self, "num_threads", None))

    def _build(self, n_users: int, n_items: int, *, device: str = "meta") -> NCFModule:
        return build_module(
            self.arch,
            n_users,
            n_items,
            int(self.factors),
            [int(w) for w in self.layers],
            device=device,
        )

    # ------------------------------------------------------------------ training
    def fit(self, interactions: Interactions) -> NCF:
        """Train from a seeded initialisation on ``interactions``; returns ``self``."""
        self._validate()
        if not isinstance(interactions, Interactions):
            raise TypeError(f"fit expects Interactions, got {type(interactions).__name__}")
        if interactions.nnz == 0:
            raise DataError("no interactions to train on")
        seed = resolve_seed(self.random_state)
        init_seq, train_seq = np.random.SeedSequence(seed).spawn(2)
        gen = torch.Generator().manual_seed(int(init_seq.generate_state(1)[0]))
        # allocate without drawing from torch's global RNG, initialise on CPU, then move
        module = self._build(interactions.n_users, interactions.n_items).to_empty(device="cpu")
        module.reset_parameters(gen)
        self.module_ = module.to(torch.device(self.device))
        self.seed_ = seed
        self._set_state(interactions)
        self.loss_history_: list[float] = []
        self.epoch_seconds_: list[float] = []
        self.n_iter_ = 0
        self.train_epochs(
            interactions,
            self.epochs,
            random_state=np.random.default_rng(train_seq),
            schedule=self.lr_schedule,
        )
        from recforget.models._ncf_objective import calibrated_reg

        self.objective_reg_ = calibrated_reg(self)
        return self

    def trainer(
        self,
        data: Interactions | None = None,
        *,
        exclude: Interactions | None = None,
        ascent: bool = False,
        lr: float | None = None,
        random_state: int | np.random.Generator | None = None,
        schedule: str = "constant",
        total_epochs: int | None = None,
    ) -> NCFTrainer:
        """An :class:`NCFTrainer` for this model's network on ``data`` (default: ``seen_``).

        Fine-tuning is ``t = model.trainer(retained); t.train_epoch() ...; t.finalize()``; the
        model's ``seen_`` is not changed. The data must share the model's vocabularies.
        """
        self._check_fitted()
        data = self.seen_ if data is None else data
        self._check_vocab(data)
        if exclude is not None:
            self._check_vocab(exclude)
        return NCFTrainer(
            self.module_,
            data,
            negatives=self.negatives,
            batch_size=self.batch_size,
            lr=self.lr if lr is None else lr,
            weight_decay=self.weight_decay,
            exclude=exclude,
            ascent=ascent,
            random_state=random_state,
            schedule=schedule,
            total_epochs=total_epochs,
        )

    def train_epochs(
        self,
        data: Interactions,
        n: int,
        *,
        exclude: Interactions | None = None,
        ascent: bool = False,
        lr: float | None = None,
        random_state: int | np.random.Generator | None = None,
        schedule: str = "constant",
    ) -> NCF:
        """Run ``n`` epochs of a fresh trainer on ``data``; appends to ``loss_history_``.

        ``schedule="cosine"`` anneals the step size from ``lr`` to 0 over these ``n`` epochs.
        """
        trainer = self.trainer(
            data,
            exclude=exclude,
            ascent=ascent,
            lr=lr,
            random_state=random_state,
            schedule=schedule,
            total_epochs=max(int(n), 1),  # read by the cosine schedule only
        )
        for _ in range(n):
            with self._threads():
                stats = trainer.train_epoch()
            self.loss_history_.append(stats["loss"])
            self.epoch_seconds_.append(stats["seconds"])
            self.n_iter_ += 1
        trainer.finalize()
        return self

    @classmethod
    def from_module(cls, module: NCFModule, data: Interactions, **params: Any) -> NCF:
        """Wrap a network (e.g. one an unlearner produced) as a fitted model on ``data``.

        The module is used as is (not copied); ``arch``, ``factors`` and ``layers`` come from it.
        """
        cfg = module.config  # type: ignore[attr-defined]
        params = {
            "arch": cfg["arch"],
            **{k: cfg[k] for k in ("factors", "layers") if k in cfg},
            **params,
        }
        if "layers" in params:
            params["layers"] = tuple(params["layers"])
        model = cls(**params)
        model._validate()
        if (module.n_users, module.n_items) != data.shape:
            raise ValueError(f"module is {(module.n_users, module.n_items)}, data {data.shape}")
        model.module_ = module.to(torch.device(model.device)).eval()
        model.seed_ = resolve_seed(model.random_state)
        model._set_state(data)
        model.loss_history_, model.epoch_seconds_, model.n_iter_ = [], [], 0
        return model

    # ------------------------------------------------------------------ state
    def _set_state(self, data: Interactions) -> None:
        self.users_ = data.users
        self.items_ = data.items
        self.seen_ = data

    # ------------------------------------------------------------------ objective
    def sample_negatives(
        self,
        data: Interactions | None = None,
        n_neg: int | None = None,
        rng: int | np.random.Generator | None = None,
        *,
        exclude: Interactions | None = None,
    ) -> np.ndarray:
        """A fixed negative sample: int64 (data.nnz, n_neg) item indices aligned with entries.

        Defaults: the training data, ``self.negatives``, and a generator seeded from ``seed_``
        (so repeated calls return the same sample). Negatives avoid the positives of
        ``exclude`` (default ``data``).
        """
        self._check_fitted()
        data = self.seen_ if data is None else data
        self._check_vocab(data)
        rng = check_random_state(self.seed_ if rng is None else rng)
        return sample_negatives(
            data, self.negatives if n_neg is None else n_neg, rng, exclude=exclude
        )

    def loss(
        self, interactions: Interactions | None = None, negatives: np.ndarray | None = None
    ) -> float:
        """Mean BCE over the positives of ``interactions`` and a fixed negative sample.

        ``negatives`` (shape (nnz, n_neg), from :meth:`sample_negatives`) defaults to
        ``self.sample_negatives(interactions)``. Weight decay is not included.
        """
        self._check_fitted()
        data = self.seen_ if interactions is None else interactions
        self._check_vocab(data)
        if negatives is None:
            negatives = self.sample_negatives(data)
        with self._threads():
            return mean_bce(self.module_, *training_pairs(data, negatives))

    def certify(self, tol: float | None = None) -> dict[str, Any]:
        """Retraining objective and stationarity certificate on the data the model stands on.

        The objective is the fixed-sample one of :mod:`recforget.models._ncf_objective`: mean
        BCE over the positives of ``seen_`` and ``negatives`` seeded negatives per positive
        (drawn with ``seed_``), plus a ridge (sum form, ``reg``). Returns ``{"objective",
        "residual", "certificate": {"max_relative", "relative", ..., "tol"}, "certified"}``
        (``certified`` only when ``tol`` is given). One batched full-data gradient.
        """
        from recforget.models._ncf_objective import certify_model

        self._check_fitted()
        return certify_model(self, tol)

    # ------------------------------------------------------------------ scoring
    @torch.no_grad()
    def _logits_rows(self, user_idx: np.ndarray) -> torch.Tensor:
        self._check_fitted()
        module = self.module_.eval()
        dev = next(module.parameters()).device
        users = torch.as_tensor(np.asarray(user_idx, dtype=np.int64), device=dev)
        n_items = module.n_items
        out = torch.empty((len(users), n_items), dtype=torch.float32, device=dev)
        with self._threads():
            # each side's share of the head's first layer once per row (as in
            # NCFModule.pair_scorer), then the rest of the head per (user, item) cell
            ru, ri, combine = module.head.row_features(
                module.user_vectors(users), module.all_item_vectors()
            )
            step = max(1, _SCORE_CELLS // max(n_items, 1))
            for s in range(0, len(users), step):
                a = ru[s : s + step]
                b = len(a)
                z = combine(a.repeat_interleave(n_items, dim=0), ri.repeat(b, 1))
                out[s : s + b] = z.view(b, n_items)
        return out

    def _score_rows(self, user_idx: np.ndarray) -> np.ndarray:
        """Logits of the users (indices) against every item, float32 (n, n_items)."""
        return self._logits_rows(user_idx).cpu().numpy()

    def predict_proba_rows(self, user_idx: Iterable[int] | np.ndarray) -> np.ndarray:
        """Predicted probabilities ``sigmoid(logit)`` of user indices x all items, float32."""
        return torch.sigmoid(self._logits_rows(np.asarray(user_idx))).cpu().numpy()

    @torch.no_grad()
    def _score_pairs(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        out = np.empty(len(u), dtype=np.float64)
        dev = next(self.module_.parameters()).device
        self.module_.eval()
        with self._threads():
            for s in range(0, len(u), _SCORE_CELLS):
                uu = torch.as_tensor(np.asarray(u[s : s + _SCORE_CELLS], np.int64), device=dev)
                ii = torch.as_tensor(np.asarray(i[s : s + _SCORE_CELLS], np.int64), device=dev)
                out[s : s + len(uu)] = self.module_(uu, ii).cpu().numpy()
        return out

    def predict_proba(self, users: Iterable[object], items: Iterable[object]) -> np.ndarray:
        """Predicted probabilities of (user, item) pairs given as raw ids (float64)."""
        logits = self.score(users, items)
        return 1.0 / (1.0 + np.exp(-logits))

    # ------------------------------------------------------------------ persistence
    def _state_cpu(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().contiguous() for k, v in self.module_.state_dict().items()}

    def model_hash(self) -> str:
        """sha256 of the network weights (names and bytes, in name order)."""
        h = hashlib.sha256()
        for name, t in sorted(self._state_cpu().items()):
            h.update(name.encode())
            h.update(t.numpy().tobytes())
        return h.hexdigest()

    def save(
        self,
        path: str | Path,
        *,
        extra_manifest: dict[str, Any] | None = None,
        curvature: bool | None = None,
    ) -> Path:
        """Write ``weights.safetensors``, ``arrays.npz`` (vocabularies, training data),
        ``config.json`` and ``manifest.json`` to ``path`` (no pickle).

        The model decides about AltEraser's prepared curvature (``curvature.safetensors``,
        :func:`recforget.unlearn.ncf.prepare`), which :meth:`load` then restores: by default
        (``curvature=None``) it is written when the model has one for its current weights, so
        a chain of requests never prepares twice; ``True`` requires it (``ValueError`` before
        anything is written when there is none), ``False`` leaves it out. A curvature file left
        from an earlier save that is not rewritten is removed, so it can never stand beside
        other weights.
        """
        from safetensors.torch import save_file

        from recforget.models._ncf_curvature import (
            CURVATURE_FILE,
            current_curvature,
            require_curvature,
            save_curvature,
        )

        self._check_fitted()
        if curvature:
            require_curvature(self)  # fail before writing anything
        elif curvature is None:
            curvature = current_curvature(self) is not None
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tmp = path / (WEIGHTS_FILE + ".tmp")
        save_file(self._state_cpu(), tmp, metadata={"format": "pt", "model": "ncf"})
        tmp.replace(path / WEIGHTS_FILE)
        arrays = self._saved_data()
        params = self._saved_params()
        params["layers"] = [int(w) for w in params["layers"]]
        params["device"] = str(params["device"])
        manifest = self._manifest(weights=WEIGHTS_FILE)
        if hasattr(self, "objective_reg_"):
            manifest["objective_reg"] = float(self.objective_reg_)
        manifest["epoch_seconds"] = [float(t) for t in self.epoch_seconds_]
        if extra_manifest:
            manifest.update(extra_manifest)
        if curvature:
            save_curvature(self, path)
        elif (path / CURVATURE_FILE).exists():
            (path / CURVATURE_FILE).unlink()
        files = (WEIGHTS_FILE, CURVATURE_FILE) if curvature else (WEIGHTS_FILE,)
        return save_model_dir(
            path, kind="ncf", arrays=arrays, config=params, manifest=manifest, files=files
        )

    @classmethod
    def load(cls, path: str | Path, *, device: str | torch.device | None = None) -> NCF:
        """Read a model written by :meth:`save` (bit-exact); ``device`` overrides the saved one."""
        from safetensors.torch import load_file

        params, manifest, arrays = load_model_dir(path, "ncf")
        params["layers"] = tuple(params["layers"])
        if device is not None:
            params["device"] = str(device)
        model = cls(**params)
        data = cls._restored_data(arrays)
        weights = Path(path) / manifest.get("weights", WEIGHTS_FILE)
        if not weights.is_file():
            raise DataError(
                f"not an NCF model directory: {weights.name} is missing", file=str(path)
            )
        module = model._build(data.n_users, data.n_items).to_empty(device="cpu")
        module.load_state_dict(load_file(weights, device="cpu"), strict=True)
        model.module_ = module.to(torch.device(model.device)).eval()
        model._set_state(data)
        model._restore_manifest(manifest)
        model.epoch_seconds_ = [float(t) for t in manifest.get("epoch_seconds", [])]
        if manifest.get("objective_reg") is not None:
            model.objective_reg_ = float(manifest["objective_reg"])
        expected = manifest.get("model_hash")
        if expected is not None and model.model_hash() != expected:
            raise DataError("weights do not match the manifest's model_hash", file=str(weights))
        from recforget.models._ncf_curvature import CURVATURE_FILE, load_curvature

        if (Path(path) / CURVATURE_FILE).is_file():
            load_curvature(model, path)
        return model


def GMF(factors: int = 32, **params: Any) -> NCF:
    """``NCF(arch="gmf", ...)``."""
    return NCF("gmf", factors, **params)


def MLP(**params: Any) -> NCF:
    """``NCF(arch="mlp", ...)``."""
    return NCF("mlp", **params)


def NeuMF(factors: int = 32, **params: Any) -> NCF:
    """``NCF(arch="neumf", ...)``."""
    return NCF("neumf", factors, **params)


__all__ = ["GMF", "MLP", "NCF", "NeuMF", "torch_threads"]
