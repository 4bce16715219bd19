"""Rating blocks and the half-sweep over them, in MLlib's layout, with recforget's kernels.

One side's rows (users, or items) are dealt to ``n_blocks`` blocks, row ``r`` to block
``r % n_blocks`` at local position ``r // n_blocks`` (MLlib deals ids to blocks by a hash
partitioner). A block holds, for its rows, the CSR of the side's sub-problems exactly as
:class:`~recforget.models._als_objective.ALSObjective` builds them on one machine: per-row
entries sorted by the other side's index, per-entry ``w`` (weight in ``A_r``) and ``v``
(coefficient in ``b_r``), the raw value (for the objective) and the ridge weight ``lambda_r``,
each stored as a binary column. Blocks are built once per objective with one shuffle and
persisted; one block is one partition.

A half-sweep is one ``mapInArrow`` over the blocks of the side being solved, with the fixed
side's factors and Gram matrix broadcast. Each block calls the single-machine row kernel
(:func:`recforget.kernels.als.solve_rows_cholesky` or ``solve_rows_cg``) on its local CSR,
computes its rows' gradient norms in the same pass (:func:`recforget.kernels.als.row_residuals`,
before and/or after solving) and the partial Gram ``X_b^T X_b`` of its new rows; the driver
sums the partials in block order, so the Gram matrix is the same whatever the scheduling.

The functions without a ``spark`` argument are plain numpy and run inside the executors.
"""

from __future__ import annotations

import time
import weakref
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = [
    "BLOCK_COLUMNS",
    "ObjectiveSpec",
    "PassResult",
    "blocked_gram",
    "build_blocks",
    "encode_block",
    "entry_weights",
    "run_pass",
    "run_passes",
    "solve_block",
]


@dataclass(frozen=True)
class ObjectiveSpec:
    """The hyper-parameters that define the ALS objective (a subset of ALS.get_params())."""

    feedback: str = "implicit"
    regularization: float = 0.05
    regularization_scaling: str = "none"
    alpha: float = 10.0
    weighting: str = "linear"
    bm25_k1: float = 100.0
    bm25_b: float = 0.8
    log_epsilon: float = 1.0
    dtype: str = "float32"

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> ObjectiveSpec:
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in params.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bm25_stats(spec: ObjectiveSpec, stats: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``(norm_u, idf_i)`` of BM25 from the data's row statistics (as ``bm25_weight``)."""
    n_u, n_i, lengths = stats["n_users"], stats["n_items"], stats["len_users"]
    idf = np.maximum(np.log(max(len(n_u), 1)) - np.log1p(n_i.astype(np.float64)), 0.0)
    has = n_u > 0
    avg = lengths[has].mean() if has.any() else 1.0
    norm = (1.0 - spec.bm25_b) + spec.bm25_b * lengths / avg
    return norm, idf


def entry_weights(
    spec: ObjectiveSpec,
    u: np.ndarray,
    i: np.ndarray,
    values: np.ndarray,
    bm25: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-entry ``(w, v)`` in the factors' dtype, computed exactly as ``ALSObjective`` does."""
    dtype = np.dtype(spec.dtype)
    values = np.asarray(values, dtype=np.float64)
    if spec.feedback == "explicit":
        return np.ones(len(values), dtype=dtype), values.astype(dtype)
    if len(values) and values.min() < 0:
        raise ValueError(
            "implicit feedback needs values >= 0 (counts or strengths); "
            "use feedback='explicit' for ratings that can be negative"
        )
    if spec.weighting == "linear":
        wt = values.copy()
    elif spec.weighting == "log":
        wt = np.log1p(values / spec.log_epsilon)
    elif spec.weighting == "bm25":
        norm, idf = bm25
        k1 = spec.bm25_k1
        wt = values * (k1 + 1.0) / (k1 * norm[u] + values) * idf[i]
    else:
        raise ValueError(f"unknown weighting {spec.weighting!r}")
    c = 1.0 + spec.alpha * wt
    p = (values > 0).astype(np.float64)
    return (c - 1.0).astype(dtype), (c * p).astype(dtype)


def row_ridge(spec: ObjectiveSpec, counts: np.ndarray) -> np.ndarray:
    """``lambda_r`` of each row: ``lambda`` or ``lambda * max(n_r, 1)`` (frequency scaling)."""
    if spec.regularization_scaling == "frequency":
        return spec.regularization * np.maximum(counts, 1).astype(np.float64)
    return np.full(len(counts), float(spec.regularization))


BLOCK_COLUMNS = ("rows", "indptr", "indices", "w", "v", "values", "reg")


def encode_block(
    spec: ObjectiveSpec,
    side: str,
    block: int,
    n_blocks: int,
    n_rows: int,
    u: np.ndarray,
    i: np.ndarray,
    values: np.ndarray,
    bm25: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, Any]:
    """One block's record: its rows' CSR (sorted as on one machine) as bytes.

    ``u, i, values`` are the entries whose ``side`` index falls in ``block``.
    """
    key, col = (u, i) if side == "users" else (i, u)
    rows = np.arange(block, n_rows, n_blocks, dtype=np.int64)
    local = (np.asarray(key, dtype=np.int64) - block) // n_blocks
    col = np.asarray(col)
    values = np.asarray(values, dtype=np.float64)
    if not _sorted_by(local, col):  # (entries pruned from a block come in order already)
        order = np.lexsort((col, local))
        u, i, values = u[order], i[order], values[order]
        local, col = local[order], col[order]
    counts = np.bincount(local, minlength=len(rows)).astype(np.int64)
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    w, v = entry_weights(spec, u, i, values, bm25)
    arrays = {
        "rows": rows,
        "indptr": indptr,
        "indices": col.astype(np.int32),
        "w": w,
        "v": v,
        "values": values,
        "reg": row_ridge(spec, counts),
    }
    return {"block": int(block), "n": len(rows), **{k: a.tobytes() for k, a in arrays.items()}}


def _sorted_by(major: np.ndarray, minor: np.ndarray) -> bool:
    """Whether entries are in ``(major, minor)`` order (what ``np.lexsort`` would give: the
    keys are distinct, so a sorted input is its own sort)."""
    if len(major) < 2:
        return True
    dm = np.diff(major)
    return bool(np.all((dm > 0) | ((dm == 0) & (np.diff(minor) > 0))))


def decode_block(rec: dict[str, Any], dtype: np.dtype) -> dict[str, np.ndarray]:
    kinds = {
        "rows": np.int64,
        "indptr": np.int64,
        "indices": np.int32,
        "w": dtype,
        "v": dtype,
        "values": np.float64,
        "reg": np.float64,
    }
    return {k: np.frombuffer(rec[k], dtype=t) for k, t in kinds.items()}


def batch_columns(batch) -> dict[str, list]:
    """A record batch of blocks as columns: the binary values as zero-copy Arrow buffers
    (``np.frombuffer`` reads them in place), the others as Python values."""
    import pyarrow as pa

    out = {}
    for name, col in zip(batch.schema.names, batch.columns, strict=True):
        if pa.types.is_binary(col.type):
            out[name] = [None if v is None else v.as_buffer() for v in col]
        else:
            out[name] = col.to_pylist()
    return out


def _block_schema():
    from pyspark.sql import types as T

    fields = [T.StructField("block", T.IntegerType(), False), T.StructField("n", T.LongType())]
    fields += [T.StructField(c, T.BinaryType()) for c in BLOCK_COLUMNS]
    return T.StructType(fields)


def build_blocks(data, side: str, n_blocks: int, spec: ObjectiveSpec, *, stats=None):
    """Rating blocks of ``side`` ("users" | "items") of a SparkInteractions, persisted.

    Every block exists, empty or not (rows left with no interactions are solved too, to the
    closed form of an empty row, as on one machine). One shuffle of the entries; the result
    has one block per partition and is materialised before returning.
    """
    import pandas as pd
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    if side not in ("users", "items"):
        raise ValueError(f"side must be 'users' or 'items', got {side!r}")
    spark = data.spark
    n_rows = data.n_users if side == "users" else data.n_items
    key = "u" if side == "users" else "i"
    bm25 = None
    if spec.feedback == "implicit" and spec.weighting == "bm25":
        bm25 = bm25_stats(spec, data.row_stats() if stats is None else stats)
    bb = spark.sparkContext.broadcast(
        None if bm25 is None else (bm25[0].tobytes(), bm25[1].tobytes())
    )
    entries = data.frame.select(
        (F.col(key) % n_blocks).cast("int").alias("block"),
        F.col("u").cast("long"),
        F.col("i").cast("long"),
        "value",
    )
    # one placeholder per block, so that blocks without entries exist too
    holders = spark.range(n_blocks).select(
        F.col("id").cast("int").alias("block"),
        F.lit(None).cast("long").alias("u"),
        F.lit(None).cast("long").alias("i"),
        F.lit(None).cast("double").alias("value"),
    )

    def fn(pdf: pd.DataFrame) -> pd.DataFrame:
        b = int(pdf["block"].iloc[0])
        pdf = pdf.dropna()
        stats_b = bb.value
        bm = None if stats_b is None else tuple(np.frombuffer(x) for x in stats_b)
        rec = encode_block(
            spec,
            side,
            b,
            n_blocks,
            n_rows,
            pdf["u"].to_numpy(np.int64),
            pdf["i"].to_numpy(np.int64),
            pdf["value"].to_numpy(np.float64),
            bm,
        )
        return pd.DataFrame([rec])

    schema = _block_schema()
    grouped = entries.unionByName(holders).groupBy("block").applyInPandas(fn, schema)
    rdd = grouped.rdd.keyBy(lambda r: r["block"]).partitionBy(n_blocks, lambda k: k).values()
    blocks = spark.createDataFrame(rdd, schema).persist(StorageLevel.MEMORY_AND_DISK)
    got = blocks.count()
    if got != n_blocks:  # pragma: no cover - a placeholder per block guarantees it
        raise RuntimeError(f"built {got} blocks, expected {n_blocks}")
    return blocks


def blocked_gram(X: np.ndarray, n_blocks: int) -> np.ndarray:
    """``X^T X`` summed from per-block partials in block order (what a pass returns)."""
    k = X.shape[1]
    G = np.zeros((k, k))
    for b in range(n_blocks):
        Xb = X[b::n_blocks].astype(np.float64)
        G += Xb.T @ Xb
    return G


# ---------------------------------------------------------------------- the pass
@dataclass(frozen=True)
class PassOptions:
    """What one pass over a side's blocks does (shipped to the executors)."""

    solve: str = "all"  # "all" | "none" | "selective"
    solver: str = "cholesky"
    cg_steps: int = 3
    pre: bool = False  # gradient norms before solving
    post: bool = False  # gradient norms after solving
    loss: bool = False  # this side's objective terms (data terms on user blocks, ridge)
    explicit: bool = False
    tol: float = 0.0  # selective: threshold, relative to max(b_r, floor)
    floor: float = 0.0
    threads: int = 1  # numba threads per task
    other: int = 0  # > 0: the other side's row count; return its rows' partial gradient sums


def solve_block(
    blk: dict[str, np.ndarray],
    X: np.ndarray,
    Y: np.ndarray,
    G: np.ndarray,
    opts: PassOptions,
    touched: np.ndarray | None = None,
) -> dict[str, Any]:
    """Run one block: the same kernels as one machine, on the block's local CSR.

    ``X`` is the solved side's full factor matrix (only this block's rows are read), ``Y``
    the fixed side's. Returns the block's new rows (all, or only the re-solved ones for a
    selective pass), gradient norms, Gram partial and objective terms.
    """
    from recforget.kernels import als as K

    rows = blk["rows"]
    Xl = np.ascontiguousarray(X[rows])
    n = len(rows)
    allr = K.all_rows(n)
    args = (blk["indptr"], blk["indices"], blk["w"], blk["v"])
    out: dict[str, Any] = {}
    if opts.pre or opts.solve == "selective":
        g, b = K.row_residuals(*args, Xl, Y, G, blk["reg"], allr)
        out["g_pre"], out["b_pre"] = g, b
    if opts.solve == "all":
        sel = allr
    elif opts.solve == "selective":
        g, b = out["g_pre"], out["b_pre"]
        sel = np.flatnonzero(g > opts.tol * np.maximum(b, opts.floor)).astype(np.int64)
        if touched is not None and n:
            sel = np.union1d(sel, np.flatnonzero(touched[rows])).astype(np.int64)
    else:
        sel = np.empty(0, dtype=np.int64)
    t0 = time.perf_counter()
    if len(sel):
        if opts.solver == "cholesky":
            K.solve_rows_cholesky(*args, Xl, Y, G, blk["reg"], sel)
        else:
            K.solve_rows_cg(*args, Xl, Y, G, blk["reg"], sel, opts.cg_steps)
    out["seconds"] = time.perf_counter() - t0  # the row solves alone
    if opts.post and "g_pre" in out and len(sel) < n:
        # rows not re-solved keep their gradients: recompute only the re-solved ones
        g, b = out["g_pre"].copy(), out["b_pre"].copy()
        if len(sel):
            g[sel], b[sel] = K.row_residuals(*args, Xl, Y, G, blk["reg"], sel)
        out["g_post"], out["b_post"] = g, b
    elif opts.post:
        out["g_post"], out["b_post"] = K.row_residuals(*args, Xl, Y, G, blk["reg"], allr)
    X64 = Xl.astype(np.float64)
    out["gram"] = X64.T @ X64
    out["solved"] = sel
    if opts.other:
        out["o_grad"], out["o_rhs"], out["o_count"] = other_side_sums(blk, Xl, Y, opts.other)
    out["X"] = Xl[sel] if opts.solve == "selective" else Xl
    if opts.loss:
        ridge = float(blk["reg"] @ np.einsum("ij,ij->i", X64, X64))
        data = 0.0
        if len(blk["indices"]):
            s = K.entry_dots(blk["indptr"], blk["indices"], Xl, Y)
            w = blk["w"].astype(np.float64)
            v = blk["v"].astype(np.float64)
            if opts.explicit:
                data = float(np.sum((blk["values"] - s) ** 2))
            else:  # implicit: the stored cells' terms beyond the all-cells sum of s^2
                data = float(np.sum(w * s * s - 2.0 * v * s + v))
        out["loss"] = (data, ridge)
    return out


def other_side_sums(
    blk: dict[str, np.ndarray], Xl: np.ndarray, Y: np.ndarray, n_other: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """This block's share of the other side's row gradients, at its rows ``Xl`` (float64).

    The block holds every entry ``(r, j)`` of its rows ``r``; row ``j`` of the other side has
    ``grad_j = 2 ((G + lambda_j) y_j + sum_r (w (x_r . y_j) - v) x_r)`` and ``rhs_j = 2 sum_r
    v x_r``, summed over all blocks. Returns ``(sum_r (w s - v) x_r, sum_r v x_r, entries per
    j)`` over this block's entries (each ``(n_other, k)``, ``(n_other,)``)."""
    import scipy.sparse as sp

    from recforget.kernels import als as K

    n, k = Xl.shape
    if not len(blk["indices"]):
        return np.zeros((n_other, k)), np.zeros((n_other, k)), np.zeros(n_other, np.int64)
    dots = K.entry_dots(blk["indptr"], blk["indices"], Xl, Y)
    v = blk["v"].astype(np.float64)
    csr = (blk["indices"], blk["indptr"])
    coef = sp.csr_matrix((blk["w"].astype(np.float64) * dots - v, *csr), shape=(n, n_other))
    X64 = Xl.astype(np.float64)
    grad = np.asarray(coef.T @ X64)
    rhs = np.asarray(sp.csr_matrix((v, *csr), shape=(n, n_other)).T @ X64)
    return grad, rhs, np.bincount(blk["indices"], minlength=n_other).astype(np.int64)


_OUT_ARRAYS = ("solved", "X", "g_pre", "b_pre", "g_post", "b_post", "gram")
_OTHER_ARRAYS = ("o_grad", "o_rhs", "o_count")
_OTHER_DTYPES = (np.float64, np.float64, np.int64)


def _pass_schema():
    from pyspark.sql import types as T

    fields = [T.StructField("part", T.IntegerType(), False)]
    fields += [T.StructField("block", T.IntegerType(), False)]
    fields += [T.StructField(c, T.BinaryType()) for c in (*_OUT_ARRAYS, *_OTHER_ARRAYS)]
    fields += [
        T.StructField("loss_data", T.DoubleType()),
        T.StructField("loss_ridge", T.DoubleType()),
        T.StructField("seconds", T.DoubleType()),
    ]
    return T.StructType(fields)


@dataclass
class PassResult:
    """A pass's outcome, assembled on the driver (rows in global order)."""

    X: np.ndarray  # the side's factors after the pass
    gram: np.ndarray  # sum of partials, block order
    solved: np.ndarray  # global rows re-solved
    g_pre: np.ndarray | None = None
    b_pre: np.ndarray | None = None
    g_post: np.ndarray | None = None
    b_post: np.ndarray | None = None
    loss_data: float = 0.0
    loss_ridge: float = 0.0
    block_seconds: list[float] | None = None  # each block's row-solve time, block order
    # with PassOptions.other: the other side's partial gradient sums, over all blocks in block
    # order (see other_side_sums)
    other: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None


_BLOCK_COLUMNS_OF: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def map_blocks(blocks, fn, schema):
    """``blocks.mapInArrow(fn, schema)``, with the frame's column references made once.

    ``DataFrame.mapInArrow`` resolves every column of the frame with one JVM round trip each
    (twelve for an updated block frame) every time it is called; a pass calls it once per
    side, so the references are kept per frame and the map built from them. (Frames without
    a JVM handle, e.g. Spark Connect's, take ``mapInArrow`` itself, and so does any PySpark
    whose internals this shortcut does not match: it is checked against the pinned release.)"""
    if not hasattr(blocks, "_jdf"):
        return blocks.mapInArrow(fn, schema)
    from py4j.protocol import Py4JError
    from pyspark.sql import DataFrame
    from pyspark.sql.pandas.functions import pandas_udf
    from pyspark.util import PythonEvalType

    try:
        cols = _BLOCK_COLUMNS_OF.get(blocks)
        if cols is None:
            cols = _BLOCK_COLUMNS_OF[blocks] = [blocks[c] for c in blocks.columns]
        kind = PythonEvalType.SQL_MAP_ARROW_ITER_UDF
        udf = pandas_udf(fn, returnType=schema, functionType=kind)
        jdf = blocks._jdf.mapInArrow(udf(*cols)._jc, False, None)
    except (AttributeError, TypeError, Py4JError):  # another PySpark's internals
        return blocks.mapInArrow(fn, schema)
    return DataFrame(jdf, blocks.sparkSession)


def run_pass(
    blocks,
    n_blocks: int,
    X: np.ndarray,
    Y: np.ndarray,
    G: np.ndarray,
    opts: PassOptions,
    touched: np.ndarray | None = None,
) -> PassResult:
    """One map over a side's blocks with ``X``, ``Y``, ``G`` broadcast; results to the driver."""
    return run_passes([(blocks, X, Y, G, opts, touched)])[0]


def run_passes(parts: list[tuple]) -> list[PassResult]:
    """Independent passes in one Spark job: ``parts`` are ``(blocks, X, Y, G, opts[, touched])``.

    Each part is a map over its blocks (as :func:`run_pass`) with its own broadcast; the maps
    are united into one job (one job's latency instead of one per part) and the results split
    by part. Only passes that do not need each other's output can share a job (e.g. the two
    sides of a certificate at fixed factors).
    """
    import pyarrow as pa

    frames, states = [], []
    for p, part in enumerate(parts):
        blocks, X, Y, G, opts = part[:5]
        touched = part[5] if len(part) > 5 else None
        state = blocks.sparkSession.sparkContext.broadcast(
            (
                X.tobytes(),
                Y.tobytes(),
                np.ascontiguousarray(G, dtype=np.float64).tobytes(),
                None if touched is None else np.asarray(touched, dtype=bool).tobytes(),
            )
        )
        states.append(state)
        # no select: every block frame's columns include BLOCK_COLUMNS (extra ones are small),
        # and a projection costs a round trip to the JVM per column
        frames.append(
            map_blocks(
                blocks, _pass_fn(p, state, X.dtype, X.shape[1], Y.shape[1], opts), _pass_schema()
            )
        )
    union = frames[0]
    for f in frames[1:]:
        union = union.union(f)
    table = union.toArrow()
    for state in states:
        state.unpersist()
    part_col = np.asarray(table.column("part").to_numpy())
    out = []
    for p, part in enumerate(parts):
        sub = table.filter(pa.array(part_col == p))
        out.append(_assemble(sub, part[1], part[4]))
    return out


def _pass_fn(part: int, state, dtype, k_x: int, k_y: int, opts: PassOptions):
    schema = _pass_schema()

    def fn(batches):
        import numba
        import pyarrow as pa

        from recforget._threads import one_blas_thread

        numba.set_num_threads(max(1, min(opts.threads, numba.config.NUMBA_NUM_THREADS)))
        xb, yb, gb, tb = state.value
        Xa = np.frombuffer(xb, dtype=dtype).reshape(-1, k_x)
        Ya = np.frombuffer(yb, dtype=dtype).reshape(-1, k_y)
        Ga = np.frombuffer(gb, dtype=np.float64).reshape(k_y, k_y)
        Ta = None if tb is None else np.frombuffer(tb, dtype=bool)
        with one_blas_thread():
            for batch in batches:
                recs = batch_columns(batch)
                rows_out: dict[str, list] = {c: [] for c in schema.names}
                for j in range(batch.num_rows):
                    blk = decode_block({c: recs[c][j] for c in BLOCK_COLUMNS}, dtype)
                    res = solve_block(blk, Xa, Ya, Ga, opts, Ta)
                    rows_out["part"].append(part)
                    rows_out["block"].append(recs["block"][j])
                    for c in (*_OUT_ARRAYS, *_OTHER_ARRAYS):
                        a = res.get(c)
                        if c == "solved" and a is not None:
                            a = blk["rows"][a]
                        rows_out[c].append(None if a is None else np.ascontiguousarray(a).tobytes())
                    d, r = res.get("loss", (None, None))
                    rows_out["loss_data"].append(d)
                    rows_out["loss_ridge"].append(r)
                    rows_out["seconds"].append(res["seconds"])
                yield pa.RecordBatch.from_pydict(rows_out, schema=_arrow_schema())

    return fn


def _arrow_schema():
    import pyarrow as pa

    fields = [pa.field("part", pa.int32(), False), pa.field("block", pa.int32(), False)]
    fields += [pa.field(c, pa.binary()) for c in (*_OUT_ARRAYS, *_OTHER_ARRAYS)]
    fields += [pa.field("loss_data", pa.float64()), pa.field("loss_ridge", pa.float64())]
    fields += [pa.field("seconds", pa.float64())]
    return pa.schema(fields)


def _assemble(table, X: np.ndarray, opts: PassOptions) -> PassResult:
    k = X.shape[1]
    n = len(X)
    cols = table.to_pydict()
    order = np.argsort(np.asarray(cols["block"]), kind="stable")
    Xn = X.copy()
    G = np.zeros((k, k))
    solved: list[np.ndarray] = []
    norms = {
        c: (
            np.zeros(n)
            if getattr(opts, c.split("_")[1]) or (opts.solve == "selective" and c.endswith("pre"))
            else None
        )
        for c in ("g_pre", "b_pre", "g_post", "b_post")
    }
    loss_d = loss_r = 0.0
    other = None
    if opts.other:
        other = (
            np.zeros((opts.other, k)),
            np.zeros((opts.other, k)),
            np.zeros(opts.other, np.int64),
        )
    n_blocks = len(order)
    for j in order:
        b = int(cols["block"][j])
        rows = np.arange(b, n, n_blocks, dtype=np.int64)
        s = np.frombuffer(cols["solved"][j], dtype=np.int64)
        Xb = np.frombuffer(cols["X"][j], dtype=X.dtype).reshape(-1, k)
        if opts.solve == "selective":
            Xn[s] = Xb
        else:
            Xn[rows] = Xb
        solved.append(s)
        G += np.frombuffer(cols["gram"][j], dtype=np.float64).reshape(k, k)
        for c, arr in norms.items():
            if arr is not None and cols[c][j] is not None:
                arr[rows] = np.frombuffer(cols[c][j], dtype=np.float64)
        if opts.loss:
            loss_d += cols["loss_data"][j]
            loss_r += cols["loss_ridge"][j]
        if other is not None:
            for acc, c, dt in zip(other, _OTHER_ARRAYS, _OTHER_DTYPES, strict=True):
                acc += np.frombuffer(cols[c][j], dtype=dt).reshape(acc.shape)
    return PassResult(
        X=Xn,
        gram=G,
        solved=np.sort(np.concatenate(solved)) if solved else np.empty(0, np.int64),
        loss_data=loss_d,
        loss_ridge=loss_r,
        block_seconds=[float(cols["seconds"][j]) for j in order],
        other=other,
        **norms,
    )
