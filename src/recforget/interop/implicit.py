"""implicit (``AlternatingLeastSquares``, 0.7.x): its objects and its saved ``.npz`` files.

implicit's ALS minimises, over all cells of the ``user_items`` matrix it was fitted on,

.. math::
    \\sum_{u,i} c_{ui} (p_{ui} - x_u^\\top y_i)^2
        + \\lambda \\Big(\\sum_u \\|x_u\\|^2 + \\sum_i \\|y_i\\|^2\\Big)

with ``c = alpha * |r|`` and ``p = [r > 0]`` on stored entries and ``c = 1, p = 0`` elsewhere
(the matrix values *are* confidences; implicit multiplies them by ``alpha`` and adds no 1),
and a plain ``lambda`` (no frequency scaling), solved by Cholesky or by ``cg_steps``
conjugate-gradient steps per row. That is :class:`~recforget.ALS` with
``weighting="confidence"`` and ``regularization_scaling="none"``, which :func:`from_implicit`
sets, so forgetting minimises implicit's own objective on the remaining data.

implicit identifies users and items by their row numbers. :func:`to_implicit` keeps them: a
forgotten user's or item's row is written as zeros (it scores 0 and carries no data), so the
exported file is indexed exactly like the original.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from recforget.data.errors import DataError
from recforget.data.interactions import Interactions
from recforget.models.als import ALS

#: Keys of implicit 0.7's ``AlternatingLeastSquares.save`` (``np.savez``, no pickle).
SAVED_KEYS = (
    "user_factors",
    "item_factors",
    "regularization",
    "factors",
    "num_threads",
    "iterations",
    "use_native",
    "use_cg",
    "cg_steps",
    "calculate_training_loss",
    "dtype",
    "random_state",
    "alpha",
)


def read_npz(path: str | Path) -> dict[str, Any]:
    """The fields of a file written by implicit's ``AlternatingLeastSquares.save``.

    Read with ``allow_pickle=False``; a missing factor array or a GPU model's file raises
    :class:`~recforget.DataError` naming the file.
    """
    path = Path(path)
    if not path.is_file() and path.with_suffix(".npz").is_file():
        path = path.with_suffix(".npz")
    try:
        with np.load(path, allow_pickle=False) as f:
            fields = {k: f[k] for k in f.files}
    except (OSError, ValueError) as exc:
        raise DataError(f"not an implicit model file: {exc}", file=str(path)) from exc
    for key in ("user_factors", "item_factors"):
        if key not in fields or fields[key].ndim != 2:
            raise DataError(f"not an implicit ALS model file: no 2-d {key!r}", file=str(path))
    out: dict[str, Any] = {}
    for k, v in fields.items():
        if k == "dtype":
            out[k] = str(v)
        elif v.shape == ():
            out[k] = v.item()
        else:
            out[k] = v
    return out


def params_of(fields: dict[str, Any]) -> dict[str, Any]:
    """recforget ALS parameters that reproduce an implicit model's objective and solver."""
    dtype = str(fields.get("dtype", "float32"))
    seed = fields.get("random_state")
    return {
        "regularization": float(fields.get("regularization", 0.01)),
        "alpha": float(fields.get("alpha", 1.0)),
        "weighting": "confidence",
        "regularization_scaling": "none",
        "feedback": "implicit",
        "iterations": int(fields.get("iterations", 15)),
        "solver": "cg" if bool(fields.get("use_cg", True)) else "cholesky",
        "cg_steps": int(fields.get("cg_steps", 3)),
        "dtype": dtype if dtype in ("float32", "float64") else "float32",
        "random_state": int(seed) if isinstance(seed, (int, np.integer)) else None,
    }


def _fields_of_model(model: Any) -> dict[str, Any]:
    """The saved fields of an in-memory ``AlternatingLeastSquares`` (CPU) object."""
    if hasattr(model, "to_cpu") and not isinstance(model.user_factors, np.ndarray):
        model = model.to_cpu()
    fields = {k: getattr(model, k, None) for k in SAVED_KEYS}
    if fields["user_factors"] is None or fields["item_factors"] is None:
        raise ValueError("the implicit model is not fitted (no user_factors / item_factors)")
    fields["dtype"] = np.dtype(fields["dtype"] or np.float32).name
    return fields


def data_from_matrix(user_items: Any, shape: tuple[int, int]) -> Interactions:
    """Interactions with ids ``0..n-1`` from the ``user_items`` matrix a model was fitted on.

    ``shape`` is the model's ``(n_users, n_items)``: a smaller matrix is padded (implicit
    keeps factors for rows beyond it), a larger one is an error.
    """
    csr = sp.csr_array(user_items)
    if csr.shape[0] > shape[0] or csr.shape[1] > shape[1]:
        raise DataError(
            f"the data is {csr.shape[0]} users x {csr.shape[1]} items; the model has only "
            f"{shape[0]} x {shape[1]} factor rows"
        )
    if csr.shape != shape:
        csr = sp.csr_array((csr.data, csr.indices, csr.indptr), shape=(csr.shape[0], shape[1]))
        csr = sp.vstack([csr, sp.csr_array((shape[0] - csr.shape[0], shape[1]))]).tocsr()
    return Interactions.from_csr(csr)


def from_implicit(source: Any, data: Interactions | Any) -> ALS:
    """A fitted :class:`~recforget.ALS` from an implicit model and the data it was fitted on.

    Parameters
    ----------
    source : AlternatingLeastSquares, or str / Path of its saved ``.npz``
    data : Interactions or scipy sparse matrix of shape (n_users, n_items)
        The ``user_items`` matrix the model was fitted on (raw values: implicit multiplies by
        ``alpha`` itself). An :class:`Interactions` must have integer ids that are the factor
        row numbers (``0..n-1``; absent ids are rows without data).
    """
    fields = read_npz(source) if isinstance(source, (str, Path)) else _fields_of_model(source)
    X = np.array(fields["user_factors"])  # copies: implicit updates its arrays in place
    Y = np.array(fields["item_factors"])
    shape = (X.shape[0], Y.shape[0])
    if isinstance(data, Interactions):
        data = _by_row_number(data, shape)
    else:
        data = data_from_matrix(data, shape)
    return ALS.from_factors(X, Y, data, **params_of(fields))


def _by_row_number(data: Interactions, shape: tuple[int, int]) -> Interactions:
    """``data`` re-indexed so that id ``r`` is row ``r`` (ids must be integers < shape)."""
    from recforget.data.vocab import Vocabulary

    for vocab, n, what in ((data.users, shape[0], "user"), (data.items, shape[1], "item")):
        if len(vocab) and not vocab.is_integer:
            raise DataError(f"implicit {what}s are row numbers; the data's {what} ids are not")
        ids = vocab.ids.astype(np.int64) if len(vocab) else np.empty(0, np.int64)
        if len(ids) and (ids.min() < 0 or ids.max() >= n):
            bad = ids[(ids < 0) | (ids >= n)][0]
            raise DataError(f"{what} id {bad} is not a row of the model's {n} {what} factors")
    return data.reindex(
        Vocabulary(np.arange(shape[0]), name="user"), Vocabulary(np.arange(shape[1]), name="item")
    )


def to_implicit(model: ALS, path: str | Path | None = None, *, like: Any = None) -> Any:
    """Write ``model`` back in implicit's format; returns the ``AlternatingLeastSquares``.

    Rows are placed at their original row numbers (the model's integer ids); rows of
    forgotten users or items are zeros, and the arrays keep at least ``like``'s number of
    rows (so a forgotten last user still has its zero row). ``like`` (an implicit model, or
    its saved fields) supplies the settings implicit keeps that recforget does not (``num_threads``,
    ``use_native``, ``calculate_training_loss``). With ``path`` the ``.npz`` is written with
    implicit's own ``save``.
    """
    from implicit.cpu.als import AlternatingLeastSquares

    model._check_fitted()
    if model.feedback != "implicit" or model.weighting != "confidence":
        raise ValueError(
            "only a model with implicit's objective (feedback='implicit', "
            "weighting='confidence') can be written as an implicit model"
        )
    if model.regularization_scaling != "none":
        raise ValueError("implicit's regularisation is not frequency-scaled")
    extra: dict[str, Any] = {}
    if like is not None:
        extra = read_npz(like) if isinstance(like, (str, Path)) else _fields_of_model(like)
    rows = {k: len(extra[k]) if k in extra else 0 for k in ("user_factors", "item_factors")}
    X = _by_number(model.user_factors_, model.users_, "user", rows["user_factors"])
    Y = _by_number(model.item_factors_, model.items_, "item", rows["item_factors"])
    out = AlternatingLeastSquares(
        factors=model.factors,
        regularization=model.regularization,
        alpha=model.alpha,
        dtype=np.dtype(model.dtype),
        use_native=bool(extra.get("use_native", True)),
        use_cg=model.solver == "cg",
        iterations=model.iterations,
        calculate_training_loss=bool(extra.get("calculate_training_loss", False)),
        num_threads=int(extra.get("num_threads", 0)),
        random_state=model.seed_,
    )
    out.cg_steps = model.cg_steps
    out.user_factors = X
    out.item_factors = Y
    if path is not None:
        out.save(str(path))
    return out


def _by_number(factors: np.ndarray, vocab: Any, what: str, at_least: int = 0) -> np.ndarray:
    if len(vocab) and not vocab.is_integer:
        raise ValueError(f"implicit needs integer {what} ids (row numbers)")
    ids = vocab.ids.astype(np.int64) if len(vocab) else np.empty(0, np.int64)
    if len(ids) and ids.min() < 0:
        raise ValueError(f"negative {what} id {ids.min()} cannot be an implicit row number")
    n = max(int(ids.max()) + 1 if len(ids) else 0, at_least)
    out = np.zeros((n, factors.shape[1]), dtype=factors.dtype)
    out[ids] = factors
    return out


__all__ = [
    "SAVED_KEYS",
    "data_from_matrix",
    "from_implicit",
    "params_of",
    "read_npz",
    "to_implicit",
]
