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
