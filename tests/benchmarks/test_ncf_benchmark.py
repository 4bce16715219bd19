"""The NCF benchmark script end to end on ML-100K (real data: slow)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

pytestmark = [pytest.mark.slow, pytest.mark.torch]

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def ncf_unlearn():
    sys.path.insert(0, str(BENCH))
    try:
        import ncf_unlearn

        yield ncf_unlearn
    finally:
        sys.path.remove(str(BENCH))


def test_user_deletions_are_judged_by_the_fold_in_probe(ncf_unlearn, tmp_path, capsys):
    out = tmp_path / "out.json"
    argv = ["--dataset", "ml-100k", "--arch", "gmf", "--scenario", "users:0.01"]
    argv += ["--model-params", '{"epochs": 2}', "--finetune-max-epochs", "1"]
    argv += ["--finetune-lr", "5e-3", "--finetune-lr", "1e-3"]
    argv += ["--method", "retrain", "--method", "alteraser", "--json", str(out)]
    assert ncf_unlearn.main(argv) == 0
    result = json.loads(out.read_text())
    assert result["trace"] == "fold-in probe"
    rows = {r["method"]: r for r in [result["original"], *result["runs"]]}
    for row in rows.values():
        assert 0 < row["deleted_score"] < 1 and 0 <= row["mia_auc"] <= 1
    assert rows["retrain"]["gap_closed"] == pytest.approx(1.0)
    assert rows["original"]["gap_closed"] == pytest.approx(0.0)
    assert rows["alteraser"]["speedup"] > 1
    traces = result["finetune_traces"]
    assert [t["lr"] for t in traces] == [5e-3, 1e-3]
    assert all(len(t["epochs"]) == 1 for t in traces) and result["finetune_trace"] in traces
    text = capsys.readouterr().out
    assert "finetune at lr 0.005 per epoch" in text and "finetune at lr 0.001 per epoch" in text


@pytest.mark.parametrize("bad", ["0", "-1e-3", "nan", "fast"])
def test_a_bad_finetune_step_size_is_refused_before_any_work(ncf_unlearn, bad, capsys):
    with pytest.raises(SystemExit) as exit_:
        ncf_unlearn.main([f"--finetune-lr={bad}"])
    assert exit_.value.code == 2
    assert f"a step size must be a positive number, got {bad!r}" in capsys.readouterr().err
