"""LiRA inside the bench (``run_bench(lira=K)``, ``recforget bench --lira K``) on tiny data."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from recforget.cli import main
from recforget.data import synthetic
from recforget.data.split import random_holdout
from recforget.evaluate.bench import prepare_data, run_bench
from recforget.evaluate.extras import reserve_users
from recforget.evaluate.lira import lira_rows, matched_non_members
from recforget.evaluate.lira_bench import HEADLINE, verdict
from recforget.evaluate.report import lira_table, render_markdown
from recforget.evaluate.scenarios import Scenario, make_request
from recforget.models.als import ALS
from recforget.models.base import clone
from recforget.unlearn import forget

ALS_PARAMS = {"factors": 8, "iterations": 10, "grad_tol": 1e-2}
LABELS = ["original", "retrain", "retrain-seed2", "unlearn-als"]


def _data():
    return synthetic(120, 60, rank=3, density=0.15, random_state=0)


def _bench(scenario: str, lira: int, **kwargs):
    return run_bench(
        _data(),
        scenario=scenario,
        methods=["retrain", "unlearn-als"],
        model_params=ALS_PARAMS,
        seed=0,
        extras=False,
        lira=lira,
        **kwargs,
    )


@pytest.fixture(scope="module")
def pairs_result(tmp_path_factory):
    png = tmp_path_factory.mktemp("lira") / "roc.png"
    return _bench("interactions:0.08", 4, lira_plot=png), png


def test_bench_result_has_the_lira_fields(pairs_result):
    result, png = pairs_result
    lira = result["lira"]
    assert (lira["attack"], lira["level"], lira["n_shadows"]) == ("lira", "interaction", 4)
    assert lira["n_members"] == lira["n_non_members"] == result["request"]["pairs"]
    assert list(lira["rows"]) == LABELS
    for row in lira["rows"].values():
        assert list(row) == ["online", "offline", "score"]
        for m in row.values():
            for key in HEADLINE:
                assert 0 <= m[key] <= 1
                lo, hi = m[f"{key}_ci"]
                assert lo <= hi
    assert lira["second_seed"] == 1000 and lira["timing"]["retrain-seed2"] > 0
    assert set(lira["verdict"]["inside_retrain_interval"]) == {"unlearn-als"}
    json.dumps(lira, allow_nan=False)  # JSON-ready
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_cli_prints_the_lira_table(pairs_result, capsys):
    from recforget.cli.bench import print_result

    print_result(pairs_result[0])
    out = capsys.readouterr().out
    assert "calibrated membership inference (LiRA, 4 shadows; 95% intervals)" in out
    assert "retrain-seed2" in out and "tpr@1%fpr" in out


def test_bench_lira_is_the_attack_run_by_hand(pairs_result):
    """The bench's numbers are lira_rows' on the same models, candidates and seeds."""
    result = pairs_result[0]
    _, data = prepare_data(_data())
    train, test = random_holdout(data, 0.2, random_state=0)
    original = ALS(random_state=0, **ALS_PARAMS).fit(train)
    request = make_request(train, "interactions:0.08", random_state=1)
    retrain = forget(original, request, "retrain")
    seed2 = clone(original).set_params(random_state=1000).fit(retrain.data)
    members = list(request.pairs)
    by_hand = lira_rows(
        original,
        {"retrain": retrain.model, "retrain-seed2": seed2},
        members=members,
        non_members=matched_non_members(train, test, members, 2),
        n_shadows=4,
        random_state=4,
    )
    for label in ("original", "retrain", "retrain-seed2"):
        for variant in ("online", "offline", "score"):
            got, want = result["lira"]["rows"][label][variant], by_hand["rows"][label][variant]
            for key in HEADLINE:
                assert got[key] == pytest.approx(want[key], abs=1e-9), (label, variant, key)
                assert got[f"{key}_ci"] == pytest.approx(want[f"{key}_ci"], abs=1e-9)


def test_bench_lira_tells_the_original_from_the_retrain(pairs_result):
    rows = pairs_result[0]["lira"]["rows"]
    assert rows["original"]["online"]["auc"] > 0.8  # a small ALS memorises its pairs
    assert rows["retrain"]["online"]["auc"] < 0.75
    sep = pairs_result[0]["lira"]["verdict"]["separates"]["online"]
    assert sep["auc"] is True


def test_bench_lira_on_user_deletions_uses_the_reserved_users():
    result = _bench("users:0.1", 4)
    lira = result["lira"]
    _, data = prepare_data(_data())
    train, test = random_holdout(data, 0.2, random_state=0)
    _, _, reserved = reserve_users(train, test, Scenario.parse("users:0.1"), 0)
    assert lira["level"] == "user"
    assert lira["n_members"] == result["request"]["users"]
    assert lira["n_non_members"] == len(reserved) > 0
    assert list(lira["rows"]) == LABELS
    variants = ["online", "offline", "score", "fold-in online", "fold-in offline", "fold-in score"]
    assert list(lira["rows"]["original"]) == variants
    # the deleted users are gone from every model but the original: MIARS serves them the same
    # popularity list, so the retrain and unlearn-als get the same MIARS numbers
    assert lira["rows"]["unlearn-als"]["online"] == lira["rows"]["retrain"]["online"]
    text = render_markdown(result)
    assert "Calibrated membership inference (LiRA)" in text and "| retrain-seed2 |" in text
    assert len(lira_table(result)) == len(LABELS) * len(variants)


def test_bench_without_lira_has_none():
    result = run_bench(
        synthetic(40, 30, rank=2, density=0.2, random_state=0), scenario="interactions:0.05",
        methods=["unlearn-als"], model_params=ALS_PARAMS, extras=False,
    )  # fmt: skip
    assert result["lira"] is None and lira_table(result) == []


@pytest.mark.parametrize(
    ("scenario", "lira", "message"),
    [("stream:3:6", 2, "runs on interactions"), ("items:2", 2, "not items"),
     ("interactions:0.05", 3, "even number"), ("interactions:0.05", 2, ">= 4")],
)  # fmt: skip
def test_bench_refuses_lira_where_it_cannot_run(scenario, lira, message):
    with pytest.raises(ValueError, match=message):
        run_bench(_data(), scenario=scenario, model_params=ALS_PARAMS, lira=lira)


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--lira", "2"], "even number"), (["--delete", "stream:2:3", "--lira", "4"], "runs on")],
)
def test_cli_bench_lira_errors_are_clean(args, message):
    result = CliRunner().invoke(main, ["bench", *args], catch_exceptions=False)
    assert result.exit_code != 0 and message in result.output
    assert "Traceback" not in result.output


def test_verdict_separation_and_inside():
    def m(auc, ci):
        return {k: auc for k in HEADLINE} | {f"{k}_ci": ci for k in HEADLINE}

    rows = {
        "original": {"online": m(0.9, [0.85, 0.95])},
        "retrain": {"online": m(0.5, [0.45, 0.55])},
        "retrain-seed2": {"online": m(0.52, [0.50, 0.60])},
        "near": {"online": m(0.58, [0.50, 0.65])},  # outside retrain, inside seed2
        "far": {"online": m(0.7, [0.65, 0.75])},
        "edge": {"online": m(0.45, None)},  # the retrain interval's end counts as inside
    }
    v = verdict(rows)
    assert v["separates"]["online"] == {k: True for k in HEADLINE}
    inside = v["inside_retrain_interval"]
    assert set(inside) == {"near", "far", "edge"}
    assert inside["near"]["online"]["auc"] is True
    assert inside["far"]["online"]["auc"] is False
    assert inside["edge"]["online"]["auc"] is True
    rows["retrain"]["online"] = m(0.8, [0.75, 0.86])
    assert verdict(rows)["separates"]["online"]["auc"] is False
    rows["retrain"]["online"] = m(0.8, None)
    assert verdict(rows)["separates"]["online"]["auc"] is None


def test_run_lira_reuses_its_cached_shadows_and_second_retrain(tmp_path):
    from recforget.evaluate.lira_bench import run_lira

    _, data = prepare_data(_data())
    train, test = random_holdout(data, 0.2, random_state=0)
    original = ALS(random_state=0, **ALS_PARAMS).fit(train)
    request = make_request(train, "interactions:0.08", random_state=1)
    retrain = forget(original, request, "retrain").model
    kw = {"train": train, "test": test, "n_shadows": 4, "cache": tmp_path}
    first, _ = run_lira(original, {"retrain": retrain}, request, **kw)
    second, _ = run_lira(original, {"retrain": retrain}, request, **kw)
    assert first["cached"] == [] and sorted(second["cached"]) == ["retrain-seed2", "shadows"]
    assert second["rows"] == first["rows"] and second["timing"] == first["timing"]
    # another seed is another shadow set and another second retrain: nothing reused
    third, _ = run_lira(original, {"retrain": retrain}, request, seed=1, **kw)
    assert third["cached"] == [] and len(list(tmp_path.iterdir())) == 4
    # an oracle the attack fits itself is kept too
    fourth, _ = run_lira(original, {}, request, **kw)
    fifth, _ = run_lira(original, {}, request, **kw)
    assert "retrain" not in fourth["cached"] and "retrain" in fifth["cached"]
    assert fifth["rows"]["retrain"] == fourth["rows"]["retrain"] == first["rows"]["retrain"]
