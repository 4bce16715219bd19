"""Streaming forgetting: certified deletions one request after another, at the deletion's cost.

:func:`recforget.forget` is one-shot: it copies the data, rebuilds the objective and recomputes
the certificate from scratch, ``O(nnz)`` per request whatever the request's size.
:class:`Forgetter` keeps the state a stream needs between requests (a mutable working copy of
the data, every row's gradient, the certificate, incremental digests of the data and the
model) so that each request costs what it touches: its entries, the rows they belong to, the
rows the re-solved ones are adjacent to, and a low-rank change of the Gram matrices.

>>> from recforget import ALS, DeletionRequest
>>> from recforget.data.generators import synthetic
>>> from recforget.unlearn.stream import Forgetter
>>> data = synthetic(60, 40, rank=3, density=0.2, random_state=0)
>>> model = ALS(factors=4, regularization=1.0, iterations=50, grad_tol=1e-4, random_state=0)
>>> forgetter = Forgetter(model.fit(data), tol=1e-3)
>>> receipt = forgetter.forget(DeletionRequest(users=[3]))
>>> receipt["sequence"], receipt["certified"], receipt["removed"]["users"]
(1, True, 1)
>>> forgetter.model.user_factors_.shape
(59, 4)

Every receipt carries the fields of :func:`recforget.forget`'s receipt, plus ``sequence`` (1, 2,
... per forgetter), ``wall_seconds`` (the caller's wall clock from the call to the return,
certificate, digests and any verification included) beside ``seconds`` (the method's time:
removal, re-solves and certificate) and ``verify_seconds`` (the part of it spent on the
from-scratch verification), ``batch`` and, when a verification pass completes,
``verification`` (a from-scratch recomputation, by default spread over the period's
requests). Its ``certificate`` holds *upper bounds* of
the row residuals (``"bound": true``); ``certified`` means every live row's relative residual is
at most ``tol``. ``data_fingerprint_*`` and ``model_hash`` are incremental multiset digests
(schemes in ``digests``; see :mod:`recforget._digest`), not the ``O(size)`` sha256 values of the
one-shot receipts; ``forgetter.model.model_hash()`` and ``forgetter.data.fingerprint()`` give
those at any time.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, Literal

import numpy as np

from recforget._digest import MultisetDigest, element_hashes, id_hashes, row_hashes
from recforget._threads import one_blas_thread
from recforget.data.forgotten import ForgottenIds
from recforget.data.interactions import Interactions
from recforget.models.als import ALS
from recforget.unlearn._stream_als import SIDES, IncrementalALS
from recforget.unlearn._stream_requests import (
    RequestQueue,
    check_known,
    check_request,
    record_dropped,
    still_to_remove,
)
from recforget.unlearn.api import deletion_entry, request_fields
from recforget.unlearn.requests import DeletionRequest

METHOD = "unlearn-als-stream"
DATA_SCHEME = "recforget-data-mset-v1"
MODEL_SCHEME = "recforget-model-mset-v1"
DEFAULT_TOL = 1e-3


DEFAULT_NEIGHBOUR_TARGET = MappingProxyType({"users": 0.3, "items": 0.3, "pairs": 0.2})
DEFAULT_TOUCHED_FIRST = MappingProxyType({"users": 0.2, "items": 0.2, "pairs": True})


class Forgetter(RequestQueue):
    """Serve a stream of deletion requests on one ALS model, certifying each.

    Parameters
    ----------
    model : fitted ALS
        Implicit feedback with linear or log confidence, or explicit feedback without biases
        (the objectives whose rows depend only on their own data and the other side). Left
        untouched; the forgetter works on copies.
    tol : float, optional
        Certificate tolerance (default: the model's ``grad_tol``, else 1e-3). If the model is
        not certified at ``tol`` on its own data, the constructor first re-solves the rows over
        it (reported in :attr:`setup`).
    solver : {"cg", "cholesky"}
        Row solver of the re-solves (the kernels of :mod:`recforget.kernels.als`).
    cg_steps : int, optional
        Conjugate-gradient steps per re-solve (default: the model's).
    touched_first : bool, float or mapping
        ``True``: re-solve every kept row that lost data in a request's first round, whatever
        its residual (as ``unlearn-als-selective``): otherwise a loose tolerance can leave the
        deleted data's trace in heavy rows. A number in (0, 1]: only those whose gradient the
        deletions shifted by more than it times ``tol`` (of their scale) since their last
        solve, the others keep their room under the tolerance (the certificate holds either
        way; touched rows whose residual estimate is over 0.3 ``tol`` are re-solved too, so
        that rows keep room under the tolerance). ``False``: none beyond the rows over
        ``target * tol``. A mapping gives it per kind of deletion (keys ``"users"``,
        ``"items"``, ``"pairs"``; a batch takes the most inclusive of its kinds'). Default
        ``{"users": 0.2, "items": 0.2, "pairs": True}``: a deleted user's popular items, which
        lose one of their many users, are not re-solved unless that moved them (ML-1M, 500
        users at tol 1e-2: p50 22 ms instead of 36 ms, the trace closed 0.932 instead of
        0.947); a pair's user and item always are.
    verify_every : int or None
        Every this many requests (at least: see ``verify_entries``), recompute every gradient
        from scratch (``O(nnz k)``), record
        the drift of the maintained state in the receipt's ``verification``, and continue from
        the fresh state (re-solving if the fresh certificate fails). ``None`` or 0: never.
    verify_mode : {"sliced", "full"}
        ``"sliced"``: the from-scratch recomputation is spread over the requests of a period,
        each recomputing a slice of the rows (and the first the Gram matrices) before its
        re-solves, so no request pays the whole ``O(nnz k)`` pass; the receipt that completes
        a pass carries its ``verification``. ``"full"``: the whole pass in one request, after
        its re-solves. Either way every request's certificate is the incremental one, a true
        statement on its own.
    verify_entries : int or None
        Sliced mode: the most data entries (of both orientations) one request recomputes. A
        pass then spans ``max(verify_every, ceil(2 nnz / verify_entries))`` requests, so the
        verification's cost per request stays bounded as the data grow (default 25,000: 1-3 ms
        at 64 factors; ML-1M keeps its 100-request period, the 22M-entry expansion's is about
        1,800 requests). ``None``: ``verify_every`` requests per pass whatever the size.
    compact_at : float
        Compact the working data when this share of its slots are tombstones (amortised).
    max_rounds : int
        Most re-solve rounds per request.
    target : float in (0, 1]
        Rows over ``target * tol`` are re-solved (so every row keeps room under ``tol`` and
        later certificates need few exact checks); ``certified`` is judged at ``tol``.
    neighbour_target : float in [0, 1], mapping, optional
        Re-equilibrate one hop further than the deletion: after the first round, some live
        neighbours of the rows that lost data (the users of a deleted user's items, the items
        of a pair's user and the users of its item) are re-solved once too. A retrain moves
        these rows as well; the certificate does not need it. Which ones, in ``O(1)`` each:
        for whole users or items, those whose residual estimate (their maintained gradient)
        exceeds ``neighbour_target * tol``; for pairs, those whose gradient their neighbours'
        moves have shifted by more than ``neighbour_target * tol`` (of their scale) since they
        were last solved, summed over requests: one pair barely moves its neighbours, five
        hundred do. 0: all of them; ``None``: only rows over ``target * tol`` are re-solved. A
        mapping gives it per kind (keys ``"users"``, ``"items"``, ``"pairs"``; a batch takes
        the smallest of its kinds'). Default ``{"users": 0.3, "items": 0.3, "pairs": 0.2}``
        (ML-1M, 500 requests: the deleted users' trace closed 95% instead of 82%, the deleted
        pairs' 96% instead of 80%).
    setup_target : float in (0, 1]
        The same for the constructor's repair: rows of the given model over
        ``setup_target * tol`` are re-solved once, so that the stream starts with room under
        the tolerance in every row (a fit that just met ``tol`` leaves many rows near it).
        Default 0.3, as ``neighbour_target``: the neighbours found over it are then the rows
        deletions pushed there, not rows the fit left there (on the expansion, without it, a
        pair's request re-solved about 380 such rows).
    missing : {"error", "ignore"}
        Unknown ids raise :class:`~recforget.UnknownIdError` (nothing is changed) or are
        reported in the receipt. Ids forgotten earlier are never unknown.
    id_key : bytes, hex str or None
        The key of the model's record of forgotten ids (default: ``RECFORGET_ID_KEY``); as
        for :func:`recforget.forget` (:mod:`recforget.data.forgotten`).

    Attributes
    ----------
    sequence : int
        Requests served so far.
    setup : dict
        What the constructor did: ``seconds``, the initial ``certificate`` and the re-solves.
    """

    def __new__(cls, model: Any = None, *args: Any, **kwargs: Any) -> Any:
        # NCF models: the streaming AltEraser, same interface (recforget.unlearn.ncf.stream)
        if cls is Forgetter and getattr(model, "kind", None) == "ncf":
            from recforget.unlearn.ncf.stream import NCFForgetter

            return NCFForgetter(model, *args, **kwargs)
        return super().__new__(cls)

    def __init__(
        self,
        model: ALS,
        *,
        tol: float | None = None,
        solver: str = "cg",
        cg_steps: int | None = None,
        touched_first: bool | float | Mapping[str, bool | float] = DEFAULT_TOUCHED_FIRST,
        verify_every: int | None = 100,
        verify_mode: Literal["sliced", "full"] = "sliced",
        verify_entries: int | None = 25_000,
        compact_at: float = 0.5,
        max_rounds: int = 2000,
        target: float = 1.0,
        neighbour_target: float | Mapping[str, float | None] | None = DEFAULT_NEIGHBOUR_TARGET,
        setup_target: float = 0.3,
        missing: Literal["error", "ignore"] = "error",
        id_key: bytes | str | None = None,
    ) -> None:
        start = time.perf_counter()
        if not isinstance(model, ALS):
            raise TypeError(f"Forgetter serves ALS models, got {type(model).__name__}")
        self._forgotten = ForgottenIds.of(model).bind(id_key)  # a wrong key fails first
        if tol is None:
            tol = model.grad_tol if model.grad_tol is not None else DEFAULT_TOL
        if verify_every is not None and (not isinstance(verify_every, int) or verify_every < 0):
            raise ValueError(f"verify_every must be None or an integer >= 0, got {verify_every!r}")
        if verify_mode not in ("sliced", "full"):
            raise ValueError(f"verify_mode must be 'sliced' or 'full', got {verify_mode!r}")
        if verify_entries is not None and (
            not isinstance(verify_entries, int) or verify_entries < 1
        ):
            raise ValueError(
                f"verify_entries must be None or a positive integer, got {verify_entries!r}"
            )
        targets = _neighbour_targets(neighbour_target)
        firsts = _touched_firsts(touched_first)
        if not 0 < compact_at < 1:
            raise ValueError(f"compact_at must be in (0, 1), got {compact_at!r}")
        if missing not in ("error", "ignore"):
            raise ValueError(f"missing must be 'error' or 'ignore', got {missing!r}")
        with one_blas_thread():
            self._state = IncrementalALS(
                model,
                tol=tol,
                solver=solver,
                cg_steps=cg_steps,
                max_rounds=max_rounds,
                target=target,
            )
            initial = self._state.certificate()
            self._state.target = setup_target  # leave every row room under tol to start
            repaired = self._state.repair()
            self._state.target = target
            self._state.take_changed()
            self._state.clear_push()  # neighbours' shifts count from the first request on
        self.tol = float(tol)
        self.touched_first = firsts
        self.verify_every = verify_every or 0
        self.verify_mode = verify_mode
        self.verify_entries = verify_entries
        self.neighbour_target = targets
        self.compact_at = compact_at
        self.missing = missing
        self.sequence = 0
        self._deletions = list(getattr(model, "deletions_", []))
        self._queue: list[DeletionRequest] = []
        self._model: ALS | None = None
        self._data: Interactions | None = None
        self._init_digests()
        self.setup = {
            "seconds": time.perf_counter() - start,
            "initial": initial,
            "repair": repaired,
        }

    # ------------------------------------------------------------------ digests
    def _init_digests(self) -> None:
        view = self._state.view
        self._ids = {"users": id_hashes(view.users.ids), "items": id_hashes(view.items.ids)}
        self._data_digest = MultisetDigest(DATA_SCHEME)
        pos = np.flatnonzero(view.live)
        self._data_digest.add(self._entry_hashes(pos))
        self._model_digest = MultisetDigest(MODEL_SCHEME)
        self._in_digest = {}
        for which in SIDES:
            s, _ = self._state.side(which)
            rows = np.flatnonzero(s.alive)
            self._model_digest.add(self._row_hashes(which, rows))
            self._row_hash = getattr(self, "_row_hash", {})
            self._row_hash[which] = np.zeros((len(s.X), 4), dtype=np.uint64)
            self._row_hash[which][rows] = self._row_hashes(which, rows)
            self._in_digest[which] = s.alive.copy()

    def _entry_hashes(self, pos: np.ndarray) -> np.ndarray:
        view = self._state.view
        rows = np.searchsorted(view.indptr, pos, side="right") - 1
        return element_hashes(
            self._ids["users"][rows],
            self._ids["items"][view.indices[pos]],
            view.values[pos].view(np.uint64),
        )

    def _row_hashes(self, which: str, rows: np.ndarray) -> np.ndarray:
        s, _ = self._state.side(which)
        tag = np.full(len(rows), 1 if which == "users" else 2, dtype=np.uint64)
        return row_hashes(s.X[rows], tag, self._ids[which][rows])

    def _update_model_digest(self) -> None:
        for which, rows in self._state.take_changed().items():
            if not len(rows):
                continue
            s, _ = self._state.side(which)
            was = rows[self._in_digest[which][rows]]
            self._model_digest.remove(self._row_hash[which][was])
            now = rows[s.alive[rows]]
            h = self._row_hashes(which, now)
            self._model_digest.add(h)
            self._row_hash[which][now] = h
            self._in_digest[which][rows] = s.alive[rows]

    # ------------------------------------------------------------------ public state
    @property
    def model(self) -> ALS:
        """The current certified model (built on first access after a change, ``O(nnz)``)."""
        if self._model is None:
            model = self._state.to_model()
            model.forgotten_ = self._forgotten.copy()
            model.deletions_ = list(self._deletions)
            self._model, self._data = model, model.seen_
        return self._model

    @property
    def data(self) -> Interactions:
        """The remaining training data (the data :attr:`model` stands on)."""
        return self.model.seen_

    @property
    def view(self):
        """The mutable working copy of the data (read it, do not edit it)."""
        return self._state.view

    @property
    def data_fingerprint(self) -> str:
        return self._data_digest.hexdigest()

    @property
    def model_digest(self) -> str:
        return self._model_digest.hexdigest()

    def certificate(self) -> dict[str, Any]:
        """The current certificate (row residual bounds), computed without solving."""
        with one_blas_thread():
            return self._state.certificate()

    def verify(self) -> dict[str, Any]:
        """Recompute every gradient from scratch; ``{"drift", "certificate", "certified"}``.

        If the fresh certificate fails, the rows over the tolerance are re-solved
        (``"repair"`` in the result) so that the forgetter is certified again.
        """
        with one_blas_thread():
            out = self._state.verify()
            if not out["certified"]:
                out["repair"] = self._state.repair()
                self._update_model_digest()
                self._model = None
        return out

    # ------------------------------------------------------------------ requests
    def forget_batch(self, requests: Sequence[DeletionRequest]) -> list[dict[str, Any]]:
        """Forget several requests together: each is removed in order, then the rows are
        re-solved and certified once. Returns one receipt per request (sharing ``seconds``,
        the certificate and ``model_hash``; ``batch`` says which)."""
        wall_start = time.perf_counter()
        from recforget import __version__

        for r in requests:
            check_request(r)
        if self.missing == "error":
            self._check_known(requests)  # before anything changes
        parts = []
        touched: dict[str, list[np.ndarray]] = {"users": [], "items": []}
        with one_blas_thread():
            start = time.perf_counter()
            for request in requests:
                before = self._data_digest.hexdigest()
                removal, again = self._remove(request)
                after = self._data_digest.hexdigest()
                if not removal.is_noop:
                    touched["users"].append(removal.users)
                    touched["items"].append(removal.items)
                parts.append((request, removal, again, before, after))
            changed = any(not p[1].is_noop for p in parts)
            verification = None
            sliced = self.verify_mode == "sliced" and self.verify_every
            verify_seconds = 0.0
            if changed and sliced:  # before the re-solves: they repair what it finds
                tick = time.perf_counter()
                slices = self._slices()
                for _ in requests:
                    done = self._state.verify_slice(slices)
                    if done is not None:
                        verification = {**done, "mode": "sliced"}
                verify_seconds = time.perf_counter() - tick
            info: dict[str, Any]
            if changed:
                rows = {w: np.unique(np.concatenate(t)) for w, t in touched.items() if t}
                info = self._state.repair(rows, **self._batch_targets(parts))
            else:
                info = {"sweeps": 0, "rows_solved_users": 0, "rows_solved_items": 0}
            seconds = time.perf_counter() - start
            self._update_model_digest()
            n_before = self.sequence
            self.sequence += len(requests)
            if (
                changed
                and self.verify_every
                and not sliced
                and self.sequence // self.verify_every > n_before // self.verify_every
            ):
                tick = time.perf_counter()
                verification = {**self.verify(), "mode": "full"}
                verify_seconds = time.perf_counter() - tick
            elif verification is not None:
                verification["certified"] = info["certified"]
            if changed and self._state.view.should_compact(self.compact_at):
                self._state.compact()
        if changed:
            self._model = None
        model_hash = self._model_digest.hexdigest()
        receipts = []
        for n, (request, removal, again, before, after) in enumerate(parts):
            noop = removal.is_noop
            receipt: dict[str, Any] = {
                "method": METHOD,
                "model": "als",
                "sequence": n_before + n + 1,
                **request_fields(request, removal, again),
                "data_fingerprint_before": before,
                "data_fingerprint_after": after,
                "seconds": seconds,
                "library_version": __version__,
                "noop": noop,
                "batch": {"size": len(requests), "index": n},
                "sweeps": info["sweeps"],
                "rows_solved": info["rows_solved_users"] + info["rows_solved_items"],
                "rows_solved_users": info["rows_solved_users"],
                "rows_solved_items": info["rows_solved_items"],
                "digests": {"data": DATA_SCHEME, "model": MODEL_SCHEME},
                "model_hash": model_hash,
            }
            if changed:
                receipt["stop_reason"] = info["stop_reason"]
                receipt["certificate"] = info["certificate"]
                receipt["certified"] = info["certified"]
                receipt["objective"] = None  # O(nnz): see forgetter.model.loss()
            if verification is not None:
                receipt["verification"] = _plain(verification)
            if not noop:
                self._deletions.append(deletion_entry(receipt))
            receipts.append(receipt)
        wall = time.perf_counter() - wall_start
        for receipt in receipts:
            receipt["wall_seconds"] = wall
            receipt["verify_seconds"] = verify_seconds
        return receipts

    def _slices(self) -> int:
        """Requests per sliced verification pass (see ``verify_entries``)."""
        if not self.verify_entries:
            return self.verify_every
        entries = 2 * self._state.view.nnz
        return max(self.verify_every, -(-entries // self.verify_entries))

    def _batch_targets(self, parts: list) -> dict[str, Any]:
        """A batch's targets: the smallest neighbour target of its whole-row deletions' (on
        the residual estimate) and its pairs' (on the shift since the last solve), and the
        most inclusive touched-rows rule of its kinds'."""
        kinds = set()
        for request, removal, *_ in parts:
            if removal.is_noop:
                continue
            kinds.update(k for k in ("users", "items", "pairs") if getattr(request, k))
        rows = [self.neighbour_target[k] for k in kinds - {"pairs"}]
        rows = [t for t in rows if t is not None]
        pairs = self.neighbour_target["pairs"] if "pairs" in kinds else None
        # touched rows first: True is share 0 (every one), False none
        firsts = [self.touched_first[k] for k in kinds]
        shares = [0.0 if f is True else f for f in firsts if f is not False]
        share = min(shares) if shares else None
        return {
            "neighbour_target": min(rows) if rows else None,
            "push_target": pairs,
            "touched_target": share,
            "touched_rows": share is not None,
        }

    def _check_known(self, requests: Sequence[DeletionRequest]) -> None:
        check_known(self._state.view, self._forgotten, requests)

    def _remove(self, request: DeletionRequest):
        """Apply one request's removal to the state (ids forgotten before are skipped)."""
        view = self._state.view
        keep, pairs, again = still_to_remove(view, self._forgotten, request)
        removal = self._state.remove(
            pairs=pairs, users=keep["users"], items=keep["items"], missing=self.missing
        )
        if not removal.is_noop:
            self._data_digest.remove(self._removed_hashes(removal))
            record_dropped(view, self._forgotten, removal)
        return removal, again

    def _removed_hashes(self, removal) -> np.ndarray:
        view = self._state.view
        return element_hashes(
            self._ids["users"][removal.users],
            self._ids["items"][removal.items],
            view.values[removal.entries].view(np.uint64),
        )


def _per_kind(name: str, value: Any, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """``value`` (one value, or a mapping over some kinds of deletion) as one value per kind,
    the defaults filling the kinds a mapping leaves out."""
    if not isinstance(value, Mapping):
        return dict.fromkeys(defaults, value)
    unknown = set(value) - set(defaults)
    if unknown:
        raise ValueError(f"{name} keys must be users, items or pairs, got {sorted(unknown)}")
    return {**defaults, **value}


def _touched_firsts(value: Any) -> dict[str, bool | float]:
    """``touched_first`` as one value per kind of deletion, checked."""
    out = _per_kind("touched_first", value, DEFAULT_TOUCHED_FIRST)
    for kind, f in out.items():
        if not isinstance(f, bool) and not (isinstance(f, int | float) and 0 < f <= 1):
            raise ValueError(
                f"touched_first for {kind} must be True, False or a number in (0, 1], got {f!r}"
            )
    return out


def _neighbour_targets(value: Any) -> dict[str, float | None]:
    """``neighbour_target`` as one value per kind of deletion, checked."""
    out = _per_kind("neighbour_target", value, DEFAULT_NEIGHBOUR_TARGET)
    for kind, t in out.items():
        if t is not None and not (
            isinstance(t, int | float) and not isinstance(t, bool) and 0 <= t <= 1
        ):
            raise ValueError(f"neighbour_target for {kind} must be in [0, 1], got {t!r}")
    return out


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        return obj.item()
    return obj


__all__ = ["METHOD", "Forgetter"]
