"""Cornac (3.x) ``MF`` and ``BPR`` models: their embeddings in and out of :class:`~recforget.ALS`.

Cornac saves models with pickle, which recforget never reads; these functions work on the
in-memory model objects (``cornac.models.MF`` / ``cornac.models.BPR``, fitted), with the data
taken from the model's own ``train_set``.

* ``MF`` runs SGD with a per-rating ridge term, so it minimises

  .. math::
      \\tfrac12 \\sum_{(u,i) \\in \\Omega} \\big[(r_{ui} - \\mu - b_u - b_i - x_u^\\top y_i)^2
          + \\lambda (\\|x_u\\|^2 + \\|y_i\\|^2 + b_u^2 + b_i^2)\\big]

  (``mu`` the training mean, biases only with ``use_bias``): recforget's explicit objective
  with ``regularization_scaling="frequency"`` and ``regularization = lambda_reg``, which
  :func:`from_cornac` sets. Forgetting then minimises MF's own objective on the remaining
  ratings (SGD rarely ends at its stationary point; the unlearning sweeps take it there).
* ``BPR`` minimises a pairwise logistic loss that no least-squares sweep reproduces. Its
  scores ``x_u . y_i + b_i`` are taken as a bi-linear model of dimension ``k + 1``
  (``[x_u, 1] . [y_i, b_i]``) and unlearning minimises the ALS objective you choose
  (``**params``, implicit feedback by default) on the remaining data: "exact" then means a
  certified stationary point of *that* objective without the deleted data, not of BPR's.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import scipy.sparse as sp

from recforget.data.interactions import Interactions
from recforget.data.vocab import Vocabulary
from recforget.models.als import ALS


def data_of(model: Any) -> Interactions:
    """The training data of a fitted Cornac model, indexed as the model indexes it."""
    ts = getattr(model, "train_set", None)
    if ts is None:
        raise ValueError("the Cornac model has no train_set: is it fitted?")
    u, i, r = ts.uir_tuple
    users = _ids_in_index_order(ts.uid_map, "user")
    items = _ids_in_index_order(ts.iid_map, "item")
    csr = sp.csr_array(
        (np.asarray(r, np.float64), (np.asarray(u), np.asarray(i))),
        shape=(len(users), len(items)),
    )
    return Interactions.from_csr(csr, users, items)


def _ids_in_index_order(id_map: dict, name: str) -> Vocabulary:
    ids = [None] * len(id_map)
    for raw, idx in id_map.items():
        ids[idx] = raw
    return Vocabulary(ids, name=name)


def from_cornac(model: Any, **params: Any) -> ALS:
    """A fitted :class:`~recforget.ALS` holding a Cornac ``MF`` or ``BPR`` model's embeddings.

    ``MF``: the objective is MF's own (see the module docstring); ``params`` may override
    ``iterations`` and the like, not the objective. ``BPR``: ``params`` define the ALS
    objective unlearning will minimise (default: implicit feedback, binary preferences).
    """
    name = type(model).__name__
    if name not in ("MF", "BPR"):
        raise ValueError(f"only Cornac MF and BPR models are supported, got {name}")
    data = data_of(model)
    X = np.array(model.u_factors, dtype=np.float32)
    Y = np.array(model.i_factors, dtype=np.float32)
    if name == "MF":
        objective = {
            "feedback": "explicit",
            "biases": bool(model.use_bias),
            "regularization": float(model.lambda_reg),
            "regularization_scaling": "frequency",
        }
        clash = {k for k in params if k in objective}
        if clash:
            raise ValueError(f"MF's objective fixes {sorted(clash)}; do not override them")
        out = ALS.from_factors(
            X,
            Y,
            data,
            user_bias=np.asarray(model.u_biases) if model.use_bias else None,
            item_bias=np.asarray(model.i_biases) if model.use_bias else None,
            **objective,
            **params,
        )
        if model.use_bias:
            out.global_mean_ = float(model.global_mean)
        return out
    # BPR
    bias = np.asarray(model.i_biases, dtype=np.float32)
    if not getattr(model, "use_bias", True):
        bias = np.zeros_like(bias)
    Xa = np.hstack([X, np.ones((len(X), 1), np.float32)])
    Ya = np.hstack([Y, bias[:, None]])
    params = {"feedback": "implicit", **params}
    if params["feedback"] != "implicit":
        raise ValueError("a BPR model is imported with an implicit-feedback objective")
    return ALS.from_factors(Xa, Ya, data.with_values(np.ones(data.nnz)), **params)


def to_cornac(model: ALS, like: Any) -> Any:
    """A copy of the Cornac model ``like`` carrying ``model``'s embeddings and remaining data.

    The copy's ``train_set`` is rebuilt from the data ``model`` stands on, so nothing that was
    forgotten stays in it; its user and item indices are those of the new ``train_set``.
    ``like`` itself is left untouched. A BPR model comes back with ``k + 1`` factors and zero
    item biases (the bias lives in the last factor column).
    """
    from cornac.data import Dataset

    model._check_fitted()
    name = type(like).__name__
    if name not in ("MF", "BPR"):
        raise ValueError(f"only Cornac MF and BPR models are supported, got {name}")
    data = model.seen_
    frame = data.to_frame()
    users = data.users.ids.tolist()
    items = data.items.ids.tolist()
    u = frame["user"].tolist() if "user" in frame else []
    triples = list(zip(u, frame["item"].tolist(), frame["rating"].tolist(), strict=True))
    if not triples:
        raise ValueError("no interactions left: a Cornac model needs a non-empty train_set")
    ts = Dataset.from_uir(triples, seed=getattr(like, "seed", None))
    # embeddings in the new train_set's index order (users without data have no index there)
    ui = np.array([ts.uid_map[x] for x in users if x in ts.uid_map], dtype=np.int64)
    ii = np.array([ts.iid_map[x] for x in items if x in ts.iid_map], dtype=np.int64)
    keep_u = np.array([x in ts.uid_map for x in users], dtype=bool)
    keep_i = np.array([x in ts.iid_map for x in items], dtype=bool)
    k = model.user_factors_.shape[1]
    U = np.zeros((ts.num_users, k), np.float32)
    V = np.zeros((ts.num_items, k), np.float32)
    U[ui] = model.user_factors_[keep_u]
    V[ii] = model.item_factors_[keep_i]
    out = copy.deepcopy(like)
    out.num_users, out.num_items = ts.num_users, ts.num_items
    out.uid_map, out.iid_map = ts.uid_map, ts.iid_map
    out.min_rating, out.max_rating = ts.min_rating, ts.max_rating
    out.train_set, out.val_set = ts, None
    out.u_factors, out.i_factors = U, V
    if name == "MF":
        out.u_biases = np.zeros(ts.num_users, np.float32)
        out.i_biases = np.zeros(ts.num_items, np.float32)
        if model.user_bias_ is not None:
            out.u_biases[ui] = model.user_bias_[keep_u]
            out.i_biases[ii] = model.item_bias_[keep_i]
        out.global_mean = np.float32(model.global_mean_ if like.use_bias else 0.0)
    else:
        out.i_biases = np.zeros(ts.num_items, np.float32)
        out.k = k
    return out


__all__ = ["data_of", "from_cornac", "to_cornac"]
