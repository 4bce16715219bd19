"""``benchmarks/ncf_unlearn.py --lira K`` on tiny synthetic data (default suite)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

pytestmark = pytest.mark.torch

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def ncf_unlearn():
    sys.path.insert(0, str(BENCH))
    try:
        import ncf_unlearn

        yield ncf_unlearn
    finally:
        sys.path.remove(str(BENCH))


def test_neural_benchmark_runs_lira_on_every_model(ncf_unlearn, tmp_path):
    from recforget.data import synthetic

    png = tmp_path / "roc.png"
    argv = ["--arch", "gmf", "--scenario", "interactions:0.05", "--lira", "4"]
    argv += ["--model-params", '{"epochs": 4, "factors": 8, "batch_size": 256}']
    argv += ["--method", "retrain", "--method", "alteraser", "--no-finetune-trace"]
    argv += ["--lira-plot", str(png)]
    args = ncf_unlearn.parser().parse_args(argv)
    args.dataset = synthetic(80, 50, rank=3, density=0.2, random_state=0)
    result = ncf_unlearn.run(args)
    lira = result["lira"]
    assert (lira["level"], lira["transform"], lira["n_shadows"]) == ("interaction", "logit", 4)
    assert list(lira["rows"]) == ["original", "retrain", "retrain-seed2", "alteraser"]
    assert lira["n_members"] == result["removed"] == lira["n_non_members"]
    assert set(lira["verdict"]["inside_retrain_interval"]) == {"alteraser"}
    assert "LiRA (interaction level, 4 shadows" in ncf_unlearn.table(result)
    json.dumps(result, allow_nan=False)
    assert png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("bad", ["2", "3", "-4", "x"])
def test_a_bad_shadow_count_is_refused_at_parse_time(ncf_unlearn, bad, capsys):
    with pytest.raises(SystemExit):
        ncf_unlearn.main([f"--lira={bad}"])
    assert "--lira needs 0 or an even count >= 4" in capsys.readouterr().err
