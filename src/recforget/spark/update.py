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
factors (the gradient at zero, which the certificate's floor needs), in the same job, and
both sides' updates run as one job (:func:`update_sides`).

:func:`remove_with_blocks` needs no list of removed entries: with the pairs asked and the
users and items that leave broadcast, every block finds its own removed entries, and the
blocks of a side whose rows keep their indices return them, so a removal and both sides'
updates are one job with no scan of the interactions; it can also run the selective
method's first pass over the new user blocks in that job.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recforget.spark.blocks import (
    _OTHER_ARRAYS,
    _OUT_ARRAYS,
    BLOCK_COLUMNS,
    ObjectiveSpec,
    PassOptions,
    _block_schema,
    batch_columns,
    bm25_stats,
    decode_block,
    encode_block,
    map_blocks,
)

__all__ = [
    "block_entries",
    "prune_entries",
    "remove_with_blocks",
    "split_entries",
    "update_blocks",
]


def block_entries(blk: dict[str, np.ndarray], side: str) -> tuple[np.ndarray, ...]:
    """``(u, i, values)`` of a decoded block's entries (global indices)."""
    own = np.repeat(blk["rows"], np.diff(blk["indptr"]))
    other = blk["indices"].astype(np.int64)
    u, i = (own, other) if side == "users" else (other, own)
    return u, i, blk["values"]


def split_entries(
    u: np.ndarray,
    i: np.ndarray,
    values: np.ndarray,
    removed_keys: np.ndarray,
    n_items: int,
    user_map: np.ndarray,
    item_map: np.ndarray,
    *,
    by_maps: bool = False,
) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """``((u, i, values) kept and reindexed, (u, i, hit) removed, old indices)``.

    An entry is removed when its key ``u * n_items + i`` is in ``removed_keys`` (sorted;
    ``hit``) or, with ``by_maps``, when its user or item leaves (maps to -1). Without
    ``by_maps`` every entry of a removed user or item must be among the keys (as
    :meth:`SparkInteractions.remove` reports them); a kept entry that maps to -1 is an error.
    """
    hit = _hits(u, i, removed_keys, n_items, len(user_map))
    gone = hit | (user_map[u] < 0) | (item_map[i] < 0) if by_maps else hit
    keep = ~gone
    u2, i2 = user_map[u[keep]], item_map[i[keep]]
    if len(u2) and (u2.min() < 0 or i2.min() < 0):
        raise RuntimeError("a kept entry belongs to a removed user or item")
    kept = (u2.astype(np.int64), i2.astype(np.int64), values[keep])
    return kept, (u[gone], i[gone], hit[gone])


def _hits(u, i, removed_keys: np.ndarray, n_items: int, n_users: int) -> np.ndarray:
    """Which entries ``(u, i)`` have their key ``u * n_items + i`` in ``removed_keys`` (sorted).

    A block's entries are distinct and sorted by (own row, other row): by ``u * n_items + i``
    on the user side, ``i * n_users + u`` on the item side. Then the few removed keys are
    looked up among the entries (``O(m log n)``) instead of every entry among the removed
    keys; otherwise (entries in any order) the latter."""
    n = len(u)
    hit = np.zeros(n, dtype=bool)
    if not len(removed_keys) or not n:
        return hit
    keys = u * np.int64(n_items) + i
    if _ascending(keys):
        wanted = removed_keys
    else:
        if not _ascending(i * np.int64(n_users) + u):
            pos = np.minimum(np.searchsorted(removed_keys, keys), len(removed_keys) - 1)
            return removed_keys[pos] == keys
        keys = i * np.int64(n_users) + u
        wanted = np.sort((removed_keys % n_items) * np.int64(n_users) + removed_keys // n_items)
    pos = np.searchsorted(keys, wanted)
    ok = pos < n
    ok[ok] = keys[pos[ok]] == wanted[ok]
    hit[pos[ok]] = True
    return hit


def _ascending(a: np.ndarray) -> bool:
    """Strictly increasing (distinct keys in order)."""
    return bool(np.all(a[1:] > a[:-1]))


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
    return split_entries(u, i, values, removed_keys, n_items, user_map, item_map)[0]


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


_EXTRA = ("scales", "removed", "first")  # per new block: row scales, removed entries, a pass

#: the arrays of a pass's output row (recforget.spark.blocks), as the ``first`` column packs them
_PASS_ARRAYS = (*_OUT_ARRAYS, *_OTHER_ARRAYS)


def _first_pass(rec, dtype, fac, k: int, opts: PassOptions, touched_rows, n_rows: int):
    """Run a pass on a freshly encoded block: ``(packed output, its rows' scales)``.

    The output is packed with ``np.savez`` (arrays only, read back without pickle); the scales
    are the pass's gradients at zero before solving (what :func:`_scales` computes)."""
    import io

    from recforget.spark.blocks import solve_block

    blk = decode_block(rec, dtype)
    X = np.frombuffer(fac[0], dtype=dtype).reshape(-1, k)
    Y = np.frombuffer(fac[1], dtype=dtype).reshape(-1, k)
    G = np.frombuffer(fac[2], dtype=np.float64).reshape(k, k)
    touched = np.zeros(n_rows, dtype=bool)
    touched[touched_rows] = True
    res = solve_block(blk, X, Y, G, opts, touched)
    res["solved"] = blk["rows"][res["solved"]]
    buf = io.BytesIO()
    arrays = {c: np.ascontiguousarray(res[c]) for c in _PASS_ARRAYS if res.get(c) is not None}
    np.savez(buf, seconds=np.float64(res["seconds"]), **arrays)
    return buf.getvalue(), np.ascontiguousarray(res["b_pre"], dtype=np.float64).tobytes()


def _first_result(table, X: np.ndarray, opts: PassOptions):
    """The :class:`~recforget.spark.blocks.PassResult` of the passes packed in ``first``."""
    import io

    import pyarrow as pa

    from recforget.spark.blocks import _arrow_schema, _assemble

    cols = table.to_pydict()
    rows: dict[str, list] = {f.name: [] for f in _arrow_schema()}
    for b, blob in zip(cols["block"], cols["first"], strict=True):
        with np.load(io.BytesIO(blob), allow_pickle=False) as z:
            rows["part"].append(0)
            rows["block"].append(b)
            for c in _PASS_ARRAYS:
                rows[c].append(z[c].tobytes() if c in z.files else None)
            rows["loss_data"].append(None)
            rows["loss_ridge"].append(None)
            rows["seconds"].append(float(z["seconds"]))
    return _assemble(pa.table(rows, schema=_arrow_schema()), X, opts)


def _narrow(side_map: np.ndarray) -> bool:
    """Whether every kept row of a side keeps its index (then its blocks update in place)."""
    return bool(np.array_equal(side_map[side_map >= 0], np.flatnonzero(side_map >= 0)))


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
    if side not in ("users", "items"):
        raise ValueError(f"side must be 'users' or 'items', got {side!r}")
    keys, bm25 = _removed_keys_and_bm25(spec, removal, stats)
    frame, state = _side_frame(
        blocks, side, n_blocks, spec, keys, removal.user_map, removal.item_map, bm25, factors
    )
    (new,), (got,) = _materialise([frame])
    state.unpersist()
    return new, _scales_of(got, side, removal, n_blocks, factors is not None)


def _removed_keys_and_bm25(spec: ObjectiveSpec, removal, stats):
    """The removed entries as sorted ``user * n_items + item`` keys (old indices), and the
    remaining data's BM25 statistics when the objective weights by BM25 (else ``None``)."""
    n_items_old = len(removal.item_map)
    keys = np.unique(
        np.asarray(removal.removed_users, dtype=np.int64) * n_items_old
        + np.asarray(removal.removed_items, dtype=np.int64)
    )
    bm25 = None
    if spec.feedback == "implicit" and spec.weighting == "bm25":
        if stats is None:
            raise ValueError("BM25 weights need the remaining data's row statistics (stats=)")
        bm25 = bm25_stats(spec, stats)
    return keys, bm25


def update_sides(
    blocks: dict[str, Any],
    n_blocks: int,
    spec: ObjectiveSpec,
    removal,
    *,
    stats: dict[str, np.ndarray] | None = None,
    factors: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None,
):
    """:func:`update_blocks` for both sides (``blocks`` and ``factors`` per side) in one job.

    Returns ``({side: blocks}, {side: scales} or None)``.
    """
    keys, bm25 = _removed_keys_and_bm25(spec, removal, stats)
    frames, states = [], []
    for side in ("users", "items"):
        fac = None if factors is None else factors[side]
        f, st = _side_frame(
            blocks[side], side, n_blocks, spec, keys, removal.user_map, removal.item_map, bm25, fac
        )
        frames.append(f)
        states.append(st)
    new, got = _materialise(frames)
    for st in states:
        st.unpersist()
    scales = {
        side: _scales_of(t, side, removal, n_blocks, factors is not None)
        for side, t in zip(("users", "items"), got, strict=True)
    }
    return dict(zip(("users", "items"), new, strict=True)), (scales if factors else None)


def remove_with_blocks(
    blocks: dict[str, Any],
    n_blocks: int,
    spec: ObjectiveSpec,
    plan,
    *,
    factors: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None,
    first: PassOptions | None = None,
):
    """A removal and both sides' updated blocks in one Spark job, without a scan of the data.

    ``plan`` is a :class:`~recforget.spark.data.RemovalPlan` of the data ``blocks`` (both
    sides) were built on. Each block drops its entries of the pairs asked and of the users and
    items that leave, and encodes itself again, as :func:`update_blocks` does; the blocks of
    one side whose rows keep their indices also return the entries they dropped (a user
    block holds each of its users' entries exactly once, and so does an item block for its
    items), from which the :class:`~recforget.spark.data.SparkRemoval` is built: so the
    removal needs no scan of the interactions. With ``factors`` (per side, as for
    :func:`update_blocks`) each block also returns its rows' scales. With ``first`` too (and
    the user side's rows keeping their indices), each new user block also runs a pass with
    these options (the users that lost entries touched) in the same job. Returns
    ``(removal, {side: blocks}, {side: scales} or None, the users' PassResult or None)``, or
    ``None`` when this route does not apply: when neither side's rows keep their indices, or
    for BM25 weights (they need the remaining data's statistics before the blocks are
    encoded).
    """
    if spec.feedback == "implicit" and spec.weighting == "bm25":
        return None
    maps = {"users": plan.user_map, "items": plan.item_map}
    narrow = [side for side in ("users", "items") if _narrow(maps[side])]
    if not narrow:
        return None
    keys = plan.pair_keys()
    fold = first is not None and factors is not None and "users" in narrow
    frames, states = [], []
    for side in ("users", "items"):
        fac = None if factors is None else factors[side]
        frame, state = _side_frame(
            blocks[side],
            side,
            n_blocks,
            spec,
            keys,
            plan.user_map,
            plan.item_map,
            None,
            fac,
            by_maps=True,
            report=side in narrow,
            first=first if side == "users" and fold else None,
        )
        frames.append(frame)
        states.append(state)
    new, got = _materialise(frames)
    for state in states:
        state.unpersist()
    found = {}
    for side, table in zip(("users", "items"), got, strict=True):
        if side in narrow:
            cols = table.to_pydict()
            order = np.argsort(np.asarray(cols["block"]), kind="stable")
            parts = [np.frombuffer(cols["removed"][j], dtype=np.int64) for j in order]
            found[side] = np.concatenate(parts).reshape(-1, 3) if parts else np.empty((0, 3))
    if len(found) == 2 and len(found["users"]) != len(found["items"]):  # pragma: no cover
        raise RuntimeError(
            f"the user blocks dropped {len(found['users'])} entries, "
            f"the item blocks {len(found['items'])}"
        )
    ent = found[narrow[0]]
    removal = plan.finish(ent[:, 0].copy(), ent[:, 1].copy(), ent[:, 2].astype(bool))
    scales = None
    if factors is not None:
        scales = {
            side: _scales_of(t, side, removal, n_blocks, True)
            for side, t in zip(("users", "items"), got, strict=True)
        }
    passed = _first_result(got[0], factors["users"][0], first) if fold else None
    return removal, dict(zip(("users", "items"), new, strict=True)), scales, passed


def _materialise(frames: list) -> tuple[list, list]:
    """Persist each frame and materialise them all in one job; each one's (block, scales,
    removed, first) columns, as Arrow tables."""
    import pyarrow as pa
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    persisted = [f.persist(StorageLevel.MEMORY_AND_DISK) for f in frames]
    # a union of the cached frames scans (and so fills) every one of their caches
    parts = [f.select(F.lit(j).alias("part"), "block", *_EXTRA) for j, f in enumerate(persisted)]
    union = parts[0]
    for f in parts[1:]:
        union = union.union(f)
    table = union.toArrow()
    part = np.asarray(table.column("part").to_numpy())
    return persisted, [table.filter(pa.array(part == j)) for j in range(len(persisted))]


def _scales_of(table, side: str, removal, n_blocks: int, want: bool):
    """The side's row scales from the blocks' ``scales`` column (global row order)."""
    if table.num_rows != n_blocks:  # pragma: no cover - every old block maps to one new block
        raise RuntimeError(f"updated {table.num_rows} {side} blocks, expected {n_blocks}")
    if not want:
        return None
    side_map = removal.user_map if side == "users" else removal.item_map
    n_rows = int((np.asarray(side_map) >= 0).sum())
    scales = np.zeros(n_rows)
    cols = table.to_pydict()
    for b, s in zip(cols["block"], cols["scales"], strict=True):
        scales[np.arange(b, n_rows, n_blocks)] = np.frombuffer(s, dtype=np.float64)
    return scales


def _side_frame(
    blocks,
    side: str,
    n_blocks: int,
    spec: ObjectiveSpec,
    keys: np.ndarray,
    user_map: np.ndarray,
    item_map: np.ndarray,
    bm25: tuple[np.ndarray, np.ndarray] | None,
    factors: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
    *,
    by_maps: bool = False,
    report: bool = False,
    first: PassOptions | None = None,
):
    """The (lazy) frame of one side's new blocks, and the broadcast it reads.

    With ``first`` (a narrow side, with ``factors`` and ``by_maps``), each new block also runs
    a pass with these options on itself, the rows that lost entries marked as touched, and
    returns the pass's output (as :func:`~recforget.spark.blocks.run_pass` would) in the
    ``first`` column."""
    import pyarrow as pa
    from pyspark.sql import types as T

    spark = blocks.sparkSession
    user_map = np.asarray(user_map, dtype=np.int64)
    item_map = np.asarray(item_map, dtype=np.int64)
    n_items_old = len(item_map)
    side_map = user_map if side == "users" else item_map
    n_rows = int((side_map >= 0).sum())
    dtype = np.dtype(spec.dtype)
    k = 0 if factors is None else factors[0].shape[1]
    state = spark.sparkContext.broadcast(
        {
            "keys": np.asarray(keys, dtype=np.int64).tobytes(),
            "user_map": user_map.tobytes(),
            "item_map": item_map.tobytes(),
            "bm25": None if bm25 is None else (bm25[0].tobytes(), bm25[1].tobytes()),
            "factors": None
            if factors is None
            else tuple(np.ascontiguousarray(a).tobytes() for a in factors),
        }
    )
    extra = [T.StructField(c, T.BinaryType()) for c in _EXTRA]
    out_schema = T.StructType([*_block_schema().fields, *extra])
    arrow_out = pa.schema(
        [pa.field("block", pa.int32(), False), pa.field("n", pa.int64())]
        + [pa.field(c, pa.binary()) for c in (*BLOCK_COLUMNS, *_EXTRA)]
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

    def finish(rec: dict[str, Any], fac, gone=None) -> dict[str, Any]:
        rec["scales"] = None if fac is None else _scales(rec, dtype, *fac, k)
        rec["removed"] = rec["first"] = None
        if gone is not None:
            rec["removed"] = np.stack(
                [gone[0], gone[1], gone[2].astype(np.int64)], axis=1
            ).tobytes()
        return rec

    def pruned(recs, j, rkeys, um, im):
        blk = decode_block({c: recs[c][j] for c in BLOCK_COLUMNS}, dtype)
        u, i, v = block_entries(blk, side)
        return split_entries(u, i, v, rkeys, n_items_old, um, im, by_maps=by_maps)

    if _narrow(side_map):
        # every kept row of this side stays where it is: one narrow map, no shuffle
        def fn(batches):
            rkeys, um, im, bm, fac = unpack()
            for batch in batches:
                recs = batch_columns(batch)
                out: dict[str, list] = {f.name: [] for f in arrow_out}
                for j in range(batch.num_rows):
                    b = int(recs["block"][j])
                    (u, i, v), gone = pruned(recs, j, rkeys, um, im)
                    rec = encode_block(spec, side, b, n_blocks, n_rows, u, i, v, bm)
                    if first is None:
                        rec = finish(rec, fac, gone if report else None)
                    else:
                        rec = finish(rec, None, gone if report else None)
                        own = (um if side == "users" else im)[gone[0 if side == "users" else 1]]
                        rec["first"], rec["scales"] = _first_pass(
                            rec, dtype, fac, k, first, own[own >= 0], n_rows
                        )
                    for c in out:
                        out[c].append(rec[c])
                yield pa.RecordBatch.from_pydict(out, schema=arrow_out)

        return map_blocks(blocks, fn, out_schema), state
    rdd = _redeal(blocks, side, n_blocks, n_rows, spec, dtype, unpack, pruned, finish)
    return spark.createDataFrame(rdd, out_schema), state


def _redeal(blocks, side, n_blocks, n_rows, spec, dtype, unpack, pruned, finish):
    """Rows of this side left: send each block's entries to their new blocks, encode those."""
    key = 0 if side == "users" else 1

    def pieces(rows):
        rkeys, um, im, _, _ = unpack()
        for row in rows:
            recs = {c: [row[c]] for c in ("block", *BLOCK_COLUMNS)}
            ent, _ = pruned(recs, 0, rkeys, um, im)
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
            yield (rec["block"], rec["n"], *(rec[c] for c in (*BLOCK_COLUMNS, *_EXTRA)))

    rdd = blocks.select("block", *BLOCK_COLUMNS).rdd.mapPartitions(pieces)
    # placeholders come from every partition; keep one per target (groupByKey collects all)
    grouped = rdd.groupByKey(numPartitions=n_blocks, partitionFunc=lambda t: t)
    return grouped.mapPartitions(encode)
