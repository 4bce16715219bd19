"""SISA and RecEraser ensembles: partitions, shard-local retraining, absence, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recforget import ALS, DeletionRequest, forget
from recforget.data import generators
from recforget.kernels.partition import balanced_assign, balanced_assign_reference
from recforget.models._partition import PARTITIONS, partition
from recforget.models.base import clone
from recforget.models.sharded import ShardedEnsemble

BASE = ALS(factors=4, iterations=8, regularization=0.5, alpha=5.0)


@pytest.fixture(scope="module")
def data():
    return generators.synthetic(80, 50, rank=3, density=0.2, random_state=0)


def _ensemble(data, partition="user", aggregation="mean", seed=0, shards=4):
    return ShardedEnsemble(
        clone(BASE),
        n_shards=shards,
        partition=partition,
        aggregation=aggregation,
        random_state=seed,
        attention_samples=600,
        attention_epochs=3,
    ).fit(data)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 30), st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_balanced_assign_matches_reference(n, k, seed):
    rng = np.random.default_rng(seed)
    dist = rng.integers(0, 5, size=(n, k)).astype(np.float64)  # many ties
    cap = -(-n // k)
    got = balanced_assign(dist, cap)
    np.testing.assert_array_equal(got, balanced_assign_reference(dist, cap))
    assert got.min() >= 0 and np.bincount(got, minlength=k).max() <= cap


@pytest.mark.parametrize("kind", PARTITIONS)
def test_partitions_cover_every_entry_once_and_are_seeded(data, kind):
    a = partition(data, 4, kind, seed=3)
    assert a.shape == (data.nnz,) and set(np.unique(a)) <= set(range(4))
    np.testing.assert_array_equal(a, partition(data, 4, kind, seed=3))
    assert not np.array_equal(a, partition(data, 4, kind, seed=4))
    if kind in ("user", "balanced-user"):  # a user's entries stay together
        per_user = [np.unique(a[data.indptr[u] : data.indptr[u + 1]]) for u in range(data.n_users)]
        assert all(len(p) <= 1 for p in per_user)
    if kind.startswith("balanced"):
        n = {"balanced-user": data.n_users, "balanced-item": data.n_items}.get(kind, data.nnz)
        if kind == "balanced-interaction":
            assert np.bincount(a, minlength=4).max() <= -(-n // 4)


def test_deletion_retrains_only_the_affected_shards(data):
    ens = _ensemble(data, "user")
    user = data.users.ids[5]
    holder = [s for s, m in enumerate(ens.shards_) if m.seen_.user_counts()[5] > 0]
    assert len(holder) == 1
    result = forget(ens, DeletionRequest(users=[user]), "sisa")
    assert result.receipt["shards_retrained"] == holder
    keep = np.arange(data.n_users) != 5
    for s, (old, new) in enumerate(zip(ens.shards_, result.model.shards_, strict=True)):
        if s in holder:
            # the affected shard is a from-scratch fit on what it has left, with its own seed
            oracle = clone(BASE).set_params(random_state=ens.shard_seeds_[s])
            oracle.fit(old.seen_.remove(users=[user]).data)
            np.testing.assert_array_equal(new.user_factors_, oracle.user_factors_)
            np.testing.assert_array_equal(new.item_factors_, oracle.item_factors_)
        else:  # the others: bit for bit, minus the user's (data-free) row
            np.testing.assert_array_equal(new.user_factors_, old.user_factors_[keep])
            np.testing.assert_array_equal(new.item_factors_, old.item_factors_)
            assert new.seen_.fingerprint() == old.seen_.remove(users=[user]).data.fingerprint()


@pytest.mark.parametrize(
    ("kind", "aggregation", "method"),
    [
        ("interaction", "mean", "sisa"),
        ("balanced-interaction", "attention", "receraser"),
        ("balanced-item", "attention", "receraser"),
    ],
)
def test_deleted_data_are_absent_from_every_shard(data, kind, aggregation, method):
    ens = _ensemble(data, kind, aggregation)
    u3 = data.users.ids[3]
    pair = (data.users.ids[7], data.items.ids[data.indices[data.indptr[7]]])
    result = forget(ens, DeletionRequest(users=[u3], pairs=[pair]), method)
    for shard in result.model.shards_:
        assert u3 not in shard.users_ and u3 not in shard.seen_.users
        frame = shard.seen_.to_frame()
        assert pair not in set(zip(frame["user"], frame["item"], strict=True))
    assert sum(m.seen_.nnz for m in result.model.shards_) == result.data.nnz
    retrained = set(result.receipt["shards_retrained"])
    for s, old in enumerate(ens.shards_):
        frame = old.seen_.to_frame()
        held = old.seen_.user_counts()[3] > 0 or pair in set(
            zip(frame["user"], frame["item"], strict=True)
        )
        assert (s in retrained) == bool(held)


def test_sisa_mean_uses_the_shards_holding_the_user(data):
    ens = _ensemble(data, "user")
    w = ens.shard_weights(np.arange(data.n_users))
    np.testing.assert_allclose(w.sum(1), 1.0)
    owner = np.argmax(ens.user_shard_counts_, axis=1)
    np.testing.assert_array_equal(np.argmax(w, axis=1), owner)
    u = np.array([0, 1, 2])
    np.testing.assert_allclose(
        ens._score_rows(u),
        np.stack([ens.shards_[owner[r]]._score_rows([r])[0] for r in u]),
        rtol=1e-5,
        atol=1e-6,
    )


def test_receraser_attention_is_refitted_on_the_remaining_data_and_deterministic(data):
    ens = _ensemble(data, "balanced-user", "attention")
    w = ens.shard_weights(np.arange(10))
    np.testing.assert_allclose(w.sum(1), 1.0)
    assert ens.model_hash() == _ensemble(data, "balanced-user", "attention").model_hash()
    req = DeletionRequest(users=[data.users.ids[2]])
    a = forget(ens, req, "receraser").model
    b = forget(ens, req, "receraser").model
    assert a.model_hash() == b.model_hash()
    # the new aggregator is the one a fit on the remaining data with the same shards gives
    again = clone(ens)
    again.seed_, again.shard_seeds_ = ens.seed_, ens.shard_seeds_
    again.set_shards(a.shards_, a.seen_)
    for key in ("W", "b", "h"):
        np.testing.assert_array_equal(again.attention_[key], a.attention_[key])
        assert not np.array_equal(a.attention_[key], ens.attention_[key])


def test_methods_check_the_ensemble_kind(data):
    ens = _ensemble(data, "user")
    with pytest.raises(ValueError, match="aggregation='attention'"):
        forget(ens, DeletionRequest(users=[data.users.ids[0]]), "receraser")
    with pytest.raises(ValueError, match="unknown method"):
        forget(ens, DeletionRequest(users=[data.users.ids[0]]), "unlearn-als")
    with pytest.raises(ValueError, match="partition"):
        ShardedEnsemble(clone(BASE), partition="nope").fit(data)


def test_neural_shards(data):
    from recforget.models.ncf import NCF

    ens = ShardedEnsemble(
        NCF("gmf", factors=4, epochs=2, num_threads=1), n_shards=3, partition="user", random_state=0
    ).fit(data)
    user = data.users.ids[4]
    result = forget(ens, DeletionRequest(users=[user]), "sisa")
    assert len(result.receipt["shards_retrained"]) == 1
    keep = np.arange(data.n_users) != 4
    for s, (old, new) in enumerate(zip(ens.shards_, result.model.shards_, strict=True)):
        if s not in result.receipt["shards_retrained"]:
            for a, b in zip(old.module_.user_embeddings, new.module_.user_embeddings, strict=True):
                np.testing.assert_array_equal(
                    a.weight.detach().numpy()[keep], b.weight.detach().numpy()
                )
    assert np.all(np.isfinite(result.model.predict_proba([data.users.ids[0]], [data.items.ids[0]])))


def test_bench_rows_for_partition_baselines():
    from recforget.evaluate.bench import run_bench

    result = run_bench(
        generators.synthetic(120, 60, rank=3, density=0.15, random_state=0),
        scenario="users:0.05",
        methods=["retrain", "unlearn-als", "sisa", "receraser"],
        model_params={"factors": 8, "iterations": 30, "grad_tol": 1e-2},
        method_options={"sisa": {"shards": 3}, "receraser": {"shards": 3}},
        extras=False,
    )
    rows = {r["method"]: r for r in result["runs"]}
    base_keys = set(rows["retrain"])
    for m in ("sisa", "receraser"):
        assert base_keys <= set(rows[m])
        assert rows[m]["shards"] == 3 and rows[m]["speedup"] is not None
        assert set(rows[m]["metrics_before"]) == set(rows[m]["metrics"])
        assert 1 <= len(rows[m]["shards_retrained"]) <= 3


@pytest.mark.parametrize(
    ("kind", "aggregation"), [("user", "mean"), ("balanced-item", "attention")]
)
def test_save_load_round_trip_and_cli_forget(data, tmp_path, kind, aggregation):
    import json

    from click.testing import CliRunner

    from recforget.cli import main
    from recforget.models.registry import load_model

    ens = _ensemble(data, kind, aggregation)
    ens.save(tmp_path / "ens")
    back = load_model(tmp_path / "ens")
    assert isinstance(back, ShardedEnsemble) and back.model_hash() == ens.model_hash()
    np.testing.assert_array_equal(back._score_rows(np.arange(5)), ens._score_rows(np.arange(5)))
    method = "sisa" if aggregation == "mean" else "receraser"
    user = str(data.users.ids[1])
    (tmp_path / "req.json").write_text(json.dumps({"users": [user]}))
    result = CliRunner().invoke(
        main,
        [
            "forget",
            str(tmp_path / "ens"),
            str(tmp_path / "req.json"),
            "--out",
            str(tmp_path / "out"),
            "--method",
            method,
        ],
    )
    assert result.exit_code == 0, result.output
    forgot = load_model(tmp_path / "out")
    direct = forget(ens, DeletionRequest(users=[data.users.ids[1]]), method).model
    assert forgot.model_hash() == direct.model_hash()
    assert data.users.ids[1] not in forgot.users_ and len(forgot.deletions_) == 1
