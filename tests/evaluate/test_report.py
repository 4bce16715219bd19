"""Presets, Markdown reports, plots and the ``recforget bench`` command on tiny data."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from recforget.data import datasets, synthetic
from recforget.evaluate.bench import run_bench
from recforget.evaluate.presets import holdout_with_negatives, netflix_forget
from recforget.evaluate.report import aggregate, markdown_table, render_markdown, write_report

ALS_PARAMS = {"factors": 8, "iterations": 30, "grad_tol": 1e-2}


def _data():
    return synthetic(120, 60, rank=3, density=0.15, random_state=0)


@pytest.fixture(scope="module")
def preset_result():
    return netflix_forget(_data(), model_params=ALS_PARAMS, methods=["retrain", "unlearn-als"])


@pytest.fixture(scope="module")
def bench_result():
    methods = ["retrain", "unlearn-als"]
    return run_bench(_data(), scenario="stream:2:5", model_params=ALS_PARAMS, methods=methods)


# ---------------------------------------------------------------------- preset
def test_holdout_with_negatives():
    data = _data()
    train, pos, neg = holdout_with_negatives(data, 0.05, rng=1)
    assert len(pos) == len(neg) == round(0.05 * data.nnz)
    assert train.nnz == data.nnz - len(pos)
    assert len(set(neg)) == len(neg)
    u = data.users.index([p[0] for p in neg])
    i = data.items.index([p[1] for p in neg])
    assert (data.entry_positions(u, i) < 0).all()  # negatives are unobserved
    u = train.users.index([p[0] for p in pos])
    i = train.items.index([p[1] for p in pos])
    assert (train.entry_positions(u, i) < 0).all()  # positives left the training data


def test_netflix_forget_keys(preset_result):
    r = preset_result
    assert r["preset"] == "netflix-forget"
    assert r["data"]["test_positives"] == r["data"]["test_negatives"] > 0
    assert 0.5 < r["original"]["auc"] <= 1 and len(r["original"]["loss_curve"]) > 0
    assert [sc["scenario"] for sc in r["scenarios"]] == ["interactions:0.1", "interactions:0.2"]
    for sc in r["scenarios"]:
        assert sc["request"]["pairs"] > 0
        assert sc["original"]["mse_vs_retrain"] > 0
        runs = {run["method"]: run for run in sc["runs"]}
        assert runs["retrain"]["mse_vs_retrain"] == 0.0
        assert runs["retrain"]["neighbour_jaccard@200"] == 1.0
        for run in runs.values():
            assert 0 <= run["auc"] <= 1 and run["seconds"] > 0 and run["mse_vs_zero"] >= 0
            assert len(run["loss_curve"]) == run["sweeps"]
        # the unlearned model predicts the removed cells like the retrained one
        assert runs["unlearn-als"]["mse_vs_retrain"] < sc["original"]["mse_vs_retrain"]
    json.dumps(r, allow_nan=False)


# ---------------------------------------------------------------------- report
def test_markdown_table():
    text = markdown_table([{"a": 1.234567, "b": None}, {"a": "x|y", "b": 2}], ["a", "b"])
    assert text.splitlines() == ["| a | b |", "|---|---|", "| 1.235 |  |", "| x\\|y | 2 |"]


def test_report_writes_tables(tmp_path, bench_result):
    path = write_report(bench_result, tmp_path / "r" / "report.md")
    text = path.read_text()
    assert text.startswith("# custom / als / delete stream:2:5")
    for title in ("Forgetting and accuracy", "Consistency", "Membership inference", "Stream"):
        assert title in text
    assert "| method | seconds | speedup |" in text
    assert text.count("| unlearn-als |") >= 3  # main, consistency and attack tables


def test_report_of_seeds_and_preset(bench_result, preset_result):
    multi = {
        "seeds": [0, 0],
        "results": [bench_result, bench_result],
        "summary": aggregate([bench_result, bench_result]),
    }
    text = render_markdown(multi)
    assert "## Summary (mean ± std over seeds)" in text and "± 0" in text
    text = render_markdown(preset_result)
    assert "netflix-forget" in text and "| interactions:0.2 | unlearn-als |" in text


# ---------------------------------------------------------------------- plots
def test_plots_write_png(tmp_path, bench_result, preset_result):
    pytest.importorskip("matplotlib")
    from recforget.evaluate.plots import write_plots

    written = write_plots(bench_result, tmp_path / "bench")
    names = {p.name for p in written}
    assert {"attack_auc.png", "accuracy_vs_seconds.png", "stream.png"} <= names
    written += write_plots(preset_result, tmp_path / "preset")
    assert any(p.name.endswith("objective_vs_time.png") for p in written)
    for p in written:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------- CLI
def test_cli_seeds_report_and_plots(tmp_path, monkeypatch):
    from recforget.cli import main

    small = synthetic(60, 40, rank=3, density=0.2, random_state=0)
    monkeypatch.setattr(datasets, "load", lambda name: small)
    out = tmp_path / "out.json"
    args = ["bench", "--factors", "4", "--iterations", "10", "--tol", "1e-2"]
    args += ["--methods", "retrain,unlearn-als", "--seeds", "0,1", "--json", str(out)]
    args += ["--report", str(tmp_path / "r.md")]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    result = json.loads(out.read_text())
    assert [r["seed"] for r in result["results"]] == [0, 1]
    stats = result["summary"]["methods"]["unlearn-als"]["seconds"]
    assert stats["n"] == 2 and stats["mean"] == pytest.approx(
        np.mean([r["runs"][1]["seconds"] for r in result["results"]])
    )
    assert "summary over seeds" in res.output and "membership inference" in res.output
    assert "Summary" in (tmp_path / "r.md").read_text()


def test_cli_preset_and_no_extras(tmp_path, monkeypatch):
    from recforget.cli import main

    small = synthetic(60, 40, rank=3, density=0.2, random_state=0)
    monkeypatch.setattr(datasets, "load", lambda name: small)
    args = ["bench", "--factors", "4", "--iterations", "10", "--tol", "1e-2"]
    res = CliRunner().invoke(main, [*args, "--preset", "netflix-forget", "--methods", "retrain"])
    assert res.exit_code == 0, res.output
    assert "netflix-forget" in res.output and "mse_vs_retrain" in res.output
    res = CliRunner().invoke(main, [*args, "--no-extras", "--json", "-", "--methods", "retrain"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["extras"] is None
    res = CliRunner().invoke(main, [*args, "--seeds", "0,x"])
    assert res.exit_code != 0
