"""The ALS convergence benchmark script end to end on ML-100K (real data: slow)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.realdata]

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def als_convergence():
    sys.path.insert(0, str(BENCH))
    try:
        import als_convergence

        yield als_convergence
    finally:
        sys.path.remove(str(BENCH))


def test_rows_have_the_issue_fields_and_rows_agree_with_traces(als_convergence, tmp_path):
    out = tmp_path / "out.json"
    args = ["--dataset", "ml-100k", "--regs", "60", "--tols", "1e-1,1e-2", "--factors", "8"]
    args += ["--max-sweeps", "60", "--drivers", "plain,anderson", "--json", str(out)]
    args += ["--tasks", "fit,retrain,unlearn-1pct,unlearn-user", "--plots", str(tmp_path)]
    als_convergence.main(args)
    result = json.loads(out.read_text())[0]
    rows = result["rows"]
    fields = {"dataset", "regularization", "tol", "task", "driver", "sweeps", "seconds"}
    assert all(fields | {"certified"} <= set(r) for r in rows)
    assert {r["task"] for r in rows} == {"fit", "retrain", "unlearn-1pct", "unlearn-user"}
    assert {r["driver"] for r in rows} == {"plain", "anderson"}
    # a looser tolerance is reached no later than a tighter one, in the same run
    for trace in result["traces"]:
        run = [
            r
            for r in rows
            if (r["task"], r["method"], r["driver"])
            == (trace["task"], trace["method"], trace["driver"])
        ]
        loose, tight = sorted(run, key=lambda r: -r["tol"])
        assert loose["sweeps"] <= tight["sweeps"]
        if tight["certified"]:
            assert trace["trace"][tight["sweeps"] - 1]["max_relative"] <= tight["tol"]
    assert list(tmp_path.glob("residual_vs_time_*.png"))
