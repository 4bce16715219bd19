"""Estimator contract shared by every recommender (scikit-learn conventions).

``__init__`` only stores its arguments; ``fit`` validates them and returns ``self``; learned
state ends in ``_``. :func:`clone` gives an unfitted copy with the same parameters, which is
how the retraining oracle is built: ``clone(model).fit(remaining)``.
"""

from __future__ import annotations

import copy
import inspect
from abc import ABC, abstractmethod
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from recforget.data.forgotten import ForgottenIds
from recforget.data.interactions import Interactions
from recforget.data.vocab import Vocabulary

T = TypeVar("T", bound="Recommender")


class NotFittedError(RuntimeError):
    """The model was used before ``fit``."""


class Recommender(ABC):
    """Base class: parameters, cloning, raw-id scoring and top-k recommendation.

    Subclasses implement :meth:`fit`, :meth:`_score_rows` (scores of user indices against all
    items), :meth:`save` and :meth:`load`. After ``fit`` they set ``users_`` and ``items_``
    (:class:`~recforget.data.vocab.Vocabulary`) and ``seen_`` (the training Interactions,
    used to exclude seen items).
    """

    users_: Vocabulary
    items_: Vocabulary

    # ---------------------------------------------------------------- parameters
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [
            p.name
            for p in sig.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters (scikit-learn contract)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self: T, **params: Any) -> T:
        valid = set(self._param_names())
        for key, value in params.items():
            if key not in valid:
                raise ValueError(f"invalid parameter {key!r} for {type(self).__name__}")
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "users_")

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit first")

    # ---------------------------------------------------------------- training
    @abstractmethod
    def fit(self: T, interactions: Interactions) -> T:
        """Learn from ``interactions``; returns ``self``."""

    @abstractmethod
    def _score_rows(self, user_idx: np.ndarray) -> np.ndarray:
        """Scores of the given user indices against every item, shape (len(user_idx), n_items)."""

    @abstractmethod
    def save(self, path: str | Path) -> Path:
        """Write the model to a directory (arrays + JSON, no pickle)."""

    # ---------------------------------------------------------------- persistence
    def _saved_data(self) -> dict[str, np.ndarray]:
        """Vocabularies and training interactions, saved beside every model's own arrays."""
        from recforget.io import vocab_to_array

        data = self.seen_
        arrays = {
            "user_ids": vocab_to_array(self.users_),
            "item_ids": vocab_to_array(self.items_),
            "data_indptr": data.indptr,
            "data_indices": data.indices,
            "data_values": data.values,
        }
        if data.timestamps is not None:
            arrays["data_timestamps"] = data.timestamps
        return arrays

    @staticmethod
    def _restored_data(arrays: dict[str, np.ndarray]) -> Interactions:
        """The training interactions written by :meth:`_saved_data`."""
        from recforget.io import vocab_from_array

        return Interactions(
            arrays["data_indptr"],
            arrays["data_indices"],
            arrays["data_values"],
            vocab_from_array(arrays["user_ids"], "user"),
            vocab_from_array(arrays["item_ids"], "item"),
            arrays.get("data_timestamps"),
        )

    def _saved_params(self) -> dict[str, Any]:
        """``get_params()`` made JSON-ready (a Generator seed is recorded as ``seed`` instead)."""
        params = self.get_params()
        if isinstance(params.get("random_state"), np.random.Generator):
            params["random_state"] = None
        return params

    def _check_vocab(self, data: Interactions) -> None:
        """Refuse data whose vocabularies differ from the model's (it must be the same users)."""
        if data.users != self.users_ or data.items != self.items_:
            raise ValueError(
                "the data's user/item vocabularies differ from the model's; "
                "use recforget.forget to remove users or items"
            )

    def _restore_manifest(self, manifest: dict[str, Any]) -> None:
        """Set what :meth:`_manifest` saved for every model: seed, history, forgetting log."""
        self.seed_ = int(manifest["seed"])
        self.n_iter_ = int(manifest["n_iter"])
        self.loss_history_ = list(manifest.get("loss_history", []))
        self.deletions_ = list(manifest.get("deletions", []))
        self.forgotten_ = ForgottenIds.from_manifest(manifest.get("forgotten"))

    def _manifest(self, **fields: Any) -> dict[str, Any]:
        """Manifest entries every saved model shares (version, seed, data, forgetting log)."""
        from recforget import __version__

        data = self.seen_
        return {
            "library_version": __version__,
            "seed": self.seed_,
            "data_fingerprint": data.fingerprint(),
            "n_users": data.n_users,
            "n_items": data.n_items,
            "nnz": data.nnz,
            "n_iter": self.n_iter_,
            "loss_history": list(self.loss_history_),
            "deletions": list(getattr(self, "deletions_", [])),
            "forgotten": ForgottenIds.of(self).to_manifest(),
            "model_hash": self.model_hash(),
            **fields,
        }

    # ---------------------------------------------------------------- raw-id API
    def score(self, users: Iterable[object], items: Iterable[object]) -> np.ndarray:
        """Scores of (user, item) pairs given as two equally long sequences of raw ids."""
        self._check_fitted()
        u = self.users_.index(list(users))
        i = self.items_.index(list(items))
        if len(u) != len(i):
            raise ValueError(f"{len(u)} users but {len(i)} items: pass one item per user")
        return self._score_pairs(u, i)

    def _score_pairs(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        out = np.empty(len(u), dtype=np.float64)
        for start in range(0, len(u), 4096):
            uu, ii = u[start : start + 4096], i[start : start + 4096]
            rows, inv = np.unique(uu, return_inverse=True)
            scores = self._score_rows(rows)
            out[start : start + 4096] = scores[inv, ii]
        return out

    def recommend(
        self, users: Iterable[object], k: int = 10, *, exclude_seen: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items for each user (raw ids).

        Returns
        -------
        items : ndarray of shape (n_users, k)
            Raw item ids, best first.
        scores : ndarray of shape (n_users, k)
            Their scores; ``-inf`` pads rows with fewer than ``k`` candidates.
        """
        self._check_fitted()
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        u = self.users_.index(list(users))
        top, scores = self._recommend_rows(u, k, exclude_seen=exclude_seen)
        ids = self.items_.ids
        return ids[np.maximum(top, 0)], scores

    def _recommend_rows(
        self, u: np.ndarray, k: int, *, exclude_seen: bool = True, batch: int = 1024
    ) -> tuple[np.ndarray, np.ndarray]:
        from recforget.kernels.topk import topk_rows

        n_items = len(self.items_)
        k = min(k, n_items)
        top = np.empty((len(u), k), dtype=np.int64)
        val = np.empty((len(u), k), dtype=np.float64)
        seen = self.seen_ if exclude_seen else None
        for start in range(0, len(u), batch):
            rows = u[start : start + batch]
            scores = self._score_rows(rows).astype(np.float64, copy=False)
            if seen is not None:
                scores = scores.copy()
                for r, row in enumerate(rows):
                    scores[r, seen.indices[seen.indptr[row] : seen.indptr[row + 1]]] = -np.inf
            top[start : start + batch], val[start : start + batch] = topk_rows(scores, k)
        return top, val

    seen_: Interactions


def clone(model: T) -> T:
    """An unfitted copy of ``model`` with the same (deep-copied) parameters."""
    params = {k: copy.deepcopy(v) for k, v in model.get_params().items()}
    return type(model)(**params)


__all__ = ["NotFittedError", "Recommender", "clone"]
