"""LensKit (2025.x) ``ImplicitMFScorer`` and ``BiasedMFScorer``: state files in and out of ALS.

LensKit persists trained pipelines with pickle, which recforget never reads. This module
defines a pickle-free *state directory* holding exactly what a LensKit ALS scorer consists
of: ``lenskit.json`` (scorer class, its pydantic config, LensKit version) and ``arrays.npz``
(user and item ids in LensKit's vocabulary order, the embeddings, and for ``BiasedMF`` the
bias model). :func:`state_of` / :func:`scorer_from_state` convert between a scorer object and
that state (they need only numpy and, for the scorer, LensKit itself); :func:`from_lenskit` /
:func:`to_lenskit` convert between the state and :class:`~recforget.ALS`.

Objectives (LensKit's ``als/_implicit.py`` and ``als/_explicit.py``):

* ``ImplicitMF`` factorises ``1 + weight * R`` with confidence weights: per user
  ``(Y^T Y + lambda I + Y^T (C_u - I) Y) x_u = Y^T C_u p_u`` with ``c = 1 + weight * r`` (``r`` is
  1, or the rating with ``use_ratings``) and a plain ``lambda``. That is recforget's implicit
  objective with ``weighting="linear"``, ``alpha = weight``, ``regularization_scaling="none"``.
* ``BiasedMF`` first fits a damped-mean bias model (global mean, item offsets, then user
  offsets, each ``sum / (count + damping)``) and then factorises the residuals with
  ``(Y_u^T Y_u + n_u lambda I) x_u = Y_u^T (r_u - b)``: recforget's explicit objective without
  learned biases, ``regularization_scaling="frequency"``, on the residuals. The bias model is
  a statistic of the data, so forgetting must recompute it on the remaining ratings: use
  :func:`forget_biased`, which does that and then certifies the factors on the new residuals.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from recforget.data.errors import DataError

KINDS = ("ImplicitMFScorer", "BiasedMFScorer")


# ---------------------------------------------------------------------- state files
def _id_array(ids: Any) -> np.ndarray:
    arr = np.asarray(list(ids))
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    return arr.astype(str)  # unicode, loadable without pickle


def save_state(path: str | Path, kind: str, config: dict[str, Any], arrays: dict) -> Path:
    """Write a LensKit scorer state directory (``lenskit.json`` + ``arrays.npz``)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    meta = {"class": kind, "config": config, "format": 1}
    try:
        import lenskit

        meta["lenskit_version"] = lenskit.__version__
    except ImportError:
        pass
    out = {k: np.asarray(v) for k, v in arrays.items()}
    out["user_ids"] = _id_array(arrays["user_ids"])
    out["item_ids"] = _id_array(arrays["item_ids"])
    np.savez(path / "arrays.npz", **out)
    (path / "lenskit.json").write_text(json.dumps(meta, indent=2) + "\n")
    return path


def load_state(path: str | Path) -> tuple[str, dict[str, Any], dict[str, np.ndarray]]:
    """Read a state directory: ``(kind, config, arrays)``; bad files raise DataError."""
    path = Path(path)
    meta_file = path / "lenskit.json"
    if not meta_file.is_file():
        raise DataError("not a LensKit state directory: lenskit.json is missing", file=str(path))
    try:
        meta = json.loads(meta_file.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON: {exc.msg}", file=str(meta_file), line=exc.lineno) from exc
    kind = meta.get("class")
    if kind not in KINDS:
        raise DataError(
            f"unsupported LensKit scorer {kind!r} (supported: {KINDS})", file=str(meta_file)
        )
    try:
        with np.load(path / "arrays.npz", allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError) as exc:
        raise DataError(f"unreadable arrays: {exc}", file=str(path / "arrays.npz")) from exc
    for key in ("user_ids", "item_ids", "user_embeddings", "item_embeddings"):
        if key not in arrays:
            raise DataError(f"missing array {key!r}", file=str(path / "arrays.npz"))
    n_u, n_i = len(arrays["user_ids"]), len(arrays["item_ids"])
    if arrays["user_embeddings"].shape[0] != n_u or arrays["item_embeddings"].shape[0] != n_i:
        raise DataError(
            f"embeddings {arrays['user_embeddings'].shape} / {arrays['item_embeddings'].shape} "
            f"do not match {n_u} user ids / {n_i} item ids",
            file=str(path / "arrays.npz"),
        )
    return kind, dict(meta.get("config", {})), arrays


# ---------------------------------------------------------------------- LensKit objects
def state_of(scorer: Any) -> tuple[str, dict[str, Any], dict[str, np.ndarray]]:
    """``(kind, config, arrays)`` of a trained LensKit ALS scorer (needs user embeddings)."""
    kind = type(scorer).__name__
    if kind not in KINDS:
        raise ValueError(f"only {KINDS} are supported, got {kind}")
    if scorer.user_embeddings is None or scorer.users is None:
        raise ValueError("the scorer kept no user embeddings (config user_embeddings=False)")
    arrays: dict[str, Any] = {
        "user_ids": scorer.users.ids(),
        "item_ids": scorer.items.ids(),
        "user_embeddings": np.asarray(scorer.user_embeddings),
        "item_embeddings": np.asarray(scorer.item_embeddings),
    }
    if kind == "BiasedMFScorer":
        b = scorer.bias
        arrays.update(_bias_arrays(b, len(arrays["user_ids"]), len(arrays["item_ids"])))
    return kind, scorer.config.model_dump(mode="json"), arrays


def _bias_arrays(b: Any, n_u: int, n_i: int) -> dict[str, np.ndarray]:
    damping = b.damping if isinstance(b.damping, dict) else {"user": b.damping, "item": b.damping}
    return {
        "global_bias": np.float64(b.global_bias),
        "user_biases": np.zeros(n_u, np.float32) if b.user_biases is None else b.user_biases,
        "item_biases": np.zeros(n_i, np.float32) if b.item_biases is None else b.item_biases,
        "damping": np.array([damping["user"], damping["item"]], np.float64),
    }


def scorer_from_state(kind: str, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> Any:
    """Rebuild the LensKit scorer object from a state (LensKit must be installed)."""
    from lenskit.als import BiasedMFScorer, ImplicitMFScorer
    from lenskit.data import Vocabulary

    cls = {"ImplicitMFScorer": ImplicitMFScorer, "BiasedMFScorer": BiasedMFScorer}[kind]
    scorer = cls(cls.config_class()(**config)) if hasattr(cls, "config_class") else cls(config)
    scorer.users = Vocabulary(arrays["user_ids"].tolist(), name="user", reorder=False)
    scorer.items = Vocabulary(arrays["item_ids"].tolist(), name="item", reorder=False)
    scorer.user_embeddings = np.ascontiguousarray(arrays["user_embeddings"], np.float32)
    scorer.item_embeddings = np.ascontiguousarray(arrays["item_embeddings"], np.float32)
    if kind == "ImplicitMFScorer":
        reg = scorer.config.user_reg
        Y = scorer.item_embeddings
        scorer._OtOr = Y.T @ Y + np.eye(Y.shape[1], dtype=Y.dtype) * reg
    else:
        from lenskit.basic.bias import BiasModel

        d = arrays["damping"]
        scorer.bias = BiasModel(
            {"user": float(d[0]), "item": float(d[1])},
            float(arrays["global_bias"]),
            items=scorer.items,
            item_biases=np.asarray(arrays["item_biases"], np.float32),
            users=scorer.users,
            user_biases=np.asarray(arrays["user_biases"], np.float32),
        )
    return scorer


# ---------------------------------------------------------------------- bias model
def bias_model(data: Any, damping: tuple[float, float]) -> dict[str, Any]:
    """LensKit's damped-mean bias model of ``data`` (Interactions of ratings), in numpy.

    ``mu`` is the mean rating; item offsets ``b_i = sum(r - mu) / (n_i + d_item)``; user offsets
    ``b_u = sum(r - mu - b_i) / (n_u + d_user)``, float32 as LensKit stores them.
    """
    r = data.values
    mu = float(np.mean(r)) if len(r) else 0.0
    rows, cols = data.row_of_entry, data.indices
    centered = r - mu
    counts = np.full(data.n_items, float(damping[1]))
    np.add.at(counts, cols, 1)
    sums = np.zeros(data.n_items)
    np.add.at(sums, cols, centered)
    b_i = np.zeros(data.n_items, np.float32)
    np.divide(sums, counts, out=b_i, where=counts > 0)
    centered = centered - b_i[cols]
    counts = np.full(data.n_users, float(damping[0]))
    np.add.at(counts, rows, 1)
    sums = np.zeros(data.n_users)
    np.add.at(sums, rows, centered)
    b_u = np.zeros(data.n_users, np.float32)
    np.divide(sums, counts, out=b_u, where=counts > 0)
    return {"global_bias": mu, "user_biases": b_u, "item_biases": b_i}


def residuals(data: Any, bias: dict[str, Any]) -> Any:
    """``data`` with each rating replaced by ``r - mu - b_i - b_u`` (float32 as in LensKit)."""
    b = (
        np.float32(bias["global_bias"])
        + bias["item_biases"][data.indices]
        + bias["user_biases"][data.row_of_entry]
    )
    return data.with_values((data.values.astype(np.float32) - b).astype(np.float32))


# ---------------------------------------------------------------------- ALS conversion
def als_params(kind: str, config: dict[str, Any]) -> dict[str, Any]:
    """recforget ALS parameters that reproduce a LensKit scorer's objective."""
    reg = config.get("regularization", 0.1)
    if isinstance(reg, dict):
        if float(reg["user"]) != float(reg["item"]):
            raise ValueError(
                "LensKit regularization differs for users and items "
                f"({reg['user']} vs {reg['item']}); recforget's ALS uses one value"
            )
        reg = reg["user"]
    common = {
        "regularization": float(reg),
        "iterations": int(config.get("epochs", 10)),
        "solver": "cholesky",
    }
    if kind == "ImplicitMFScorer":
        return {
            **common,
            "feedback": "implicit",
            "weighting": "linear",
            "alpha": float(config.get("weight", 40.0)),
            "regularization_scaling": "none",
        }
    return {
        **common,
        "feedback": "explicit",
        "biases": False,
        "regularization_scaling": "frequency",
    }


def training_data(kind: str, config: dict[str, Any], data: Any, arrays: dict) -> Any:
    """The data the ALS model stands on: ``data`` in LensKit's id order, transformed.

    ImplicitMF without ``use_ratings``: every value 1. BiasedMF: residuals under the saved
    bias model.
    """
    from recforget.data.vocab import Vocabulary

    users = Vocabulary(arrays["user_ids"].tolist(), name="user")
    items = Vocabulary(arrays["item_ids"].tolist(), name="item")
    for vocab, mine, what in ((users, data.users, "user"), (items, data.items, "item")):
        extra = vocab.unknown(mine.ids)
        if extra:
            raise DataError(
                f"{len(extra)} {what} id(s) of the data are not in the model, e.g. {extra[0]!r}"
            )
    data = data.reindex(users, items)
    if kind == "ImplicitMFScorer":
        if not config.get("use_ratings", False):
            return data.with_values(np.ones(data.nnz))
        if data.nnz and data.values.min() <= 0:
            raise DataError("ImplicitMF with use_ratings needs positive ratings")
        return data
    return residuals(data, {k: arrays[k] for k in ("global_bias", "user_biases", "item_biases")})


def from_lenskit(source: Any, data: Any) -> Any:
    """A fitted :class:`~recforget.ALS` from a LensKit scorer (object or state directory).

    ``data`` are the raw interactions the scorer was trained on (ratings for BiasedMF).
    A BiasedMF model comes back standing on the residuals; keep ``data`` for
    :func:`forget_biased`.
    """
    from recforget.models.als import ALS

    if isinstance(source, (str, Path)):
        kind, config, arrays = load_state(source)
    elif isinstance(source, tuple):
        kind, config, arrays = source
    else:
        kind, config, arrays = state_of(source)
    train = training_data(kind, config, data, arrays)
    model = ALS.from_factors(
        np.array(arrays["user_embeddings"]),
        np.array(arrays["item_embeddings"]),
        train,
        **als_params(kind, config),
    )
    model.lenskit_ = {"class": kind, "config": config}
    if kind == "BiasedMFScorer":
        model.lenskit_["bias"] = {
            k: arrays[k] for k in ("global_bias", "user_biases", "item_biases")
        }
        model.lenskit_["damping"] = tuple(float(x) for x in arrays["damping"])
    return model


def forget_biased(model: Any, raw: Any, request: Any, *, tol: float = 1e-3, max_sweeps: int = 500):
    """Forget ``request`` in an imported BiasedMF model; returns ``(model, raw_remaining, info)``.

    The bias model is refitted on the remaining ratings (LensKit's damped means), the
    residuals recomputed, and the factors swept from their old values until the stationarity
    certificate of the residual objective holds at ``tol``. ``raw`` are the raw ratings the
    model was imported with.
    """
    from recforget.unlearn.als import transplant

    damping = model.lenskit_["damping"]
    raw = raw.reindex(model.users_, model.items_)
    removal = raw.remove(pairs=request.pairs, users=request.users, items=request.items)
    bias = bias_model(removal.data, damping)
    new = transplant(model, removal)
    train = residuals(removal.data, bias)
    new.sweeps(train, max_sweeps, grad_tol=tol)
    new.lenskit_ = {**model.lenskit_, "bias": bias}
    return new, removal.data, new.certify(tol=tol)


def to_lenskit(model: Any, path: str | Path | None = None, *, like: Any = None):
    """``(kind, config, arrays)`` of ``model`` as a LensKit scorer; written to ``path`` if given.

    The scorer class and config come from ``like`` (a state directory or tuple, typically the
    one imported), else from the model: an implicit-feedback model with LensKit's objective
    (``weighting="linear"``, no frequency scaling) becomes an ``ImplicitMFScorer``. A
    BiasedMF model needs its bias model, which :func:`forget_biased` keeps on it.
    """
    model._check_fitted()
    info = dict(getattr(model, "lenskit_", None) or {})
    if like is not None:
        kind, config, like_arrays = load_state(like) if isinstance(like, (str, Path)) else like
        info.update({"class": kind, "config": config})
        if "damping" in like_arrays:
            info.setdefault("damping", tuple(float(x) for x in like_arrays["damping"]))
    elif not info:
        info = {"class": "ImplicitMFScorer", "config": {}}
    kind, config = info["class"], dict(info["config"])
    expected = als_params(kind, {**config, "epochs": model.iterations})
    expected.pop("iterations")
    mine = {k: getattr(model, k) for k in expected if k not in ("regularization", "alpha")}
    wanted = {k: v for k, v in expected.items() if k not in ("regularization", "alpha")}
    mine.pop("solver"), wanted.pop("solver")
    if mine != wanted:
        raise ValueError(f"the model's objective {mine} is not LensKit {kind}'s {wanted}")
    if kind == "BiasedMFScorer" and "bias" not in info:
        raise ValueError("a BiasedMF export needs its bias model: forget with forget_biased")
    config.update(
        embedding_size=int(model.factors),
        epochs=int(model.iterations),
        regularization=float(model.regularization),
    )
    if kind == "ImplicitMFScorer":
        config["weight"] = float(model.alpha)
        config.setdefault("use_ratings", bool(np.any(model.seen_.values != 1.0)))
    arrays: dict[str, Any] = {
        "user_ids": model.users_.ids.tolist(),
        "item_ids": model.items_.ids.tolist(),
        "user_embeddings": np.asarray(model.user_factors_, np.float32),
        "item_embeddings": np.asarray(model.item_factors_, np.float32),
    }
    if kind == "BiasedMFScorer":
        b = info["bias"]
        arrays.update(
            global_bias=np.float64(b["global_bias"]),
            user_biases=np.asarray(b["user_biases"], np.float32),
            item_biases=np.asarray(b["item_biases"], np.float32),
            damping=np.array(info.get("damping", (0.0, 0.0)), np.float64),
        )
    if path is not None:
        save_state(path, kind, config, arrays)
    return kind, config, arrays


__all__ = [
    "KINDS",
    "als_params",
    "bias_model",
    "forget_biased",
    "from_lenskit",
    "load_state",
    "residuals",
    "save_state",
    "scorer_from_state",
    "state_of",
    "to_lenskit",
]
