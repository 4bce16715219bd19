"""The ``recforget`` command line on a tiny interaction file: train, info, recommend, forget."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from recforget.cli import main
from recforget.data.generators import random_ratings
from recforget.models.registry import load_model


@pytest.fixture
def ratings_csv(tmp_path):
    R = random_ratings(40, 25, 0.3, seed=5)
    u, i = np.nonzero(R)
    lines = ["user,item,rating"] + [
        f"u{a},{b + 100},{R[a, b]:.0f}" for a, b in zip(u, i, strict=True)
    ]
    path = tmp_path / "ratings.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def run(*args: str):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result


@pytest.fixture
def trained(tmp_path, ratings_csv):
    out = tmp_path / "model"
    result = run(
        "train", "--data", ratings_csv, "--out", out, "--factors", 4, "--iterations", 200,
        "--grad-tol", 1e-3, "--regularization", 1.0, "--test-fraction", 0, "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return out, json.loads(result.output)


def test_train_writes_a_certified_model(trained):
    out, summary = trained
    assert summary["stop_reason"] == "grad_tol"
    model = load_model(out)
    assert model.certify(tol=1e-3)["certified"]
    assert model.seen_.n_users == 40


def test_info_and_recommend(trained):
    out, _ = trained
    info = run("info", out, "--json")
    assert info.exit_code == 0, info.output
    summary = json.loads(info.output)
    assert summary["n_users"] == 40
    assert summary["stop_reason"] == "grad_tol"
    rec = run("recommend", out, "--user", "u0", "-k", 3, "--json")
    assert rec.exit_code == 0, rec.output
    items = json.loads(rec.output)
    assert len(next(iter(items.values())) if isinstance(items, dict) else items[0]["items"]) == 3


def test_unknown_user_is_a_clean_error(trained):
    out, _ = trained
    result = run("recommend", out, "--user", "nobody")
    assert result.exit_code != 0
    assert "nobody" in result.output


def test_forget_writes_a_new_model_and_a_receipt(tmp_path, trained):
    out, _ = trained
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"users": ["u3"], "pairs": [["u5", 100]]}))
    new = tmp_path / "forgot"
    key = tmp_path / "id.key"
    key.write_text(bytes(range(32)).hex() + "\n")
    result = run(
        "forget",
        out,
        request,
        "--out",
        new,
        "--method",
        "unlearn-als",
        "--id-key-file",
        key,
        "--json",
    )
    assert result.exit_code == 0, result.output
    receipt = json.loads(result.output)
    assert receipt["certified"]
    assert receipt["removed"]["users"] == 1
    assert json.loads((new / "receipt.json").read_text())["model_hash"] == receipt["model_hash"]
    forgot = load_model(new)
    assert "u3" not in forgot.users_
    assert load_model(out).seen_.n_users == 40  # the original is kept intact
    again = run("forget", new, request, "--out", tmp_path / "twice", "--id-key-file", key, "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.output)["noop"]
    # the saved model keeps keyed hashes of what it forgot: without the key it refuses to go on
    keyless = run("forget", new, request, "--out", tmp_path / "keyless")
    assert keyless.exit_code != 0 and "RECFORGET_ID_KEY" in keyless.output
    assert "Traceback" not in keyless.output


def test_forget_keeps_alteraser_prepared_across_requests(tmp_path):
    pytest.importorskip("torch")
    from recforget import Interactions
    from recforget.models.ncf import NCF
    from recforget.unlearn.ncf import prepare

    R = random_ratings(30, 20, 0.3, seed=2)
    data = Interactions.from_csr(
        (R > 0).astype(float),
        users=[f"u{k}" for k in range(30)],
        items=[f"i{k}" for k in range(20)],
    )
    model = NCF("gmf", factors=4, epochs=2, batch_size=64, random_state=0, num_threads=1).fit(data)
    prepare(model)
    model.save(tmp_path / "m", curvature=True)
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"users": ["u4"]}))
    new = tmp_path / "forgot"
    result = run("forget", tmp_path / "m", request, "--out", new, "--method", "alteraser", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["prepared"]
    assert (new / "curvature.safetensors").is_file()
    request.write_text(json.dumps({"users": ["u7"]}))
    again = run(
        "forget", new, request, "--out", tmp_path / "twice", "--method", "alteraser", "--json"
    )
    assert again.exit_code == 0, again.output
    assert json.loads(again.output)["prepared"]  # carried: no second prepare


def test_forget_refuses_unknown_ids_and_overwriting(tmp_path, trained):
    out, _ = trained
    request = tmp_path / "request.csv"
    request.write_text("user,item\nghost,\n")
    result = run("forget", out, request, "--out", tmp_path / "x")
    assert result.exit_code != 0
    assert "ghost" in result.output
    same = run("forget", out, request, "--out", out)
    assert same.exit_code != 0


def test_bad_data_file_names_the_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("user,item,rating\n1,2,4\n1,3,oops\n")
    result = run("train", "--data", path, "--out", tmp_path / "m")
    assert result.exit_code != 0
    assert "bad.csv" in result.output and "line 3" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bench", "--delete", "bogus:1"], "unknown scenario 'bogus:1'"),
        (["bench", "--seeds", "a,b"], "not a comma-separated list"),
        (["train", "--data", "{csv}", "--out", "m", "--grad-tol", "-1"], "grad_tol"),
    ],
)
def test_bad_parameter_values_are_clean_errors(tmp_path, monkeypatch, ratings_csv, args, message):
    monkeypatch.chdir(tmp_path)
    result = run(*(a.replace("{csv}", str(ratings_csv)) for a in args))
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_forget_refuses_a_damaged_model_directory_naming_the_file(tmp_path, trained):
    out, _ = trained
    raw = (out / "arrays.npz").read_bytes()
    (out / "arrays.npz").write_bytes(raw[: len(raw) // 3])  # truncated, as a failed copy leaves it
    request = tmp_path / "request.csv"
    request.write_text("user,item\nu1,\n")
    result = run("forget", out, request, "--out", tmp_path / "x")
    assert result.exit_code != 0
    assert "arrays.npz" in result.output and "sha256" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "x").exists()


def test_train_a_neural_model_prepared_for_alteraser(tmp_path, ratings_csv):
    pytest.importorskip("torch")
    out = tmp_path / "gmf"
    result = run(
        "train", "--model", "gmf", "--data", ratings_csv, "--out", out, "--factors", 4,
        "--epochs", 2, "--test-fraction", 0.2, "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["iterations"] == 2 and summary["prepare_seconds"] > 0
    assert "ndcg@10" in summary["metrics"]
    model = load_model(out)
    assert model.arch == "gmf" and (out / "curvature.safetensors").is_file()
    request = tmp_path / "request.csv"
    request.write_text("user,item\nu1,\n")
    done = run("forget", out, request, "--out", tmp_path / "g2", "--method", "alteraser", "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["prepared"] is True


def test_bench_and_demo_certify_at_the_tightest_certified_default(tmp_path, monkeypatch):
    """One tolerance for the original fit, the retrain and both certified methods, at which
    each method meets its own default (docs/bench.md)."""
    from recforget.cli.bench import bench
    from recforget.data import datasets, synthetic
    from recforget.unlearn.als import DEFAULT_SELECTIVE_TOL, DEFAULT_TOL

    assert DEFAULT_SELECTIVE_TOL <= DEFAULT_TOL
    assert {p.name: p.default for p in bench.params}["tol"] == DEFAULT_SELECTIVE_TOL
    small = synthetic(40, 30, rank=3, density=0.25, random_state=0)
    monkeypatch.setattr(datasets, "load", lambda name: small)
    out = tmp_path / "demo.json"
    result = CliRunner().invoke(main, ["demo", "--json", str(out)])
    assert result.exit_code == 0, result.output
    demo = json.loads(out.read_text())
    assert demo["params"]["grad_tol"] == DEFAULT_SELECTIVE_TOL
    runs = {r["method"]: r for r in demo["runs"]}
    for method in ("retrain", "unlearn-als", "unlearn-als-selective"):
        assert runs[method]["certified"] and runs[method]["residual"] <= DEFAULT_SELECTIVE_TOL
