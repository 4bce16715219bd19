"""The LiRA benchmark script end to end on ML-100K (real data: slow)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.realdata]

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def lira():
    sys.path.insert(0, str(BENCH))
    try:
        import lira

        yield lira
    finally:
        sys.path.remove(str(BENCH))


def test_als_interactions_separate_original_from_retrain(lira, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out, png = tmp_path / "out.json", tmp_path / "roc.png"
    argv = ["--dataset", "ml-100k", "--model", "als", "--shadows", "4", "--bootstrap", "50"]
    argv += ["--method", "unlearn-als tol=0.0001", "--json", str(out), "--plot", str(png)]
    assert lira.main(argv) == 0
    result = json.loads(out.read_text())
    labels = ["original", "retrain", "retrain-seed2", "unlearn-als tol=0.0001"]
    assert list(result["rows"]) == labels
    assert result["n_members"] == result["n_non_members"] == 800
    orig, retrain = result["rows"]["original"]["online"], result["rows"]["retrain"]["online"]
    assert orig["auc_ci"][0] > retrain["auc_ci"][1]
    assert result["verdict"]["separates"]["online"]["auc"] is True
    assert png.read_bytes()[:4] == b"\x89PNG"
    md = capsys.readouterr().err
    assert "original vs retrain intervals separate" in md
    assert lira.main(["--markdown", str(out)]) == 0
    assert "| original | online |" in capsys.readouterr().out


def test_parse_method(lira):
    assert lira.parse_method("unlearn-als tol=0.001 x=abc") == (
        "unlearn-als",
        {"tol": 0.001, "x": "abc"},
    )
