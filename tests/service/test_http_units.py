"""Small pure parts of the HTTP layer (no server): field names, the chart, the app factory."""

from __future__ import annotations

import re

import numpy as np
import pytest

pytest.importorskip("fastapi")


def test_field_names_follow_the_body():
    from recforget.service.http.errors import field_name

    assert field_name(("body", "users", 0)) == "body.users[0]"
    assert field_name(("body", "users", 0, "constrained-str")) == "body.users[0]"
    assert field_name(("body", "pairs", 2, "item")) == "body.pairs[2].item"
    assert field_name(("header", "idempotency-key")) == "header Idempotency-Key"
    assert field_name(("query", "k")) == "query.k"
    assert field_name(()) == "body"


def test_create_app_does_no_work_until_startup(tmp_path):
    from recforget.service.http import Settings, create_app

    missing = tmp_path / "no-such-home"
    app = create_app(Settings(home=missing))
    assert not missing.exists()  # nothing opened or created
    paths = set(app.openapi()["paths"])
    assert "/v1/deletions" in paths and "/console" not in paths  # the console is not API


def test_latency_chart_scales_its_points():
    from recforget.service.http.routers.console import latency_svg

    assert "No completed requests" in latency_svg([])
    series = [(1000.0 + t, float(v)) for t, v in enumerate([1, 2, 4, 8])]
    svg = latency_svg(series, width=200, height=100)
    cys = [float(x) for x in re.findall(r'<circle cx="[\d.]+" cy="([\d.]+)"', svg)]
    cxs = [float(x) for x in re.findall(r'<circle cx="([\d.]+)"', svg)]
    assert len(cys) == 4 and cxs == sorted(cxs)
    # y grows downwards: larger latency, smaller y; spacing proportional to the values
    assert cys == sorted(cys, reverse=True)
    gaps = np.diff(cys)
    assert gaps[2] / gaps[0] == pytest.approx(4.0, rel=1e-2)
    assert "p50 " in svg and "p99 8.000 s" in svg


def test_serving_model_top_k_against_a_dense_reference():
    from recforget.data.vocab import Vocabulary
    from recforget.service.http.serving import ServingModel

    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(5, 3)), rng.normal(size=(30, 3))
    items = Vocabulary([f"i{n}" for n in range(30)], "item")
    m = ServingModel(1, 1, "d", Vocabulary(list(range(5)), "user"), items, X, Y, None, None, 0.0)
    exclude = ["i3", "i7", "not-an-item"]
    top, scores = m.recommend(2, 10, exclude)
    ref = Y @ X[2]
    ref[[3, 7]] = -np.inf
    want = np.argsort(-ref, kind="stable")[:10]
    assert top.tolist() == want.tolist()
    np.testing.assert_allclose(scores, ref[want])
    top_all, _ = m.recommend(2, 100, exclude)  # k beyond the catalogue: all but the excluded
    assert sorted(top_all.tolist()) == sorted(set(range(30)) - {3, 7})
