"""Interactions as a Spark DataFrame, indexed by vocabularies held on the driver.

:class:`SparkInteractions` is the distributed counterpart of
:class:`~recforget.data.interactions.Interactions`: a DataFrame with one row per interaction
(``user``, ``item`` raw ids, ``u``, ``i`` dense indices, ``value``) and the two
:class:`~recforget.data.vocab.Vocabulary` objects, sorted as on one machine, so that row ``r``
of a factor matrix means the same user in both engines. :meth:`SparkInteractions.remove`
applies a deletion the way :meth:`Interactions.remove` does (whole users and items leave the
vocabularies, pairs leave the matrix) and reports the same counts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from recforget.data.errors import DataError, UnknownIdError, show_id
from recforget.data.interactions import Interactions, Removal
from recforget.data.vocab import Vocabulary

__all__ = ["RemovalPlan", "SparkInteractions", "SparkRemoval"]

_COMBINE = ("sum", "mean", "max")


def _ids_frame(spark, vocab: Vocabulary, raw: str, idx: str):
    pdf = pd.DataFrame({raw: vocab.ids, idx: np.arange(len(vocab), dtype=np.int64)})
    return spark.createDataFrame(pdf)


def _distinct_ids(df, col: str, name: str) -> Vocabulary:
    values = df.select(col).distinct().toArrow().column(0).to_numpy(zero_copy_only=False)
    if pd.isna(values).any():
        raise DataError(f"column {col!r} has null {name} ids")
    return Vocabulary.from_values(values, name=name)


class SparkInteractions:
    """Interactions on Spark: ``frame`` (user, item, u, i, value) plus the vocabularies.

    ``frame`` is a DataFrame, or (:meth:`lazy`) built on first use: the remaining data of a
    removal is described by the removal's plan, and a forget that works on rating blocks never
    reads it, so its DataFrame (a few JVM round trips per operation) is not built until asked.
    """

    def __init__(
        self,
        frame: Any,
        users: Vocabulary,
        items: Vocabulary,
        _cache: dict[str, Any] | None = None,
    ) -> None:
        self._frame = frame
        self._build: Callable[[], Any] | None = None
        self._spark = None
        self.users = users
        self.items = items
        self._cache = {} if _cache is None else _cache

    @classmethod
    def lazy(
        cls, spark, build: Callable[[], Any], users: Vocabulary, items: Vocabulary
    ) -> SparkInteractions:
        """Interactions whose DataFrame ``build()`` makes on first use of ``frame``."""
        new = cls(None, users, items)
        new._build, new._spark = build, spark
        return new

    @property
    def frame(self):
        if self._frame is None and self._build is not None:
            self._frame, self._build = self._build(), None
        return self._frame

    @frame.setter
    def frame(self, value) -> None:
        self._frame, self._build = value, None

    @property
    def frame_built(self) -> bool:
        """Whether the DataFrame exists (always, unless made by :meth:`lazy` and not used)."""
        return self._build is None

    def __repr__(self) -> str:
        return (
            f"SparkInteractions(n_users={self.n_users}, n_items={self.n_items}, "
            f"frame={'built' if self.frame_built else 'not built'})"
        )

    @property
    def spark(self):
        return self._spark if self._frame is None else self._frame.sparkSession

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def nnz(self) -> int:
        if "nnz" not in self._cache:
            self._cache["nnz"] = int(self.frame.count())
        return self._cache["nnz"]

    # ------------------------------------------------------------------ builders
    @classmethod
    def from_frame(
        cls,
        df,
        user_col: str = "user",
        item_col: str = "item",
        rating_col: str | None = "rating",
        *,
        duplicates: Literal["error", "sum", "mean", "max"] = "error",
        users: Vocabulary | None = None,
        items: Vocabulary | None = None,
    ) -> SparkInteractions:
        """Index a DataFrame of (user, item[, rating]) rows; vocabularies default to sorted ids.

        Repeated (user, item) pairs are refused (``duplicates="error"``, naming one) or
        combined. Null or non-finite ratings are an error naming the row's ids.
        """
        from pyspark.sql import functions as F

        for col in (user_col, item_col) + ((rating_col,) if rating_col else ()):
            if col not in df.columns:
                raise DataError(f"no column {col!r} in the interactions (has {df.columns})")
        if duplicates not in ("error", *_COMBINE):
            raise ValueError(f"duplicates must be 'error' or one of {_COMBINE}, got {duplicates!r}")
        value = F.col(rating_col).cast("double") if rating_col else F.lit(1.0)
        base = df.select(
            F.col(user_col).alias("user"), F.col(item_col).alias("item"), value.alias("value")
        )
        bad = base.where(F.col("value").isNull() | F.isnan("value")).limit(1).collect()
        if bad:
            r = bad[0]
            raise DataError(
                f"missing or non-finite rating for (user {show_id(r['user'])}, "
                f"item {show_id(r['item'])})",
                column=rating_col,
            )
        users = users if users is not None else _distinct_ids(base, "user", "user")
        items = items if items is not None else _distinct_ids(base, "item", "item")
        spark = df.sparkSession
        joined = base.join(F.broadcast(_ids_frame(spark, users, "user", "u")), "user", "left")
        joined = joined.join(F.broadcast(_ids_frame(spark, items, "item", "i")), "item", "left")
        missing = joined.where(F.col("u").isNull() | F.col("i").isNull()).limit(1).collect()
        if missing:
            r = missing[0]
            raise DataError(
                f"(user {show_id(r['user'])}, item {show_id(r['item'])}) is outside the "
                "given vocabularies"
            )
        counts = joined.groupBy("u", "i").agg(F.count("*").alias("n"))
        dup = counts.where(F.col("n") > 1).limit(1).collect()
        if dup:
            if duplicates == "error":
                u, i = int(dup[0]["u"]), int(dup[0]["i"])
                raise DataError(
                    f"duplicate interaction (user {show_id(users.ids[u])}, "
                    f"item {show_id(items.ids[i])}); pass duplicates='sum'|'mean'|'max'"
                )
            agg = getattr(F, duplicates)("value").alias("value")
            joined = joined.groupBy("user", "item", "u", "i").agg(agg)
        frame = joined.select(
            "user", "item", F.col("u").cast("int"), F.col("i").cast("int"), "value"
        )
        return cls(frame, users, items)

    @classmethod
    def from_interactions(cls, spark, data: Interactions, *, partitions: int | None = None):
        """Distribute a single-machine :class:`Interactions` (same vocabularies)."""
        u = data.row_of_entry.astype(np.int32)
        i = data.indices.astype(np.int32)
        pdf = pd.DataFrame(
            {
                "user": data.users.ids[u],
                "item": data.items.ids[i],
                "u": u,
                "i": i,
                "value": data.values.astype(np.float64),
            }
        )
        frame = spark.createDataFrame(pdf)
        if partitions:
            frame = frame.repartition(partitions)
        new = cls(frame, data.users, data.items)
        new._cache["nnz"] = int(data.nnz)
        return new

    def persist(self) -> SparkInteractions:
        from pyspark import StorageLevel

        self.frame = self.frame.persist(StorageLevel.MEMORY_AND_DISK)
        return self

    def unpersist(self) -> SparkInteractions:
        """Release what this data set holds in the executors: its frame and every cached set
        of rating blocks (a forget derives the remaining data's blocks from these and then no
        longer needs them; a model standing on this data rebuilds them if asked to sweep)."""
        if self.frame_built:
            self.frame.unpersist()
        for key in [k for k in self._cache if isinstance(k, tuple) and k[0] == "blocks"]:
            for blocks in self._cache.pop(key).values():
                blocks.unpersist()
        return self

    # ------------------------------------------------------------------ views
    def to_interactions(self) -> Interactions:
        """Collect to one machine (small data and tests)."""
        t = self.frame.select("u", "i", "value").toArrow()
        u = t.column("u").to_numpy().astype(np.int64)
        i = t.column("i").to_numpy().astype(np.int64)
        v = t.column("value").to_numpy().astype(np.float64)
        order = np.lexsort((i, u))
        u, i, v = u[order], i[order], v[order]
        indptr = np.zeros(self.n_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(u, minlength=self.n_users), out=indptr[1:])
        return Interactions(indptr, i, v, self.users, self.items)

    def row_stats(self) -> dict[str, np.ndarray]:
        """Per-row statistics every objective needs, as dense arrays on the driver.

        ``n_users, n_items`` (entries per row) and ``len_users`` (sum of a user's values, for
        BM25), computed by two aggregations over the data.
        """
        if "stats" not in self._cache:
            from pyspark.sql import functions as F

            us = (
                self.frame.groupBy("u")
                .agg(F.count("*").alias("n"), F.sum("value").alias("s"))
                .toArrow()
            )
            it = self.frame.groupBy("i").agg(F.count("*").alias("n")).toArrow()
            n_u = np.zeros(self.n_users, dtype=np.int64)
            len_u = np.zeros(self.n_users, dtype=np.float64)
            n_i = np.zeros(self.n_items, dtype=np.int64)
            uu = us.column("u").to_numpy()
            n_u[uu] = us.column("n").to_numpy()
            len_u[uu] = us.column("s").to_numpy()
            n_i[it.column("i").to_numpy()] = it.column("n").to_numpy()
            self._cache["stats"] = {"n_users": n_u, "n_items": n_i, "len_users": len_u}
        return self._cache["stats"]

    def fingerprint(self) -> str:
        """Order-independent content hash of the (user, item, value) triples (one aggregation).

        Not the single-machine fingerprint (that one sorts every entry on one machine): an XOR
        and a wrapping sum of per-entry 64-bit hashes of the raw ids and the value, and the
        count, digested with sha256 under the tag ``recforget-spark-interactions-v1``.
        """
        if "fp" not in self._cache:
            from pyspark.sql import functions as F

            h = F.xxhash64(
                F.col("user").cast("string"), F.col("item").cast("string"), F.col("value")
            )
            row = self.frame.agg(
                F.count("*").alias("n"),
                F.bit_xor(h).alias("x"),
                F.bit_xor(
                    F.hash(
                        F.col("user").cast("string"), F.col("item").cast("string"), F.col("value")
                    )
                ).alias("y"),
                F.sum((h % 1000003).cast("long")).alias("s"),
            ).collect()[0]
            digest = hashlib.sha256(
                f"recforget-spark-interactions-v1\n{row['n']}:{row['x']}:{row['y']}:{row['s']}".encode()
            )
            self._cache["fp"] = digest.hexdigest()
        return self._cache["fp"]

    # ------------------------------------------------------------------ deletion
    def remove(
        self,
        pairs: Iterable[tuple[object, object]] = (),
        users: Iterable[object] = (),
        items: Iterable[object] = (),
        *,
        missing: Literal["error", "ignore"] = "error",
    ) -> SparkRemoval:
        """Remove interactions, whole users and whole items (raw ids), as on one machine."""
        return self.plan_removal(pairs, users, items, missing=missing).scan()

    def plan_removal(
        self,
        pairs: Iterable[tuple[object, object]] = (),
        users: Iterable[object] = (),
        items: Iterable[object] = (),
        *,
        missing: Literal["error", "ignore"] = "error",
    ) -> RemovalPlan:
        """What a removal drops, from the vocabularies alone (no Spark job): the indices of the
        users, items and pairs asked, the old-to-new index maps and the remaining data's
        (lazy) frame. :meth:`RemovalPlan.finish` completes it with the removed entries, found
        by a scan of the frame (:meth:`remove`) or of the rating blocks."""
        from pyspark.sql import functions as F

        pairs, users, items = list(pairs), list(users), list(items)
        for p in pairs:
            if not isinstance(p, (tuple, list)) or len(p) != 2:
                raise ValueError(f"a pair must be (user, item), got {p!r}")
        pu = [p[0] for p in pairs]
        pi = [p[1] for p in pairs]
        unknown = {
            "users": list(dict.fromkeys(self.users.unknown(users + pu))),
            "items": list(dict.fromkeys(self.items.unknown(items + pi))),
        }
        if missing == "error":
            if unknown["users"]:
                raise UnknownIdError("user", unknown["users"])
            if unknown["items"]:
                raise UnknownIdError("item", unknown["items"])
        uidx = self.users.index(users, missing="ignore")
        iidx = self.items.index(items, missing="ignore")
        uidx, iidx = np.unique(uidx[uidx >= 0]), np.unique(iidx[iidx >= 0])
        pu_idx = self.users.index(pu, missing="ignore")
        pi_idx = self.items.index(pi, missing="ignore")
        known = (pu_idx >= 0) & (pi_idx >= 0)
        asked = np.stack([pu_idx[known], pi_idx[known]], axis=1).astype(np.int64).reshape(-1, 2)
        pair_idx = np.unique(asked, axis=0)

        user_gone = np.zeros(self.n_users, dtype=bool)
        user_gone[uidx] = True
        item_gone = np.zeros(self.n_items, dtype=bool)
        item_gone[iidx] = True
        user_map = np.cumsum(~user_gone) - 1
        user_map[user_gone] = -1
        item_map = np.cumsum(~item_gone) - 1
        item_map[item_gone] = -1
        new_users, new_items = self.users, self.items
        if len(uidx) or len(iidx):
            new_users = self.users.take(np.flatnonzero(~user_gone))
            new_items = self.items.take(np.flatnonzero(~item_gone))
        # the DataFrames are built on first use (each operation is a JVM round trip): a forget
        # that finds the removal in the rating blocks never needs them
        built: dict[str, Any] = {}

        def marked():
            if "marked" not in built:
                built["marked"] = _marked_frame(self, uidx, iidx, pair_idx)
            return built["marked"]

        def kept():
            frame = marked().where(~F.col("_drop")).select("user", "item", "u", "i", "value")
            if len(uidx) or len(iidx):
                frame = _reindex(frame, user_map, item_map)
            return frame

        return RemovalPlan(
            source=self,
            marked=marked,
            data=SparkInteractions.lazy(self.spark, kept, new_users, new_items),
            asked=asked,
            pair_idx=pair_idx,
            user_map=user_map,
            item_map=item_map,
            dropped_users=uidx,
            dropped_items=iidx,
            unknown=unknown,
        )


def _marked_frame(data: SparkInteractions, uidx, iidx, pair_idx):
    """``data``'s frame with ``_drop`` (removed) and ``_pair`` (asked as a pair) columns."""
    from pyspark.sql import functions as F

    drop = F.lit(False)
    if len(uidx):
        drop = drop | F.col("u").isin([int(x) for x in uidx])
    if len(iidx):
        drop = drop | F.col("i").isin([int(x) for x in iidx])
    frame = data.frame.withColumn("_drop", drop)
    if len(pair_idx):
        pdf = pd.DataFrame(
            {"u": pair_idx[:, 0].astype(np.int32), "i": pair_idx[:, 1].astype(np.int32)}
        )
        pf = data.spark.createDataFrame(pdf).withColumn("_pair", F.lit(True))
        frame = (
            frame.join(F.broadcast(pf), ["u", "i"], "left")
            .withColumn("_pair", F.coalesce(F.col("_pair"), F.lit(False)))
            .withColumn("_drop", F.col("_drop") | F.col("_pair"))
        )
    else:
        frame = frame.withColumn("_pair", F.lit(False))
    return frame


@dataclass(frozen=True)
class RemovalPlan:
    """A removal before its entries are found: see :meth:`SparkInteractions.plan_removal`.

    ``frame`` is the data's frame with ``_drop`` (removed) and ``_pair`` (asked as a pair)
    columns, built on first use by ``marked()``; ``data`` the remaining data (its frame built
    on first use too); ``asked`` the known pairs as asked (old indices, repeats kept),
    ``pair_idx`` those pairs sorted and unique.
    """

    source: SparkInteractions
    marked: Callable[[], Any]
    data: SparkInteractions
    asked: np.ndarray
    pair_idx: np.ndarray
    user_map: np.ndarray
    item_map: np.ndarray
    dropped_users: np.ndarray
    dropped_items: np.ndarray
    unknown: dict[str, list[object]]

    @property
    def frame(self):
        return self.marked()

    @property
    def asks_nothing(self) -> bool:
        """No known pair, user or item is asked: the removal is a no-op (no scan needed)."""
        return not (len(self.pair_idx) or len(self.dropped_users) or len(self.dropped_items))

    def scan(self) -> SparkRemoval:
        """The removal, its entries found by one scan of the interactions."""
        if self.asks_nothing:
            empty = np.empty(0, dtype=np.int64)
            return self.finish(empty, empty, np.empty(0, dtype=bool))
        # one scan finds every removed entry, and which of them the pairs asked for
        removed = self.frame.where("_drop").select("u", "i", "_pair").toArrow()
        return self.finish(
            removed.column("u").to_numpy().astype(np.int64),
            removed.column("i").to_numpy().astype(np.int64),
            removed.column("_pair").to_numpy(zero_copy_only=False).astype(bool),
        )

    def pair_keys(self) -> np.ndarray:
        """``u * n_items + i`` (old indices) of the pairs asked, sorted and unique."""
        n_items = np.int64(len(self.item_map))
        return np.unique(self.pair_idx[:, 0] * n_items + self.pair_idx[:, 1])

    def finish(self, removed_u: np.ndarray, removed_i: np.ndarray, hit: np.ndarray) -> SparkRemoval:
        """The :class:`SparkRemoval`, from every removed entry (old indices) and whether each was
        asked as a pair."""
        if len(self.pair_idx):
            present = set(zip(removed_u[hit].tolist(), removed_i[hit].tolist(), strict=True))
            absent = sum(1 for p in map(tuple, self.asked.tolist()) if p not in present)
        else:
            absent = 0
        self.data._cache["nnz"] = self.source.nnz - len(removed_u)
        return SparkRemoval(
            data=self.data,
            removed_users=removed_u,
            removed_items=removed_i,
            user_map=self.user_map,
            item_map=self.item_map,
            dropped_users=self.dropped_users,
            dropped_items=self.dropped_items,
            absent_pairs=absent,
            unknown=self.unknown,
        )


def _reindex(frame, user_map: np.ndarray, item_map: np.ndarray):
    """Map ``u``/``i`` through the old-to-new index maps (broadcast; one map over the rows)."""
    import pyarrow as pa

    sc = frame.sparkSession.sparkContext
    bmaps = sc.broadcast((user_map.astype(np.int32).tobytes(), item_map.astype(np.int32).tobytes()))
    schema = frame.schema

    def fn(batches):
        um = np.frombuffer(bmaps.value[0], dtype=np.int32)
        im = np.frombuffer(bmaps.value[1], dtype=np.int32)
        for b in batches:
            cols = {name: b.column(name) for name in b.schema.names}
            cols["u"] = pa.array(um[b.column("u").to_numpy()])
            cols["i"] = pa.array(im[b.column("i").to_numpy()])
            yield pa.RecordBatch.from_pydict(cols, schema=b.schema)

    return frame.mapInArrow(fn, schema)


@dataclass(frozen=True)
class SparkRemoval(Removal):
    """What :meth:`SparkInteractions.remove` did: a :class:`~recforget.data.interactions.Removal`
    (same fields and counts, indices those before removal) whose ``data`` is the remaining
    :class:`SparkInteractions`."""

    data: SparkInteractions
