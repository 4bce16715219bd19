"""Sharded ensembles: the exact-by-partition baselines SISA and RecEraser.

The training data are cut into ``n_shards`` disjoint shards (:mod:`recforget.models._partition`),
one copy of a base model is trained per shard, and their scores are aggregated. Forgetting
retrains only the shards that held deleted data (:mod:`recforget.unlearn.sharded`), which is
exact by construction: every shard model is a model trained from scratch on data that never
contained the deleted interactions. The price is accuracy: each shard model sees a
``1/n_shards`` share of the data.

* SISA (Bourtoule et al., S&P 2021), ``aggregation="mean"``: the mean of the shard scores over
  the shards that hold data of the user (over every shard for a user none holds). With a
  user partition that is the user's own shard model; with an interaction partition, all.
* RecEraser (Chen et al., WWW 2022), ``aggregation="attention"``: per-user attention weights
  over the shards, ``a_us = softmax_s(h^T tanh(W e_us + b))`` with ``e_us`` the user's
  embedding in shard ``s`` (ALS user factors, NCF user embedding tables), learned with the
  BPR loss on the training data while the shard models stay fixed, and scores
  ``sum_s a_us s_s(u, i)``. (The paper aggregates embeddings, since its base models are dot
  products; aggregating scores serves any base model, neural ones included.) The aggregator
  is refitted on the remaining data after each deletion, so it holds no deleted data either.

Ensembles are saved as a directory per shard plus their own (:meth:`ShardedEnsemble.save`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from recforget._rng import resolve_seed
from recforget.data.forgotten import ForgottenIds
from recforget.data.interactions import Interactions
from recforget.models._attention import user_embeddings
from recforget.models._partition import PARTITIONS, partition
from recforget.models.base import Recommender, clone

AGGREGATIONS = ("mean", "attention")


def shard_seeds(seed: int, n_shards: int) -> list[int]:
    """One independent seed per shard, derived from the ensemble's seed."""
    children = np.random.SeedSequence(seed).spawn(n_shards)
    return [int(c.generate_state(1, dtype=np.uint32)[0]) for c in children]


class ShardedEnsemble(Recommender):
    """``n_shards`` copies of ``base``, one per disjoint shard of the data, scores aggregated.

    Parameters
    ----------
    base : Recommender
        The (unfitted) model trained on each shard; each copy gets its own seed.
    n_shards : int
    partition : {"user", "item", "interaction", "balanced-user", "balanced-item",
        "balanced-interaction"}
        How entries are cut into shards (see :mod:`recforget.models._partition`).
    aggregation : {"mean", "attention"}
        SISA's masked mean or RecEraser's learned attention (see the module docstring).
    attention_dim : int
        Width of the attention layer.
    attention_epochs : int
    attention_samples : int
        Training triples ``(u, i, j)`` drawn for the aggregator (at most one per entry).
    attention_lr, attention_reg : float
        Adam step size and L2 weight of the aggregator.
    partition_iterations : int
        Balanced k-means rounds (balanced partitions).
    random_state : int, Generator or None
        Seeds the partition, the shard models (one derived seed each) and the aggregator.

    Attributes
    ----------
    shards_ : list of Recommender
        Fitted shard models; each stands on its shard (``shards_[s].seen_``) with the
        ensemble's vocabularies.
    shard_seeds_ : list of int
    attention_ : dict of ndarray or None
        ``W`` (d, a), ``b`` (a,), ``h`` (a,) of the aggregator.
    seen_ : Interactions
        All the data the shards stand on.
    """

    kind = "sharded"

    def __init__(
        self,
        base: Recommender | None = None,
        *,
        n_shards: int = 10,
        partition: str = "interaction",
        aggregation: str = "mean",
        attention_dim: int = 16,
        attention_epochs: int = 10,
        attention_samples: int = 200_000,
        attention_lr: float = 0.01,
        attention_reg: float = 1e-4,
        partition_iterations: int = 5,
        random_state: int | np.random.Generator | None = None,
    ) -> None:
        self.base = base
        self.n_shards = n_shards
        self.partition = partition
        self.aggregation = aggregation
        self.attention_dim = attention_dim
        self.attention_epochs = attention_epochs
        self.attention_samples = attention_samples
        self.attention_lr = attention_lr
        self.attention_reg = attention_reg
        self.partition_iterations = partition_iterations
        self.random_state = random_state

    def _validate(self) -> None:
        if not isinstance(self.base, Recommender):
            raise ValueError(f"base must be a Recommender, got {type(self.base).__name__}")
        if not isinstance(self.n_shards, (int, np.integer)) or self.n_shards < 1:
            raise ValueError(f"n_shards must be a positive integer, got {self.n_shards!r}")
        if self.partition not in PARTITIONS:
            raise ValueError(f"partition must be one of {PARTITIONS}, got {self.partition!r}")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {self.aggregation!r}")
        for name in ("attention_dim", "attention_epochs", "attention_samples"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

    # ------------------------------------------------------------------ training
    def fit(self, interactions: Interactions) -> ShardedEnsemble:
        """Partition ``interactions``, fit one base copy per shard, fit the aggregator."""
        self._validate()
        if not isinstance(interactions, Interactions):
            raise TypeError(f"fit expects Interactions, got {type(interactions).__name__}")
        if interactions.nnz < self.n_shards:
            raise ValueError(f"{interactions.nnz} interactions cannot fill {self.n_shards} shards")
        seed = resolve_seed(self.random_state)
        self.seed_ = seed
        shard_of = partition(
            interactions,
            self.n_shards,
            self.partition,
            seed,
            iterations=self.partition_iterations,
        )
        self.shard_seeds_ = shard_seeds(seed, self.n_shards)
        shards = []
        for s in range(self.n_shards):
            part = interactions.select(shard_of == s)
            shards.append(clone(self.base).set_params(random_state=self.shard_seeds_[s]).fit(part))
        self.set_shards(shards, interactions)
        return self

    def set_shards(
        self,
        shards: list[Recommender],
        data: Interactions,
        *,
        attention: dict[str, np.ndarray] | None = None,
    ) -> ShardedEnsemble:
        """Stand on ``data`` with these fitted shard models; refit the aggregator on ``data``.

        Every shard must share ``data``'s vocabularies and stand on a part of it. With
        ``attention`` given, that aggregator is kept instead of refitted.
        """
        for s, m in enumerate(shards):
            if m.users_ != data.users or m.items_ != data.items:
                raise ValueError(f"shard {s}'s vocabularies differ from the ensemble's data")
        self.shards_ = list(shards)
        self.users_, self.items_, self.seen_ = data.users, data.items, data
        counts = np.stack([m.seen_.user_counts() for m in shards], axis=1)
        if counts.sum() != data.nnz:
            raise ValueError("the shards do not partition the data")
        self.user_shard_counts_ = counts
        self.attention_ = attention
        if attention is None and self.aggregation == "attention" and len(shards) > 1:
            from recforget.models._attention import fit_attention

            self.attention_ = fit_attention(self, data, seed=self.seed_)
        return self

    # ------------------------------------------------------------------ scoring
    def shard_weights(self, user_idx: np.ndarray) -> np.ndarray:
        """Aggregation weights of the given users, shape (len(user_idx), n_shards), rows sum 1."""
        user_idx = np.asarray(user_idx, dtype=np.int64)
        if self.attention_ is not None:
            a = self.attention_
            z = np.stack(
                [
                    np.tanh(user_embeddings(m, user_idx) @ a["W"] + a["b"]) @ a["h"]
                    for m in self.shards_
                ],
                axis=1,
            )
            z -= z.max(axis=1, keepdims=True)
            w = np.exp(z)
            return w / w.sum(axis=1, keepdims=True)
        has = (self.user_shard_counts_[user_idx] > 0).astype(np.float64)
        has[has.sum(axis=1) == 0] = 1.0
        return has / has.sum(axis=1, keepdims=True)

    def _score_rows(self, user_idx: np.ndarray) -> np.ndarray:
        user_idx = np.asarray(user_idx, dtype=np.int64)
        w = self.shard_weights(user_idx)
        out = np.zeros((len(user_idx), self.seen_.n_items))
        for s, m in enumerate(self.shards_):
            # a shard scores only the users it weighs (SISA with a user partition: one each)
            rows = np.flatnonzero(w[:, s] > 0)
            if len(rows) == len(user_idx):
                out += w[:, s, None] * m._score_rows(user_idx)
            elif len(rows):
                out[rows] += w[rows, s, None] * m._score_rows(user_idx[rows])
        return out

    def _score_pairs(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        w = self.shard_weights(u)
        out = np.zeros(len(u))
        for s, m in enumerate(self.shards_):
            out += w[:, s] * m._score_pairs(u, i)
        return out

    @property
    def item_factors_(self) -> np.ndarray:
        """The shards' item vectors side by side, shape (n_items, sum of their widths)."""
        parts = []
        for m in self.shards_:
            module = getattr(m, "module_", None)
            if module is not None and hasattr(module, "all_item_vectors"):
                parts.append(module.all_item_vectors().detach().cpu().numpy())
            else:
                parts.append(np.asarray(m.item_factors_))
        return np.hstack(parts)

    def predict_proba(self, users: Any, items: Any) -> np.ndarray:
        """``sigmoid`` of the aggregated score (neural shards score in logits)."""
        return 1.0 / (1.0 + np.exp(-self.score(users, items)))

    def model_hash(self) -> str:
        """sha256 over the shard models' hashes and the aggregator."""
        import hashlib

        h = hashlib.sha256()
        for m in self.shards_:
            h.update(m.model_hash().encode())
        for v in (self.attention_ or {}).values():
            h.update(np.ascontiguousarray(v).tobytes())
        return h.hexdigest()

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write the ensemble: its own directory (arrays + JSON) and one per shard, no pickle.

        ``path/config.json`` records the base model's kind and parameters, ``path/arrays.npz``
        the data, the shard seeds and the aggregator; ``path/shard_000`` ... are the shard
        models' own directories.
        """
        from recforget.io import save_model_dir

        self._check_fitted()
        params = self._saved_params()
        base = params.pop("base")
        params["base"] = {"kind": _kind(base), "params": base._saved_params()}
        arrays = {**self._saved_data(), "shard_seeds": np.asarray(self.shard_seeds_, np.int64)}
        for key, value in (self.attention_ or {}).items():
            arrays[f"attention_{key}"] = value
        manifest = {
            "seed": self.seed_,
            "n_shards": len(self.shards_),
            "data_fingerprint": self.seen_.fingerprint(),
            "deletions": list(getattr(self, "deletions_", [])),
            "forgotten": ForgottenIds.of(self).to_manifest(),
            "model_hash": self.model_hash(),
        }
        out = save_model_dir(path, kind="sharded", arrays=arrays, config=params, manifest=manifest)
        for s, m in enumerate(self.shards_):
            m.save(Path(path) / f"shard_{s:03d}")
        return out

    @classmethod
    def load(cls, path: str | Path) -> ShardedEnsemble:
        """Read an ensemble written by :meth:`save` (shards bit-exact, aggregator kept)."""
        from recforget.io import load_model_dir
        from recforget.models.registry import load_model

        params, manifest, arrays = load_model_dir(path, "sharded")
        info = params.pop("base")
        model = cls(base=_base(info["kind"], info["params"]), **params)
        shards = [load_model(Path(path) / f"shard_{s:03d}") for s in range(manifest["n_shards"])]
        attention = {
            k[len("attention_") :]: arrays[k] for k in arrays if k.startswith("attention_")
        }
        model.seed_ = int(manifest["seed"])
        model.shard_seeds_ = [int(x) for x in arrays["shard_seeds"]]
        model.set_shards(shards, cls._restored_data(arrays), attention=attention or None)
        model.deletions_ = list(manifest.get("deletions", []))
        model.forgotten_ = ForgottenIds.from_manifest(manifest.get("forgotten"))
        return model


def _kind(model: Recommender) -> str:
    from recforget.models.als import ALS

    if isinstance(model, ALS):
        return "als"
    kind = getattr(model, "kind", None)
    if kind not in ("ncf", "sharded"):
        raise ValueError(f"cannot save a {type(model).__name__} base model")
    return kind


def _base(kind: str, params: dict[str, Any]) -> Recommender:
    if kind == "als":
        from recforget.models.als import ALS

        return ALS(**params)
    if kind == "ncf":
        from recforget.models.ncf import NCF

        return NCF(**params)
    raise ValueError(f"unknown base model kind {kind!r}")


__all__ = ["AGGREGATIONS", "ShardedEnsemble", "shard_seeds"]
