"""Behavioural contracts every unlearning method must keep, as pytest mixin classes.

Opt in with a three-line test class::

    class TestMyMethod(UnlearnerContract):
        method = "unlearn-als"
        def make_model(self, data):
            return ALS(4, iterations=30, random_state=0).fit(data)

The mixin supplies the data fixture and the tests: forgetting nothing is a no-op, forgetting is
idempotent, forgotten interactions are absent from the data the model now stands on, whole users and
whole items leave the model, and (for methods with ``exact = True``) the result is a certified
stationary point of the retraining objective.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import numpy as np
import pytest

from recforget.data.errors import UnknownIdError
from recforget.data.interactions import Interactions
from recforget.unlearn import DeletionRequest, forget

_MODELS: dict[tuple[str, str], Any] = {}


def _contract_data() -> Interactions:
    rng = np.random.default_rng(0)
    R = (rng.random((40, 25)) < 0.25).astype(float)
    R[np.arange(40), rng.integers(0, 25, 40)] = 1.0
    return Interactions.from_csr(
        R, users=[f"u{k}" for k in range(40)], items=[f"i{k}" for k in range(25)]
    )


class UnlearnerContract:
    """Mixin: set ``method``, implement ``make_model``; optionally ``options`` and ``exact``."""

    method: ClassVar[str]
    options: ClassVar[dict[str, Any]] = {}
    exact: ClassVar[bool] = False

    def make_model(self, data: Interactions):  # pragma: no cover - abstract
        raise NotImplementedError

    @pytest.fixture
    def contract_data(self) -> Interactions:
        return _contract_data()

    @pytest.fixture
    def contract_model(self, contract_data):
        key = (type(self).__qualname__, type(self).__module__)
        if key not in _MODELS:  # one fit per test class; the model is never mutated
            _MODELS[key] = self.make_model(contract_data)
        return _MODELS[key]

    def _pairs(self, data: Interactions, n: int = 6) -> list[tuple[object, object]]:
        rows = data.row_of_entry
        pick = np.linspace(0, data.nnz - 1, n).astype(int)
        return [(data.users.ids[rows[e]], data.items.ids[data.indices[e]]) for e in pick]

    def test_empty_request_is_a_noop(self, contract_model, contract_data):
        before = contract_model.model_hash() if hasattr(contract_model, "model_hash") else None
        result = forget(contract_model, DeletionRequest(), self.method, **self.options)
        assert result.receipt["noop"] is True
        assert result.model is contract_model
        assert result.data.fingerprint() == contract_data.fingerprint()
        if before is not None:
            assert contract_model.model_hash() == before

    def test_forgotten_pairs_are_absent_and_forgetting_is_idempotent(
        self, contract_model, contract_data
    ):
        pairs = self._pairs(contract_data)
        request = DeletionRequest(pairs=pairs)
        first = forget(contract_model, request, self.method, **self.options)
        assert first.receipt["removed"]["interactions"] == len(pairs)
        remaining = first.model.seen_
        assert remaining.nnz == contract_data.nnz - len(pairs)
        u = remaining.users.index([p[0] for p in pairs])
        i = remaining.items.index([p[1] for p in pairs])
        assert np.all(remaining.entry_positions(u, i) < 0)
        second = forget(first.model, request, self.method, **self.options)
        assert second.receipt["noop"] is True
        assert second.receipt["removed"]["absent_pairs"] == len(pairs)
        assert second.model is first.model
        # the original model is left untouched
        assert contract_model.seen_.fingerprint() == contract_data.fingerprint()

    def test_whole_user_leaves_the_model(self, contract_model, contract_data):
        gone = contract_data.users.ids[3]
        result = forget(contract_model, DeletionRequest(users=[gone]), self.method, **self.options)
        assert gone not in result.model.users_
        assert result.data.n_users == contract_data.n_users - 1
        with pytest.raises(UnknownIdError):
            result.model.recommend([gone])
        again = forget(result.model, DeletionRequest(users=[gone]), self.method, **self.options)
        assert again.receipt["noop"] is True
        assert again.receipt["removed"]["already_forgotten"] == 1

    def test_whole_item_leaves_the_model(self, contract_model, contract_data):
        gone = contract_data.items.ids[2]
        had = int(contract_data.item_counts()[2])
        result = forget(contract_model, DeletionRequest(items=[gone]), self.method, **self.options)
        assert gone not in result.model.items_
        assert result.data.n_items == contract_data.n_items - 1
        assert result.receipt["removed"]["interactions"] == had
        assert result.receipt["removed"]["items"] == 1
        users = result.model.users_.ids[:5].tolist()
        recommended = result.model.recommend(users, k=5)
        assert gone not in {i for row in np.asarray(recommended[0]).tolist() for i in row}
        again = forget(result.model, DeletionRequest(items=[gone]), self.method, **self.options)
        assert again.receipt["noop"] is True
        assert again.receipt["removed"]["already_forgotten"] == 1

    def test_unknown_ids_are_counted_not_listed(self, contract_model):
        with pytest.raises(UnknownIdError, match="nobody"):
            forget(contract_model, DeletionRequest(users=["nobody"]), self.method, **self.options)
        result = forget(
            contract_model,
            DeletionRequest(users=["nobody"]),
            self.method,
            missing="ignore",
            **self.options,
        )
        assert result.receipt["removed"]["unknown"]["users"] == 1
        assert "nobody" not in json.dumps(result.receipt)
        assert result.receipt["noop"] is True

    def test_receipt_is_json(self, contract_model, contract_data):
        import json

        result = forget(
            contract_model,
            DeletionRequest(pairs=self._pairs(contract_data, 2)),
            self.method,
            **self.options,
        )
        text = json.dumps(result.receipt)
        assert result.receipt["data_fingerprint_after"] == result.data.fingerprint()
        assert result.receipt["data_fingerprint_before"] == contract_data.fingerprint()
        assert "seconds" in json.loads(text)

    def test_exact_methods_are_certified(self, contract_model, contract_data):
        if not self.exact:
            pytest.skip("approximate method")
        result = forget(
            contract_model,
            DeletionRequest(pairs=self._pairs(contract_data)),
            self.method,
            **self.options,
        )
        assert result.receipt["certified"] is True
        cert = result.receipt["certificate"]
        assert cert["max_relative"] <= cert["tol"]
