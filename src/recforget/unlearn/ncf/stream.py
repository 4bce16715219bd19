"""Streaming AltEraser: NCF deletions one request after another, at the cost of what they change.

``recforget.forget(model, request, "alteraser")`` is one-shot: it copies the data, rebuilds the
fixed sample and its tensors, verifies the objective's decrease with a pass over the whole
remaining sample and certifies the result from scratch (``O(|S|)`` several times per request).
:class:`NCFForgetter` keeps what a stream needs between requests, all in the indices of the
first model (rows of removed users and items stay, flagged dead, as in
:class:`~recforget.data.mutable.MutableInteractions`):

* the network, the positives as a :class:`~recforget.data.mutable.MutableInteractions` and the
  fixed negatives as a second one (values: how often the user drew the item; a user's draw is
  redrawn, ``O(n_items)``, only when the request touches it);
* AltEraser's prepared curvature (block Hessians and anchor rows, carried as the one-shot
  method carries them);
* every row's data gradient :math:`g_b = \\sum_{s \\ni b} \\ell'(z_s) J_s`, the shared weights'
  gradient and the summed loss :math:`L = \\sum_s \\ell_s`.

The objective is a sum of per-sample terms, so a request changes these only through the samples
that left or joined the sample and the samples of the rows the step moves: each request
(1) removes the data and applies the sample change (terms subtracted at the current network),
(2) takes AltEraser's block-Jacobi Newton step on the changed blocks
(:func:`recforget.unlearn.ncf.update.jacobi_step`'s step, from the same curvature, with the
global ridge: ``forget(..., "alteraser", ridge="global")``; the one-shot default, per-row ridges,
is not streamed yet),
(3) verifies the anchored objective's decrease (Armijo, halving the step otherwise) from the
moved rows' samples alone, (4) updates the gradients of every row those samples touch and the
certificate of the plain objective from them, and (5) updates incremental digests. Nothing costs
``O(|S|)``; the certificate's aggregation is ``O(rows)`` over vectors of row norms.

Every ``verify_every`` requests the gradients and loss are recomputed from scratch (the drift is
reported in the receipt's ``verification``) and the stream continues from the fresh values.

>>> from recforget import DeletionRequest, Interactions
>>> from recforget.models.ncf import NCF, torch_threads
>>> from recforget.unlearn.stream import Forgetter
>>> data = Interactions.from_arrays([0, 0, 1, 1, 2, 2, 3], [0, 1, 1, 2, 0, 2, 3])
>>> model = NCF("gmf", factors=4, epochs=3, random_state=0).fit(data)
>>> forgetter = Forgetter(model)           # an NCFForgetter for NCF models
>>> receipt = forgetter.forget(DeletionRequest(users=[1]))
>>> receipt["sequence"], receipt["removed"]["users"], receipt["method"]
(1, 1, 'alteraser-stream')
>>> forgetter.model.module_.n_users
3

.. note:: Experimental.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from recforget._digest import MultisetDigest, element_hashes, id_hashes, row_hashes
from recforget._threads import one_blas_thread
from recforget.data.forgotten import ForgottenIds
from recforget.data.interactions import Interactions
from recforget.data.mutable import MutableInteractions
from recforget.kernels.ncf_stream import gmf_sweep
from recforget.models._certificate import certificate, certified, relative_residuals, row_floor
from recforget.models._ncf_curvature import Curvature, prepared
from recforget.models._ncf_module import GMFHead, NCFModule
from recforget.models._ncf_objective import objective_reg, shared_weights
from recforget.models.ncf import NCF, torch_threads
from recforget.unlearn._stream_requests import (
    RequestQueue,
    check_known,
    check_request,
    record_dropped,
    still_to_remove,
)
from recforget.unlearn.api import deletion_entry, request_fields
from recforget.unlearn.ncf._stream_sample import WorkingSample
from recforget.unlearn.ncf.alteraser import _tol
from recforget.unlearn.ncf.sample import SampleChange
from recforget.unlearn.ncf.update import change_hessians, prepare
from recforget.unlearn.requests import DeletionRequest

METHOD = "alteraser-stream"
DATA_SCHEME = "recforget-data-mset-v1"  # the ALS stream's: same data, same fingerprint
MODEL_SCHEME = "recforget-ncf-model-mset-v1"
CHUNK = 1 << 16  # samples per gathered chunk
_SIDES = ("users", "items")


def _terms(
    module: NCFModule,
    U: torch.Tensor,
    V: torch.Tensor,
    shared: dict[str, torch.Tensor],
    y: torch.Tensor,
    m: torch.Tensor,
    *,
    grads: bool = True,
) -> tuple[float, torch.Tensor | None, torch.Tensor | None, dict[str, torch.Tensor] | None]:
    """Loss :math:`\\sum_s m_s \\ell_s` and per-sample gradient rows of one gathered chunk."""
    if isinstance(module.head, GMFHead):
        h = shared["out.weight"][0]
        with torch.no_grad():
            z = (U * V) @ h + shared["out.bias"][0]
            loss = float((m * F.binary_cross_entropy_with_logits(z, y, reduction="none")).sum())
            if not grads:
                return loss, None, None, None
            w = (m * (torch.sigmoid(z) - y))[:, None]
            gU, gV = w * (V * h), w * (U * h)
            gS = {"out.weight": (w * U * V).sum(0, keepdim=True), "out.bias": w.sum(0)}
            return loss, gU, gV, gS
    if not grads:
        with torch.no_grad():
            z = module.logits(U, V, shared)
            loss = float((m * F.binary_cross_entropy_with_logits(z, y, reduction="none")).sum())
            return loss, None, None, None
    Ul, Vl = U.detach().requires_grad_(), V.detach().requires_grad_()
    sh = {k: v.detach().clone().requires_grad_() for k, v in shared.items()}
    z = module.logits(Ul, Vl, sh)
    total = (m * F.binary_cross_entropy_with_logits(z, y, reduction="none")).sum()
    out = torch.autograd.grad(total, [Ul, Vl, *sh.values()])
    return float(total.detach()), out[0], out[1], dict(zip(sh, out[2:], strict=True))


class NCFForgetter(RequestQueue):
    """Serve a stream of deletion requests on one NCF model with AltEraser's one-step update.

    Each request is what ``recforget.forget(model, request, "alteraser")`` does to the model
    the previous request left (one anchored block-Jacobi Newton step on the blocks whose
    samples changed, from the carried curvature, Armijo-verified), at a cost in proportion to
    the samples it changes and the samples of the rows it moves. Reached through
    :class:`recforget.unlearn.stream.Forgetter` (which dispatches on the model kind) or
    directly.

    Parameters
    ----------
    model : fitted NCF
        Left untouched (its curvature is prepared on a copy when it has none; the fixed
        negatives are cached on it, as the one-shot methods do).
    tol : float, optional
        Tolerance the plain objective's certificate is judged at (default AltEraser's,
        :data:`recforget.unlearn.ncf.alteraser.DEFAULT_TOL`). As in the one-shot receipt,
        ``certified`` is reported as measured: one Newton step does not make a trained
        network a stationary point of the fixed-sample objective.
    verify_every : int or None
        Every this many requests recompute every gradient and the loss from scratch
        (``O(|S|)``), report the drift of the maintained ones in ``verification`` and continue
        from the fresh values. ``None`` or 0: never.
    compact_at : float
        Compact the working data (positives and negatives) when this share of slots is free.
    max_halvings : int
        Most step halvings of the Armijo test (as :func:`~recforget.unlearn.ncf.update.
        jacobi_step`).
    missing : {"error", "ignore"}
        Unknown ids raise :class:`~recforget.UnknownIdError` (nothing is changed) or are
        reported. Ids forgotten earlier are never unknown.
    id_key : bytes, hex str or None
        The key of the model's record of forgotten ids (default: ``RECFORGET_ID_KEY``); as
        for :func:`recforget.forget` (:mod:`recforget.data.forgotten`).
    """

    def __init__(
        self,
        model: NCF,
        *,
        tol: float | None = None,
        verify_every: int | None = 100,
        compact_at: float = 0.5,
        max_halvings: int = 10,
        missing: Literal["error", "ignore"] = "error",
        id_key: bytes | str | None = None,
    ) -> None:
        start = time.perf_counter()
        if not isinstance(model, NCF):
            raise TypeError(f"NCFForgetter serves NCF models, got {type(model).__name__}")
        self._forgotten = ForgottenIds.of(model).bind(id_key)  # a wrong key fails first
        model._check_fitted()
        if verify_every is not None and (not isinstance(verify_every, int) or verify_every < 0):
            raise ValueError(f"verify_every must be None or an integer >= 0, got {verify_every!r}")
        if not 0 < compact_at < 1:
            raise ValueError(f"compact_at must be in (0, 1), got {compact_at!r}")
        if missing not in ("error", "ignore"):
            raise ValueError(f"missing must be 'error' or 'ignore', got {missing!r}")
        if next(model.module_.parameters()).device.type != "cpu":
            raise ValueError("NCFForgetter runs on CPU models (use recforget.forget on others)")
        self.tol = _tol(tol)
        self.reg = objective_reg(model)
        self.verify_every = verify_every or 0
        self.compact_at = compact_at
        self.max_halvings = max_halvings
        self.missing = missing
        self.sequence = 0
        self._params = {**model.get_params(), "random_state": model.seed_}
        self._seed = int(model.seed_)
        self._num_threads = model.num_threads
        prepare_seconds = 0.0
        with torch_threads(self._num_threads), one_blas_thread():
            curv = prepared(model, self.reg, "global")  # the stream's steps use one ridge
            if curv is None:
                t0 = time.perf_counter()
                curv = prepare(copy.copy(model), self.reg, ridge="global")
                prepare_seconds = time.perf_counter() - t0
            self._module = model.module_.take()  # a copy, in the first model's indices
            self._H = {"users": curv.users.clone(), "items": curv.items.clone()}
            self._anchor = {"users": curv.user_anchor.clone(), "items": curv.item_anchor.clone()}
            self._sample = WorkingSample(model)
            self._view, self._neg = self._sample.positives, self._sample.negatives
            self._refresh()
        self._deletions = list(getattr(model, "deletions_", []))
        self._queue: list[DeletionRequest] = []
        self._model: NCF | None = None
        self._init_digests()
        self.setup = {
            "seconds": time.perf_counter() - start,
            "prepare_seconds": prepare_seconds,
            "samples": self._n,
            "certificate": self._certificate(),
        }

    # ------------------------------------------------------------------ state
    def _refresh(self) -> None:
        """Every row's gradient, the shared gradient, the loss and the norms, from scratch."""
        module = self._module
        self._g = {
            "users": torch.zeros(module.n_users, module.user_dim, dtype=torch.float64),
            "items": torch.zeros(module.n_items, module.item_dim, dtype=torch.float64),
        }
        self._gs = {k: torch.zeros_like(v, dtype=torch.float64) for k, v in self._shared().items()}
        u, i, y, m = self._sample.all()
        self._L = self._accumulate(u, i, y, m, sign=1.0)
        self._n = round(float(m.sum()))
        self._sq = {
            w: (self._theta(w) ** 2).sum(1) for w in _SIDES
        }  # per-row squared norms, float64
        self._sq_shared = float(sum((v.double() ** 2).sum() for v in self._shared().values()))
        self._norms = {}
        for w in _SIDES:
            self._norms[w] = (np.zeros(self._alive(w).shape), np.zeros(self._alive(w).shape))
            self._row_norms(w, np.arange(len(self._alive(w))))

    def _shared(self) -> dict[str, torch.Tensor]:
        return shared_weights(self._module)

    def _alive(self, which: str) -> np.ndarray:
        return self._view.user_alive if which == "users" else self._view.item_alive

    def _theta(self, which: str, rows: np.ndarray | None = None) -> torch.Tensor:
        m = self._module
        T = m.all_user_vectors() if which == "users" else m.all_item_vectors()
        T = T.detach()
        return (T if rows is None else T[torch.as_tensor(rows)]).double()

    def _accumulate(
        self, u: np.ndarray, i: np.ndarray, y: np.ndarray, m: np.ndarray, *, sign: float
    ) -> float:
        """Add ``sign`` times the samples' terms at the current network to the gradients;
        returns their summed loss (unsigned)."""
        if not len(u):
            return 0.0
        module = self._module
        U, V, shared = self._theta_f("users"), self._theta_f("items"), self._shared()
        ut, it = torch.as_tensor(u), torch.as_tensor(i)
        yt = torch.as_tensor(y, dtype=torch.float32)
        mt = torch.as_tensor(m, dtype=torch.float32)
        loss = 0.0
        for s in range(0, len(u), CHUNK):
            sl = slice(s, s + CHUNK)
            part, gU, gV, gS = _terms(module, U[ut[sl]], V[it[sl]], shared, yt[sl], mt[sl])
            loss += part
            self._g["users"].index_add_(0, ut[sl], gU.double(), alpha=sign)
            self._g["items"].index_add_(0, it[sl], gV.double(), alpha=sign)
            for k, g in gS.items():
                self._gs[k] += sign * g.double().reshape(self._gs[k].shape)
        return loss

    def _theta_f(self, which: str) -> torch.Tensor:
        m = self._module
        return (m.all_user_vectors() if which == "users" else m.all_item_vectors()).detach()

    def _row_norms(self, which: str, rows: np.ndarray) -> None:
        """Recompute the residual norm and scale of ``rows`` (plain objective, ridge ``reg``)."""
        if not len(rows):
            return
        g = self._g[which][torch.as_tensor(rows)]
        th = self._theta(which, rows)
        norm, scale = self._norms[which]
        norm[rows] = (g + self.reg * th).norm(dim=1).numpy()
        scale[rows] = (g.norm(dim=1) + self.reg * th.norm(dim=1)).numpy()

    def _certificate(self) -> dict[str, Any]:
        """The plain objective's certificate, as :meth:`NCF.certify` reports it."""
        norms, scales = [], []
        for w in _SIDES:
            alive = self._alive(w)
            norms.append(self._norms[w][0][alive])
            scales.append(self._norms[w][1][alive])
        th = torch.cat([v.double().ravel() for v in self._shared().values()])
        gs = torch.cat([v.ravel() for v in self._gs.values()])
        norms.append(np.array([float((gs + self.reg * th).norm())]))
        scales.append(np.array([float(gs.norm() + self.reg * th.norm())]))
        g, s = np.concatenate(norms), np.concatenate(scales)
        cert = certificate(g, s)
        cert["max_residual"] /= max(self._n, 1)
        sq = sum(float(self._sq[w][torch.as_tensor(self._alive(w))].sum()) for w in _SIDES)
        objective = (self._L + 0.5 * self.reg * (sq + self._sq_shared)) / max(self._n, 1)
        return {
            "objective": objective,
            "residual": cert["relative"],
            "certificate": {**cert, "reg": self.reg, "tol": self.tol},
            "certified": certified(cert, self.tol),
        }

    # ------------------------------------------------------------------ digests
    def _init_digests(self) -> None:
        view = self._view
        self._ids = {"users": id_hashes(view.users.ids), "items": id_hashes(view.items.ids)}
        self._data_digest = MultisetDigest(DATA_SCHEME)
        pos = np.flatnonzero(view.live)
        rows = np.searchsorted(view.indptr, pos, side="right") - 1
        self._data_digest.add(self._entry_hashes(rows, view.indices[pos], view.values[pos]))
        self._model_digest = MultisetDigest(MODEL_SCHEME)
        self._row_hash = {}
        for w in _SIDES:
            rows = np.flatnonzero(self._alive(w))
            self._row_hash[w] = np.zeros((len(self._alive(w)), 4), dtype=np.uint64)
            self._row_hash[w][rows] = self._row_hashes(w, rows)
            self._model_digest.add(self._row_hash[w][rows])
        shared = torch.cat([v.float().ravel() for v in self._shared().values()]).numpy()
        self._model_digest.add(row_hashes(shared[None, :], np.array([3], np.uint64)))

    def _entry_hashes(self, users, items, values) -> np.ndarray:
        return element_hashes(
            self._ids["users"][users], self._ids["items"][items], values.view(np.uint64)
        )

    def _row_hashes(self, which: str, rows: np.ndarray) -> np.ndarray:
        tag = np.full(len(rows), 1 if which == "users" else 2, dtype=np.uint64)
        X = self._theta_f(which)[torch.as_tensor(rows)].numpy()
        return row_hashes(X, tag, self._ids[which][rows])

    def _rehash(self, which: str, rows: np.ndarray) -> None:
        """Replace the digest elements of ``rows`` (dead rows leave the digest)."""
        if not len(rows):
            return
        self._model_digest.remove(self._row_hash[which][rows])
        self._row_hash[which][rows] = 0
        live = rows[self._alive(which)[rows]]
        h = self._row_hashes(which, live)
        self._row_hash[which][live] = h
        self._model_digest.add(h)

    # ------------------------------------------------------------------ public state
    @property
    def model(self) -> NCF:
        """The current model (built on first access after a change, ``O(nnz)``)."""
        if self._model is None:
            view = self._view
            au, ai = np.flatnonzero(view.user_alive), np.flatnonzero(view.item_alive)
            module = self._module.take(torch.as_tensor(au), torch.as_tensor(ai))
            model = NCF.from_module(module, view.to_interactions(), **self._params)
            model.seed_ = self._seed
            model.objective_reg_ = self.reg
            model.forgotten_ = self._forgotten.copy()
            model.deletions_ = list(self._deletions)
            model.curvature_ = Curvature(
                self._H["users"][au].clone(),
                self._H["items"][ai].clone(),
                self._anchor["users"][au].clone(),
                self._anchor["items"][ai].clone(),
                self.reg,
                loss=self._L,
                exact=False,
                params_hash=model.model_hash(),
            )
            self._model = model
        return self._model

    @property
    def data(self) -> Interactions:
        """The remaining training data (the data :attr:`model` stands on)."""
        return self.model.seen_

    @property
    def view(self) -> MutableInteractions:
        """The mutable working copy of the positives (read it, do not edit it)."""
        return self._view

    @property
    def negatives(self) -> MutableInteractions:
        """The fixed negatives: value = how often the user drew the item (read only)."""
        return self._neg

    @property
    def data_fingerprint(self) -> str:
        return self._data_digest.hexdigest()

    @property
    def model_digest(self) -> str:
        return self._model_digest.hexdigest()

    def certificate(self) -> dict[str, Any]:
        """``{"objective", "residual", "certificate", "certified"}`` of the current model."""
        return self._certificate()

    def verify(self) -> dict[str, Any]:
        """Recompute gradients and loss from scratch; the drift of the maintained ones.

        ``drift`` is the largest difference of a row's maintained gradient from the fresh one,
        in units of the row's certificate scale (the shared weights included);
        ``loss_drift`` the loss's, relative. The stream continues from the fresh values.
        """
        with torch_threads(self._num_threads), one_blas_thread():
            g_old = {w: self._g[w].clone() for w in _SIDES}
            gs_old = torch.cat([v.ravel() for v in self._gs.values()])
            L_old = self._L
            self._refresh()
            parts, scales = [], []
            for w in _SIDES:
                alive = torch.as_tensor(self._alive(w))
                parts.append((g_old[w] - self._g[w])[alive].norm(dim=1).numpy())
                scales.append(self._norms[w][1][self._alive(w)])
            gs = torch.cat([v.ravel() for v in self._gs.values()])
            th = torch.cat([v.double().ravel() for v in self._shared().values()])
            parts.append(np.array([float((gs_old - gs).norm())]))
            scales.append(np.array([float(gs.norm() + self.reg * th.norm())]))
            s = np.concatenate(scales)
            drift = float(relative_residuals(np.concatenate(parts), s, row_floor(s)).max())
            cert = self._certificate()
        return {
            "drift": drift,
            "loss_drift": abs(L_old - self._L) / max(abs(self._L), 1e-300),
            "certificate": cert["certificate"],
            "certified": cert["certified"],
        }

    # ------------------------------------------------------------------ requests
    def forget_batch(self, requests: Sequence[DeletionRequest]) -> list[dict[str, Any]]:
        """Forget several requests together: each is removed in order, then one step is
        taken for all (as ``recforget.forget`` on their union would). One receipt each."""
        wall_start = time.perf_counter()
        from recforget import __version__

        for r in requests:
            check_request(r)
        if self.missing == "error":
            self._check_known(requests)
        parts, changes = [], []
        dropped: dict[str, list[np.ndarray]] = {"users": [], "items": []}
        with torch_threads(self._num_threads), one_blas_thread():
            start = time.perf_counter()
            for request in requests:
                before = self._data_digest.hexdigest()
                removal, again, change = self._remove(request)
                parts.append((request, removal, again, before, self._data_digest.hexdigest()))
                if change is not None:
                    changes.append(change)
                    dropped["users"].append(removal.dropped_users)
                    dropped["items"].append(removal.dropped_items)
            changed = bool(changes)
            if changed:
                gone = {w: np.concatenate(d).astype(np.int64) for w, d in dropped.items()}
                info = self._step(SampleChange.concat(changes), gone)
            else:
                info = {"blocks_users": 0, "blocks_items": 0, "step": 0.0, "decrease": 0.0}
                info.update(samples_changed=0, samples_affected=0)
            cert = self._certificate() if changed else None
            seconds = time.perf_counter() - start
            n_before = self.sequence
            self.sequence += len(requests)
            verification = None
            if (
                changed
                and self.verify_every
                and self.sequence // self.verify_every > n_before // self.verify_every
            ):
                verification = self.verify()
            for m in (self._view, self._neg):
                if changed and m.should_compact(self.compact_at):
                    m.compact()
        if changed:
            self._model = None
        model_hash = self._model_digest.hexdigest()
        receipts = []
        for n, (request, removal, again, before, after) in enumerate(parts):
            receipt: dict[str, Any] = {
                "method": METHOD,
                "model": "ncf",
                "sequence": n_before + n + 1,
                **request_fields(request, removal, again),
                "data_fingerprint_before": before,
                "data_fingerprint_after": after,
                "seconds": seconds,
                "library_version": __version__,
                "noop": removal.is_noop,
                "batch": {"size": len(requests), "index": n},
                "update": "jacobi",
                "ridge": "global",
                "rounds": 1 if changed else 0,
                "anchored": True,
                "anchored_residual": None,
                "blocks_solved": info["blocks_users"] + info["blocks_items"],
                "blocks_solved_users": info["blocks_users"],
                "blocks_solved_items": info["blocks_items"],
                "step": info["step"],
                "samples_changed": info["samples_changed"],
                "samples_affected": info["samples_affected"],
                "prepared": True,
                "prepare_seconds": 0.0,
                "loss_history": [0.0, -info["decrease"] / max(self._n, 1)],
                "stop_reason": "max_rounds",
                "digests": {"data": DATA_SCHEME, "model": MODEL_SCHEME},
                "model_hash": model_hash,
            }
            if cert is not None:
                receipt.update(cert)
            if verification is not None:
                receipt["verification"] = verification
            if not removal.is_noop:
                self._deletions.append(deletion_entry(receipt))
            receipts.append(receipt)
        wall = time.perf_counter() - wall_start
        for receipt in receipts:
            receipt["wall_seconds"] = wall
        return receipts

    # ------------------------------------------------------------------ removal
    def _check_known(self, requests: Sequence[DeletionRequest]) -> None:
        check_known(self._view, self._forgotten, requests)

    def _remove(self, request: DeletionRequest):
        """Apply one request to the working data and the negatives; its sample change."""
        view = self._view
        keep, pairs, n_again = still_to_remove(view, self._forgotten, request)
        removal = view.remove(
            pairs=pairs, users=keep["users"], items=keep["items"], missing=self.missing
        )
        if removal.is_noop:
            return removal, n_again, None
        self._data_digest.remove(
            self._entry_hashes(removal.users, removal.items, view.values[removal.entries])
        )
        record_dropped(view, self._forgotten, removal)
        return removal, n_again, self._sample.apply(removal)

    # ------------------------------------------------------------------ the step
    def _step(self, change: SampleChange, dropped: dict[str, np.ndarray]) -> dict[str, Any]:
        """AltEraser's step for ``change``; the state follows (see the module docstring)."""
        module, reg = self._module, self.reg
        # (1) the change's terms at the current network: delta = g_old - g_new (their gradient)
        touched = {w: np.unique(getattr(change, w)) for w in _SIDES}
        before = {w: self._g[w][torch.as_tensor(touched[w])] for w in _SIDES}
        self._L -= self._accumulate(
            change.users, change.items, change.labels, change.weights, sign=-1.0
        )
        delta = {w: before[w] - self._g[w][torch.as_tensor(touched[w])] for w in _SIDES}
        self._n -= round(float(change.weights.sum()))
        # (2) the Newton step of every kept block whose samples changed
        rows, steps, dsel = {}, {}, {}
        for w in _SIDES:
            keep = self._alive(w)[touched[w]]
            rows[w] = touched[w][keep]
            r = torch.as_tensor(rows[w])
            dsel[w] = delta[w][torch.as_tensor(np.flatnonzero(keep))]
            if not len(r):
                steps[w] = dsel[w]
                continue
            H = self._H[w][r] - change_hessians(module, change, w, rows[w])
            self._H[w][r] = H  # the carried curvature: the remaining sample's
            H = H + reg * torch.eye(H.shape[1], dtype=H.dtype)
            # float32 like the stored curvature (the Armijo test guards the step)
            steps[w] = torch.linalg.solve(H, dsel[w].float().unsqueeze(-1)).squeeze(-1).double()
        slope = -float(sum((dsel[w] * steps[w]).sum() for w in _SIDES))
        c_dot = float(
            sum((self._anchor[w][torch.as_tensor(rows[w])] * steps[w]).sum() for w in _SIDES)
        )
        # (3) Armijo on the anchored objective, from the moved rows' samples alone
        T0 = {w: self._theta(w, rows[w]) for w in _SIDES}
        if isinstance(module.head, GMFHead):
            taken, decrease, near, n_affected = self._line_search_gmf(rows, steps, T0, slope, c_dot)
        else:
            au, ai, ay, am = self._sample.of_rows(rows)
            taken, decrease = self._line_search(rows, steps, T0, slope, c_dot, (au, ai, ay, am))
            near = {"users": au, "items": ai}
            n_affected = round(float(am.sum()))  # with multiplicities, as |S|
        # (4) gradients, norms and digests of every row the step touched
        if taken > 0:
            for w in _SIDES:
                self._sq[w][torch.as_tensor(rows[w])] = (self._theta(w, rows[w]) ** 2).sum(1)
        for w in _SIDES:
            mask = np.zeros(len(self._alive(w)), dtype=bool)
            mask[touched[w]] = True
            mask[near[w]] = True
            self._row_norms(w, np.flatnonzero(mask))
            moved = rows[w] if taken > 0 else np.empty(0, np.int64)
            # rows that left: out of the certificate, the ridge and the digest
            self._rehash(w, np.union1d(moved, dropped[w]).astype(np.int64))
        return {
            "blocks_users": len(rows["users"]),
            "blocks_items": len(rows["items"]),
            "step": taken,
            "decrease": decrease,
            "samples_changed": len(change),
            "samples_affected": n_affected,
        }

    def _line_search_gmf(self, rows, steps, T0, slope, c_dot):
        """:meth:`_line_search` for GMF: one compiled pass over the moved rows' samples
        (:func:`recforget.kernels.ncf_stream.gmf_sweep`) per trial step."""
        module, reg = self._module, self.reg
        view, neg = self._view, self._neg
        P0 = module.user_tables[0].weight.detach().numpy()
        Q0 = module.item_tables[0].weight.detach().numpy()
        h = module.head.out.weight.detach().numpy()[0].astype(np.float64)
        b = float(module.head.out.bias.detach()[0])
        user_moved = np.zeros(len(P0), dtype=bool)
        user_moved[rows["users"]] = True
        t, taken, decrease = 1.0, 0.0, 0.0
        for _ in range(self.max_halvings + 1):
            T1 = {w: T0[w] + t * steps[w] for w in _SIDES}
            trial = {w: T1[w].float().numpy() for w in _SIDES}
            P1, Q1 = P0.copy(), Q0.copy()
            P1[rows["users"]] = trial["users"]
            Q1[rows["items"]] = trial["items"]
            gU, gV = np.zeros(P0.shape), np.zeros(Q0.shape)
            gh, acc = np.zeros(len(h)), np.zeros(3)
            tu, ti = np.zeros(len(P0), dtype=bool), np.zeros(len(Q0), dtype=bool)
            gmf_sweep(
                rows["users"], rows["items"], user_moved,
                view.indptr, view.indices, view.live, view.t_indptr, view.t_indices, view.t_twin,
                neg.indptr, neg.indices, neg.live, neg.values,
                neg.t_indptr, neg.t_indices, neg.t_twin,
                P0, Q0, P1, Q1, h, b, gU, gV, gh, acc, tu, ti,
            )  # fmt: skip
            ridge = 0.5 * reg * float(sum((T1[w] ** 2).sum() - (T0[w] ** 2).sum() for w in _SIDES))
            change_f = acc[0] + ridge - t * c_dot
            if change_f <= 1e-4 * t * slope:
                taken, decrease = t, -change_f
                break
            t *= 0.5
        near = {"users": np.flatnonzero(tu), "items": np.flatnonzero(ti)}
        if not taken:
            return 0.0, 0.0, near, int(acc[2])
        module.set_user_vectors(torch.as_tensor(rows["users"]), torch.from_numpy(trial["users"]))
        module.set_item_vectors(torch.as_tensor(rows["items"]), torch.from_numpy(trial["items"]))
        self._L += float(acc[0])
        self._g["users"] += torch.from_numpy(gU)
        self._g["items"] += torch.from_numpy(gV)
        self._gs["out.weight"] += torch.from_numpy(gh)[None, :]
        self._gs["out.bias"] += float(acc[1])
        return taken, decrease, near, int(acc[2])

    def _line_search(self, rows, steps, T0, slope, c_dot, samples) -> tuple[float, float]:
        """Halve the step until the anchored objective decreases enough (Armijo); apply it and
        the moved rows' samples' terms. Returns (step fraction taken, decrease)."""
        module, reg = self._module, self.reg
        au, ai, ay, am = samples
        where = {}
        for w, idx in (("users", au), ("items", ai)):
            pos = np.full(len(self._alive(w)), -1, np.int64)
            pos[rows[w]] = np.arange(len(rows[w]))
            where[w] = torch.as_tensor(pos[idx])
        idx = {"users": torch.as_tensor(au), "items": torch.as_tensor(ai)}
        yt = torch.as_tensor(ay, dtype=torch.float32)
        mt = torch.as_tensor(am, dtype=torch.float32)
        tables = {w: self._theta_f(w) for w in _SIDES}
        shared = self._shared()

        def sweep(trial: dict[str, torch.Tensor] | None, grads: bool):
            """The affected samples' terms with the moved rows at ``trial`` (None: as now)."""
            acc = {w: torch.zeros(tables[w].shape, dtype=torch.float64) for w in _SIDES}
            acc_s = {k: torch.zeros(v.shape, dtype=torch.float64) for k, v in self._gs.items()}
            loss = 0.0
            for s in range(0, len(au), CHUNK):
                sl = slice(s, s + CHUNK)
                X = {}
                for w in _SIDES:
                    X[w] = tables[w][idx[w][sl]]
                    if trial is not None:
                        pos = where[w][sl]
                        hit = torch.nonzero(pos >= 0).squeeze(1)
                        X[w][hit] = trial[w][pos[hit]]
                part, gU, gV, gS = _terms(
                    module, X["users"], X["items"], shared, yt[sl], mt[sl], grads=grads
                )
                loss += part
                if grads:
                    acc["users"].index_add_(0, idx["users"][sl], gU.double())
                    acc["items"].index_add_(0, idx["items"][sl], gV.double())
                    for k, g in gS.items():
                        acc_s[k] += g.double().reshape(acc_s[k].shape)
            return loss, acc, acc_s

        f0, old, old_s = sweep(None, True)
        t, taken, decrease, new = 1.0, 0.0, 0.0, None
        for _ in range(self.max_halvings + 1):
            T1 = {w: T0[w] + t * steps[w] for w in _SIDES}
            trial = {w: T1[w].float() for w in _SIDES}
            f1, new, new_s = sweep(trial, True)
            ridge = 0.5 * reg * float(sum((T1[w] ** 2).sum() - (T0[w] ** 2).sum() for w in _SIDES))
            change_f = f1 - f0 + ridge - t * c_dot
            if change_f <= 1e-4 * t * slope:
                taken, decrease = t, -change_f
                break
            t *= 0.5
        if not taken:
            return 0.0, 0.0
        module.set_user_vectors(torch.as_tensor(rows["users"]), trial["users"])
        module.set_item_vectors(torch.as_tensor(rows["items"]), trial["items"])
        self._L += f1 - f0
        for w in _SIDES:
            self._g[w] += new[w] - old[w]
        for k in self._gs:
            self._gs[k] += new_s[k] - old_s[k]
        return taken, decrease


__all__ = ["METHOD", "MODEL_SCHEME", "NCFForgetter"]
