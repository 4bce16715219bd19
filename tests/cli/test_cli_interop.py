"""`recforget import` / `recforget export`: implicit .npz in, forget, implicit .npz out."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp
from click.testing import CliRunner

from recforget.cli import main

implicit_als = pytest.importorskip("implicit.cpu.als", reason="implicit is in the [interop] extra")


def _run(*args, ok=True):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert (result.exit_code == 0) == ok, result.output
    return result.output


def test_import_forget_export_implicit(tmp_path):
    rng = np.random.default_rng(3)
    m = sp.csr_matrix(
        ((rng.random((30, 20)) < 0.25) * rng.integers(1, 4, (30, 20))).astype(np.float32)
    )
    sp.save_npz(tmp_path / "user_items.npz", m)
    theirs = implicit_als.AlternatingLeastSquares(
        factors=4, regularization=0.1, alpha=3.0, iterations=20, random_state=0
    )
    theirs.fit(m, show_progress=False)
    theirs.save(str(tmp_path / "model.npz"))
    out = _run(
        "import",
        "--from",
        "implicit",
        tmp_path / "model.npz",
        "--data",
        tmp_path / "user_items.npz",
        "--out",
        tmp_path / "imported",
    )
    assert "30 users x 20 items" in out
    (tmp_path / "req.json").write_text(json.dumps({"users": [29]}))
    _run(
        "forget",
        tmp_path / "imported",
        tmp_path / "req.json",
        "--out",
        tmp_path / "forgot",
        "--method",
        "unlearn-als",
        "--tol",
        "1e-4",
    )
    _run(
        "export",
        "--to",
        "implicit",
        tmp_path / "forgot",
        "--out",
        tmp_path / "back.npz",
        "--like",
        tmp_path / "model.npz",
    )
    back = implicit_als.AlternatingLeastSquares.load(str(tmp_path / "back.npz"))
    assert back.user_factors.shape == (30, 4) and not back.user_factors[29].any()
    from recforget.models.als import ALS

    ours = ALS.load(tmp_path / "forgot")
    users, items = np.arange(29), rng.integers(0, 20, 29)
    np.testing.assert_allclose(
        np.einsum("ij,ij->i", back.user_factors[users], back.item_factors[items]),
        ours.score(users, items),
        rtol=1e-6,
        atol=1e-7,
    )
    assert ours.weighting == "confidence" and ours.alpha == 3.0


def test_import_errors_are_clean(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    out = _run(
        "import",
        "--from",
        "implicit",
        tmp_path / "bad.npz",
        "--data",
        tmp_path / "bad.npz",
        "--out",
        tmp_path / "o",
        ok=False,
    )
    assert "bad.npz" in out and "Traceback" not in out


def test_import_export_lenskit_state(tmp_path):
    """A LensKit ImplicitMF state in, forget, out: ids, config and embeddings carried."""
    import pandas as pd

    from recforget.interop.lenskit import load_state, save_state

    rng = np.random.default_rng(0)
    rows = [(f"u{u}", f"i{i}") for u in range(20) for i in range(15) if rng.random() < 0.3]
    pd.DataFrame(rows, columns=["user", "item"]).to_csv(tmp_path / "r.csv", index=False)
    users = sorted({u for u, _ in rows})
    items = sorted({i for _, i in rows})
    config = {
        "embedding_size": 3,
        "epochs": 10,
        "regularization": 0.2,
        "weight": 20.0,
        "use_ratings": False,
        "user_embeddings": True,
    }
    save_state(
        tmp_path / "lk",
        "ImplicitMFScorer",
        config,
        {
            "user_ids": users,
            "item_ids": items,
            "user_embeddings": rng.standard_normal((len(users), 3)).astype(np.float32),
            "item_embeddings": rng.standard_normal((len(items), 3)).astype(np.float32),
        },
    )
    _run(
        "import",
        "--from",
        "lenskit",
        tmp_path / "lk",
        "--data",
        tmp_path / "r.csv",
        "--out",
        tmp_path / "m",
    )
    (tmp_path / "req.json").write_text(json.dumps({"users": ["u0"]}))
    _run(
        "forget",
        tmp_path / "m",
        tmp_path / "req.json",
        "--out",
        tmp_path / "f",
        "--method",
        "unlearn-als",
        "--tol",
        "1e-3",
    )
    _run(
        "export",
        "--to",
        "lenskit",
        tmp_path / "f",
        "--out",
        tmp_path / "back",
        "--like",
        tmp_path / "lk",
    )
    kind, cfg, arrays = load_state(tmp_path / "back")
    assert kind == "ImplicitMFScorer" and cfg["weight"] == 20.0 and cfg["regularization"] == 0.2
    assert arrays["user_ids"].tolist() == users[1:]
    from recforget.models.als import ALS

    ours = ALS.load(tmp_path / "f")
    np.testing.assert_array_equal(arrays["user_embeddings"], ours.user_factors_)
    assert ours.alpha == 20.0 and ours.weighting == "linear"
