"""Spark MLlib ``ALSModel`` directories, read and written with pyarrow (no JVM).

An ``ALSModel`` saved by ``pyspark.ml.recommendation.ALSModel.write().save(path)`` is::

    path/metadata/part-00000        one JSON line: class, uid, sparkVersion, paramMap, rank
    path/userFactors/*.parquet      id: int32, features: array<float32>
    path/itemFactors/*.parquet

The metadata does not record the training parameters (``regParam``, ``alpha``,
``implicitPrefs``): MLlib's model only scores. :func:`spark_params` maps them, given by the
caller, to the :class:`~recforget.ALS` parameters that reproduce MLlib's objective exactly:

* explicit feedback: ``sum_(u,i) (r_ui - x_u.y_i)^2 + regParam * (sum_u n_u |x_u|^2 +
  sum_i n_i |y_i|^2)``, ``n`` a row's number of ratings (ALS-WR);
* implicit feedback (``implicitPrefs=True``): confidence ``1 + alpha |r|``, preference
  ``1[r > 0]`` over all cells, the same frequency-scaled ridge (MLlib counts the ratings
  ``r > 0``; recforget needs ``r >= 0`` and counts every stored entry, so the two agree when
  every rating is positive, which is what implicit data holds).

MLlib solves items first, then users; :func:`spark_sweep` does one such sweep with the
single-machine kernels. Writing goes through a temporary sibling directory renamed into place,
so a reader never sees half a model; ``ALSModel.load`` reads the result.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from recforget.data.errors import DataError
from recforget.data.interactions import Interactions
from recforget.data.vocab import Vocabulary

__all__ = [
    "ALS_MODEL_CLASS",
    "SparkFactors",
    "als_from_spark",
    "als_to_spark",
    "read_als_model",
    "spark_params",
    "spark_sweep",
    "write_als_model",
]

ALS_MODEL_CLASS = "org.apache.spark.ml.recommendation.ALSModel"
_DEFAULT_PARAMS = {
    "blockSize": 4096,
    "coldStartStrategy": "nan",
    "itemCol": "item",
    "predictionCol": "prediction",
    "userCol": "user",
}


class SparkFactors:
    """The content of an ``ALSModel`` directory: ids, factors and metadata.

    Attributes
    ----------
    user_ids, item_ids : int64 arrays of shape (n_users,), (n_items,), sorted
    user_factors, item_factors : float32 arrays of shape (n, rank), rows in id order
    metadata : dict
        The metadata JSON (``rank``, ``uid``, ``paramMap``, ...).
    """

    def __init__(self, user_ids, user_factors, item_ids, item_factors, metadata) -> None:
        self.user_ids = user_ids
        self.user_factors = user_factors
        self.item_ids = item_ids
        self.item_factors = item_factors
        self.metadata = metadata

    @property
    def rank(self) -> int:
        return int(self.metadata.get("rank", self.user_factors.shape[1]))

    def aligned(self, data: Interactions) -> tuple[np.ndarray, np.ndarray]:
        """Factor rows in ``data``'s vocabulary order; ids missing from the model are an error."""
        return (
            _align(self.user_ids, self.user_factors, data.users, "user"),
            _align(self.item_ids, self.item_factors, data.items, "item"),
        )


def _align(
    ids: np.ndarray, F: np.ndarray, vocab: Vocabulary, name: str, *, zeros: bool = False
) -> np.ndarray:
    """Rows of ``F`` (sorted ``ids``) in ``vocab``'s order.

    An id of the vocabulary the model lacks is an error, or with ``zeros`` a zero row: the
    closed form of a row with no interactions, which MLlib never creates.
    """
    if not vocab.is_integer and len(vocab):
        raise DataError(f"Spark ALSModel ids are integers; the data's {name} ids are not")
    want = vocab.ids.astype(np.int64)
    if len(ids) == 0:
        pos = np.zeros(len(want), dtype=np.int64)
        ok = np.zeros(len(want), dtype=bool)
    else:
        pos = np.minimum(np.searchsorted(ids, want), len(ids) - 1)
        ok = ids[pos] == want
    if not np.all(ok) and not zeros:
        missing = want[~ok][:10].tolist()
        raise DataError(
            f"{int((~ok).sum())} {name} id(s) of the data have no factors in the model, "
            f"e.g. {missing}"
        )
    out = np.zeros((len(want), F.shape[1]), dtype=np.float32)
    out[ok] = F[pos[ok]]
    return out


def _read_factors(path: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    import pyarrow.parquet as pq

    where = path / name
    if not where.is_dir():
        raise DataError(f"not an ALSModel directory: {where} is missing", file=str(path))
    table = pq.read_table(where)
    for col in ("id", "features"):
        if col not in table.column_names:
            raise DataError(f"{where}: no column {col!r} (has {table.column_names})")
    ids = table.column("id").to_numpy().astype(np.int64)
    feats = table.column("features").combine_chunks()
    n = len(ids)
    flat = np.asarray(feats.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)
    lengths = np.diff(np.asarray(feats.offsets.to_numpy(), dtype=np.int64))
    k = int(lengths[0]) if n else 0
    if n and np.any(lengths != k):
        bad = int(ids[np.flatnonzero(lengths != k)[0]])
        raise DataError(f"{where}: id {bad} has a features vector of another length than {k}")
    F = flat.reshape(n, k)
    order = np.argsort(ids, kind="stable")
    ids, F = ids[order], F[order]
    if n > 1 and np.any(ids[1:] == ids[:-1]):
        dup = int(ids[1:][ids[1:] == ids[:-1]][0])
        raise DataError(f"{where}: duplicate id {dup}")
    if not np.all(np.isfinite(F)):
        raise DataError(f"{where}: features contain NaN or inf")
    return ids, F


def read_als_model(path: str | Path) -> SparkFactors:
    """Read an ``ALSModel`` directory (written by Spark or by :func:`write_als_model`)."""
    path = Path(path)
    meta_dir = path / "metadata"
    parts = sorted(p for p in meta_dir.glob("part-*") if not p.name.endswith(".crc"))
    if not parts:
        raise DataError(f"not an ALSModel directory: no {meta_dir}/part-* file", file=str(path))
    line = parts[0].read_text().strip().splitlines()[0]
    try:
        metadata = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"metadata is not JSON: {exc}", file=str(parts[0]), line=1) from exc
    if metadata.get("class") != ALS_MODEL_CLASS:
        raise DataError(
            f"metadata class is {metadata.get('class')!r}, not {ALS_MODEL_CLASS}",
            file=str(parts[0]),
        )
    uids, U = _read_factors(path, "userFactors")
    iids, V = _read_factors(path, "itemFactors")
    if U.shape[1] != V.shape[1]:
        raise DataError(f"{path}: user rank {U.shape[1]} != item rank {V.shape[1]}")
    return SparkFactors(uids, U, iids, V, metadata)


def _write_factors(where: Path, ids: np.ndarray, F: np.ndarray) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    where.mkdir(parents=True)
    F = np.ascontiguousarray(F, dtype=np.float32)
    k = F.shape[1]
    feats = pa.FixedSizeListArray.from_arrays(pa.array(F.reshape(-1)), k).cast(
        pa.list_(pa.float32())
    )
    table = pa.table(
        {"id": pa.array(np.asarray(ids, dtype=np.int32)), "features": feats},
        schema=pa.schema([("id", pa.int32(), False), ("features", pa.list_(pa.float32()))]),
    )
    pq.write_table(table, where / "part-00000-recforget.snappy.parquet", compression="snappy")
    (where / "_SUCCESS").write_bytes(b"")


def write_als_model(
    path: str | Path,
    user_ids: np.ndarray,
    user_factors: np.ndarray,
    item_ids: np.ndarray,
    item_factors: np.ndarray,
    *,
    extra: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write an ``ALSModel`` directory that ``ALSModel.load(path)`` reads.

    Ids must be integers that fit in int32 (MLlib's id type). ``extra`` is stored under the
    metadata's ``"recforget"`` key (MLlib ignores it): the training parameters and provenance.
    """
    path = Path(path)
    for name, ids in (("user", user_ids), ("item", item_ids)):
        ids = np.asarray(ids)
        if ids.dtype.kind not in "iu":
            raise DataError(f"Spark ALSModel {name} ids must be integers, got dtype {ids.dtype}")
        if len(ids) and (ids.min() < -(2**31) or ids.max() >= 2**31):
            raise DataError(f"Spark ALSModel {name} ids must fit in int32")
    if path.exists():
        if not overwrite:
            raise FileExistsError(f"{path} exists (pass overwrite=True to replace it)")
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    rank = int(np.shape(user_factors)[1])
    metadata = {
        "class": ALS_MODEL_CLASS,
        "timestamp": int(time.time() * 1000),
        "sparkVersion": "4.0.0",
        "uid": f"ALS_{uuid.uuid4().hex[:12]}",
        "paramMap": {"blockSize": 4096},
        "defaultParamMap": dict(_DEFAULT_PARAMS),
        "rank": rank,
    }
    if extra:
        metadata["recforget"] = extra
    try:
        (tmp / "metadata").mkdir(parents=True)
        (tmp / "metadata" / "part-00000").write_text(json.dumps(metadata) + "\n")
        (tmp / "metadata" / "_SUCCESS").write_bytes(b"")
        _write_factors(tmp / "userFactors", user_ids, user_factors)
        _write_factors(tmp / "itemFactors", item_ids, item_factors)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return path


def spark_params(
    *, reg_param: float = 0.1, implicit_prefs: bool = False, alpha: float = 1.0
) -> dict[str, Any]:
    """:class:`~recforget.ALS` parameters reproducing MLlib's objective (defaults: MLlib's)."""
    return {
        "regularization": float(reg_param),
        "feedback": "implicit" if implicit_prefs else "explicit",
        "alpha": float(alpha),
        "weighting": "linear",
        "biases": False,
        "regularization_scaling": "frequency",
        "dtype": "float32",
    }


def als_from_spark(
    path: str | Path,
    data: Interactions,
    *,
    reg_param: float | None = None,
    implicit_prefs: bool | None = None,
    alpha: float | None = None,
    **params: Any,
):
    """A fitted :class:`~recforget.ALS` from an ``ALSModel`` directory and its training data.

    ``reg_param``, ``implicit_prefs`` and ``alpha`` are MLlib's ``regParam``,
    ``implicitPrefs`` and ``alpha`` (not in the directory); when omitted they are taken from
    the metadata's ``"recforget"`` entry (a model written by :func:`als_to_spark`), else
    MLlib's defaults. ``params`` override any other ALS parameter (``grad_tol``, ...).
    """
    from recforget.models.als import ALS

    sf = read_als_model(path)
    saved = sf.metadata.get("recforget", {}).get("spark", {})
    base = spark_params(
        reg_param=saved.get("regParam", 0.1) if reg_param is None else reg_param,
        implicit_prefs=(
            saved.get("implicitPrefs", False) if implicit_prefs is None else implicit_prefs
        ),
        alpha=saved.get("alpha", 1.0) if alpha is None else alpha,
    )
    if base["feedback"] == "implicit" and data.nnz and data.values.min() < 0:
        raise DataError(
            "implicit feedback: recforget needs ratings >= 0 (MLlib reads |r| for confidence "
            "and 1[r > 0] for preference); remove or flip the negative ratings first"
        )
    X, Y = sf.aligned(data)
    return ALS.from_factors(X, Y, data, **{**base, **params})


def als_to_spark(model, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write a fitted :class:`~recforget.ALS` as an ``ALSModel`` directory (integer ids only)."""
    model._check_fitted()
    if model.user_bias_ is not None:
        raise ValueError("MLlib's ALSModel has no biases; this model has them (biases=True)")
    for vocab in (model.users_, model.items_):
        if not vocab.is_integer and len(vocab):
            raise DataError(
                f"Spark ALSModel ids are integers; the model's {vocab.name} ids are not"
            )
    extra = {
        "spark": {
            "regParam": float(model.regularization),
            "implicitPrefs": model.feedback == "implicit",
            "alpha": float(model.alpha),
        },
        "params": {
            k: v for k, v in model.get_params().items() if isinstance(v, (int, float, str, bool))
        },
        "data_fingerprint": model.seen_.fingerprint(),
        "model_hash": model.model_hash(),
    }
    return write_als_model(
        path,
        model.users_.ids.astype(np.int64),
        model.user_factors_,
        model.items_.ids.astype(np.int64),
        model.item_factors_,
        extra=extra,
        overwrite=overwrite,
    )


def spark_sweep(model, data: Interactions | None = None) -> None:
    """One MLlib-ordered sweep in place: items with users fixed, then users with items fixed."""
    data = model.seen_ if data is None else data
    obj = model.objective(data)
    F = model._factors()
    from recforget._threads import one_blas_thread

    with one_blas_thread():
        obj.solve("items", F, solver="cholesky")
        obj.solve("users", F, solver="cholesky")
    model._set_state(F, data)
