"""Rating blocks after a deletion, derived from the blocks before it (no rebuild from the data).

A deletion removes entries, and whole users or items, from blocks that are already built and
persisted. :func:`update_blocks` maps over the old blocks with the removed entries' keys
broadcast (``u * n_items + i``, old indices, sorted): each block drops its removed entries,
maps the remaining indices through the old-to-new index maps, and encodes itself again with
:func:`~recforget.spark.blocks.encode_block`, so the result is byte for byte the block a
rebuild from the remaining data would give (per-entry weights recomputed from the values and,
for BM25, from the remaining data's statistics; ridge weights from the new row counts).

* When every kept row of this side keeps its index (a deletion of pairs, of rows of the other
  side, or of this side's last rows), row ``r`` stays in block ``r % n_blocks`` at the same
  position: the update is one narrow map, partition for partition, with no shuffle.
* When rows of this side leave (a deleted user on the user side), the rows after them move up
  and change block; each old block then sends, to every new block, its entries for it as one
  binary record, and the new blocks are encoded from those: one shuffle of ``n_blocks^2``
  records instead of one per entry.

With ``factors`` given, each new block also returns its rows' scales ``||b_r||`` at those
factors (the gradient at zero, which the certificate's floor needs), in the same job.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recforget.spark.blocks import (
    BLOCK_COLUMNS,
    ObjectiveSpec,
    _block_schema,
    bm25_stats,
    decode_block,
    encode_block,
)

__all__ = ["block_entries", "prune_entries", "update_blocks"]


def block_entries(blk: dict[str, np.ndarray], side: str) -> tuple[np.ndarray, ...]:
    """``(u, i, values)`` of a decoded block's entries (global indices)."""
    own = np.repeat(blk["rows"], np.diff(blk["indptr"]))
    other = blk["indices"].astype(np.int64)
    u, i = (own, other) if side == "users" else (other, own)
    return u, i, blk["values"]


def prune_entries(
    u: np.ndarray,
    i: np.ndarray,
    values: np.ndarray,
    removed_keys: np.ndarray,
    n_items: int,
    user_map: np.ndarray,
    item_map: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Drop the entries whose key ``u * n_items + i`` is in ``removed_keys`` (sorted); reindex.

    Every entry of a removed user or item must be among the removed keys (as
    :meth:`SparkInteractions.remove` reports them); a kept entry that maps to -1 is an error.
    """
    keys = u * np.int64(n_items) + i
    pos = np.searchsorted(removed_keys, keys)
    pos = np.minimum(pos, max(len(removed_keys) - 1, 0))
    gone = (removed_keys[pos] == keys) if len(removed_keys) else np.zeros(len(keys), bool)
    keep = ~gone
    u2, i2 = user_map[u[keep]], item_map[i[keep]]
    if len(u2) and (u2.min() < 0 or i2.min() < 0):
        raise RuntimeError("a kept entry belongs to a removed user or item")
    return u2.astype(np.int64), i2.astype(np.int64), values[keep]


def _scales(rec: dict[str, Any], dtype, Xb, Yb, Gb, k: int) -> bytes:
    """``||b_r||`` of a block's rows at the broadcast factors (the certificate's row scales)."""
    from recforget.kernels import als as K

    blk = decode_block(rec, dtype)
    X = np.frombuffer(Xb, dtype=dtype).reshape(-1, k)
    Y = np.frombuffer(Yb, dtype=dtype).reshape(-1, k)
    G = np.frombuffer(Gb, dtype=np.float64).reshape(k, k)
    Xl = np.ascontiguousarray(X[blk["rows"]])
    args = (blk["indptr"], blk["indices"], blk["w"], blk["v"])
    _, b = K.row_residuals(*args, Xl, Y, G, blk["reg"], K.all_rows(len(Xl)))
    return np.ascontiguousarray(b, dtype=np.float64).tobytes()


def update_blocks(
    blocks,
    side: str,
    n_blocks: int,
    spec: ObjectiveSpec,
    removal,
    *,
    stats: dict[str, np.ndarray] | None = None,
    factors: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
):
    """The blocks of ``side`` on the remaining data of ``removal``, from the old ``blocks``.

    ``removal`` is a :class:`~recforget.spark.data.SparkRemoval` of the data the blocks were
    built on; ``stats`` the remaining data's row statistics (needed for BM25 only). With
    ``factors = (X, Y, G)`` (this side's and the other side's factors on the remaining data,
    and the shared term) returns ``(blocks, scales)``, else ``(blocks, None)``. The new blocks
    are persisted and materialised before returning.
    """
    import pyarrow as pa
    from pyspark import StorageLevel
    from pyspark.sql import types as T

    if side not in ("users", "items"):
        raise ValueError(f"side must be 'users' or 'items', got {side!r}")
    spark = blocks.sparkSession
    sc = spark.sparkContext
    user_map = np.asarray(removal.user_map, dtype=np.int64)
    item_map = np.asarray(removal.item_map, dtype=np.int64)
    n_items_old = len(item_map)
    side_map = user_map if side == "users" else item_map
    n_rows = int((side_map >= 0).sum())
    keys = np.unique(
        np.asarray(removal.removed_users, dtype=np.int64) * n_items_old
        + np.asarray(removal.removed_items, dtype=np.int64)
    )
    bm25 = None
    if spec.feedback == "implicit" and spec.weighting == "bm25":
        if stats is None:
            raise ValueError("BM25 weights need the remaining data's row statistics (stats=)")
        bm25 = bm25_stats(spec, stats)
    dtype = np.dtype(spec.dtype)
    k = 0 if factors is None else factors[0].shape[1]
    state = sc.broadcast(
        {
            "keys": keys.tobytes(),
            "user_map": user_map.tobytes(),
            "item_map": item_map.tobytes(),
            "bm25": None if bm25 is None else (bm25[0].tobytes(), bm25[1].tobytes()),
            "factors": None
            if factors is None
            else tuple(np.ascontiguousarray(a).tobytes() for a in factors),
        }
    )
    out_schema = T.StructType([*_block_schema().fields, T.StructField("scales", T.BinaryType())])
    arrow_out = pa.schema(
        [pa.field("block", pa.int32(), False), pa.field("n", pa.int64())]
        + [pa.field(c, pa.binary()) for c in BLOCK_COLUMNS]
        + [pa.field("scales", pa.binary())]
    )

    def unpack():
        st = state.value
        bm = None if st["bm25"] is None else tuple(np.frombuffer(x) for x in st["bm25"])
        return (
            np.frombuffer(st["keys"], dtype=np.int64),
            np.frombuffer(st["user_map"], dtype=np.int64),
            np.frombuffer(st["item_map"], dtype=np.int64),
            bm,
            st["factors"],
        )

    def finish(rec: dict[str, Any], fac) -> dict[str, Any]:
        rec["scales"] = None if fac is None else _scales(rec, dtype, *fac, k)
        return rec

    def pruned(recs, j, rkeys, um, im):
        blk = decode_block({c: recs[c][j] for c in BLOCK_COLUMNS}, dtype)
        return prune_entries(*block_entries(blk, side), rkeys, n_items_old, um, im)

    if np.array_equal(side_map[side_map >= 0], np.flatnonzero(side_map >= 0)):
        # every kept row of this side stays where it is: one narrow map, no shuffle
        def fn(batches):
            rkeys, um, im, bm, fac = unpack()
            for batch in batches:
                recs = batch.to_pydict()
                out: dict[str, list] = {f.name: [] for f in arrow_out}
                for j in range(batch.num_rows):
                    b = int(recs["block"][j])
                    u, i, v = pruned(recs, j, rkeys, um, im)
                    rec = finish(encode_block(spec, side, b, n_blocks, n_rows, u, i, v, bm), fac)
                    for c in out:
                        out[c].append(rec[c])
                yield pa.RecordBatch.from_pydict(out, schema=arrow_out)

        new = blocks.select("block", "n", *BLOCK_COLUMNS).mapInArrow(fn, out_schema)
    else:
        new = _redeal(blocks, side, n_blocks, n_rows, spec, dtype, unpack, pruned, finish)
        new = spark.createDataFrame(new, out_schema)
    new = new.persist(StorageLevel.MEMORY_AND_DISK)
    got = new.select("block", "scales").toArrow()  # materialises the whole cached blocks
    if got.num_rows != n_blocks:  # pragma: no cover - every old block maps to one new block
        raise RuntimeError(f"updated {got.num_rows} blocks, expected {n_blocks}")
    state.unpersist()
    scales = None
    if factors is not None:
        scales = np.zeros(n_rows)
        cols = got.to_pydict()
        for b, s in zip(cols["block"], cols["scales"], strict=True):
            scales[np.arange(b, n_rows, n_blocks)] = np.frombuffer(s, dtype=np.float64)
    return new, scales


def _redeal(blocks, side, n_blocks, n_rows, spec, dtype, unpack, pruned, finish):
    """Rows of this side left: send each block's entries to their new blocks, encode those."""
    key = 0 if side == "users" else 1

    def pieces(rows):
        rkeys, um, im, _, _ = unpack()
        for row in rows:
            recs = {c: [row[c]] for c in ("block", *BLOCK_COLUMNS)}
            ent = pruned(recs, 0, rkeys, um, im)
            target = ent[key] % n_blocks
            for t in range(n_blocks):
                m = target == t
                yield t, tuple(a[m].tobytes() for a in ent)
        # a placeholder for every block, so that blocks left with no entries exist too
        for t in range(n_blocks):
            yield t, None

    def encode(items):
        _, _, _, bm, fac = unpack()
        for t, parts in items:
            parts = [p for p in parts if p is not None]
            cols = [
                np.concatenate([np.frombuffer(p[c], dtype=dt) for p in parts])
                if parts
                else np.empty(0, dt)
                for c, dt in enumerate((np.int64, np.int64, np.float64))
            ]
            rec = finish(encode_block(spec, side, t, n_blocks, n_rows, *cols, bm), fac)
            yield (rec["block"], rec["n"], *(rec[c] for c in BLOCK_COLUMNS), rec["scales"])

    rdd = blocks.select("block", *BLOCK_COLUMNS).rdd.mapPartitions(pieces)
    # placeholders come from every partition; keep one per target (groupByKey collects all)
    grouped = rdd.groupByKey(numPartitions=n_blocks, partitionFunc=lambda t: t)
    return grouped.mapPartitions(encode)
