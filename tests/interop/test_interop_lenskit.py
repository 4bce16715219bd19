"""LensKit 2025.8: ImplicitMF / BiasedMF objectives reproduced and state round trips.

LensKit needs pandas 2 (recforget's environment has pandas 3) and Python >= 3.12.5 from
2026.1 on, so its side runs in a second interpreter: ``$RECFORGET_LENSKIT_PYTHON`` or the
repository's ``.venv-lenskit`` (``make lenskit-env``), through ``lenskit_side.py``. The tests
skip, saying so, when neither exists.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recforget import DataError, DeletionRequest, Interactions, forget
from recforget.interop.lenskit import (
    bias_model,
    forget_biased,
    from_lenskit,
    load_state,
    residuals,
    to_lenskit,
)

ROOT = Path(__file__).resolve().parents[2]
SIDE = Path(__file__).with_name("lenskit_side.py")


def _python() -> str | None:
    env = os.environ.get("RECFORGET_LENSKIT_PYTHON")
    if env:
        return env
    venv = ROOT / ".venv-lenskit" / "bin" / "python"
    return str(venv) if venv.exists() else None


PYTHON = _python()
pytestmark = pytest.mark.skipif(
    PYTHON is None,
    reason="no LensKit interpreter: run `make lenskit-env` or set RECFORGET_LENSKIT_PYTHON",
)


def _side(*args: object) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.run(
        [PYTHON, str(SIDE), *map(str, args)], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.fixture(scope="module")
def ratings(tmp_path_factory) -> tuple[Path, Interactions]:
    rng = np.random.default_rng(0)
    rows = [
        (f"u{u}", f"i{i}", float(rng.integers(1, 6)))
        for u in range(30)
        for i in range(25)
        if rng.random() < 0.3
    ]
    frame = pd.DataFrame(rows, columns=["user", "item", "rating"])
    path = tmp_path_factory.mktemp("lk") / "ratings.csv"
    frame.to_csv(path, index=False)
    return path, Interactions.from_frame(frame, rating_col="rating")


@pytest.fixture(scope="module")
def states(ratings, tmp_path_factory):
    """LensKit-trained states after 5 and 6 epochs (same seed), per scorer."""
    path, _ = ratings
    out = {}
    for kind, extra in (("ImplicitMFScorer", []), ("BiasedMFScorer", ["damping=2.0"])):
        base = tmp_path_factory.mktemp(kind)
        _side(
            "train",
            kind,
            path,
            "5,6",
            1,
            base / "e",
            "embedding_size=4",
            "regularization=0.5",
            *extra,
        )
        out[kind] = (base / "e5", base / "e6")
    return out


@pytest.mark.parametrize("kind", ["ImplicitMFScorer", "BiasedMFScorer"])
def test_one_lenskit_epoch_equals_one_recforget_sweep(kind, ratings, states):
    _, raw = ratings
    e5, e6 = states[kind]
    model = from_lenskit(e5, raw)
    model.sweeps(model.seen_, 1)
    _, _, after = load_state(e6)
    scale = np.abs(after["item_embeddings"]).max()
    assert np.abs(model.user_factors_ - after["user_embeddings"]).max() < 1e-5 * scale
    assert np.abs(model.item_factors_ - after["item_embeddings"]).max() < 1e-5 * scale


def test_bias_model_is_lenskits(ratings, states):
    _, raw = ratings
    _, _, arrays = load_state(states["BiasedMFScorer"][0])
    from recforget.data.vocab import Vocabulary

    data = raw.reindex(
        Vocabulary(arrays["user_ids"].tolist()), Vocabulary(arrays["item_ids"].tolist())
    )
    mine = bias_model(data, (2.0, 2.0))
    assert mine["global_bias"] == pytest.approx(float(arrays["global_bias"]), abs=1e-6)
    np.testing.assert_allclose(mine["item_biases"], arrays["item_biases"], atol=1e-6)
    np.testing.assert_allclose(mine["user_biases"], arrays["user_biases"], atol=1e-6)


def _queries(tmp_path, users, items) -> Path:
    q = tmp_path / "queries.csv"
    pd.DataFrame({"user": users, "item": items}).to_csv(q, index=False)
    return q


def test_implicit_mf_round_trip(ratings, states, tmp_path):
    _, raw = ratings
    model = from_lenskit(states["ImplicitMFScorer"][1], raw)
    pair = ("u1", raw.items.ids[raw.indices[raw.indptr[1]]])
    result = forget(
        model, DeletionRequest(users=["u3"], pairs=[pair]), "unlearn-als", tol=1e-4, max_sweeps=1000
    )
    assert result.receipt["certified"]
    to_lenskit(result.model, tmp_path / "forgot")
    kind, config, arrays = load_state(tmp_path / "forgot")
    assert kind == "ImplicitMFScorer" and config["weight"] == 40.0
    assert "u3" not in set(arrays["user_ids"].tolist())
    users = ["u1", "u1", "u2", "u7", "u29"]
    items = [pair[1], "i0", "i5", "i24", "i13"]
    _side("score", tmp_path / "forgot", _queries(tmp_path, users, items), tmp_path / "s.npz")
    with np.load(tmp_path / "s.npz") as f:
        theirs = f["scores"]
    np.testing.assert_allclose(theirs, result.model.score(users, items), rtol=1e-5, atol=1e-6)


def test_biased_mf_forget_refits_the_biases_and_round_trips(ratings, states, tmp_path):
    _, raw = ratings
    model = from_lenskit(states["BiasedMFScorer"][1], raw)
    new, remaining, cert = forget_biased(model, raw, DeletionRequest(users=["u3"]), tol=1e-4)
    assert cert["certified"]
    assert "u3" not in remaining.users and "u3" not in new.users_
    # the biases are LensKit's bias model of the remaining ratings, not the old ones
    refit = bias_model(remaining, (2.0, 2.0))
    np.testing.assert_array_equal(new.lenskit_["bias"]["item_biases"], refit["item_biases"])
    # and the factors are certified on the residuals under the refitted biases
    assert (
        new.objective(residuals(remaining, refit)).stationarity(new._factors())["max_relative"]
        <= 1e-4
    )
    to_lenskit(new, tmp_path / "forgot")
    users, items = ["u1", "u2", "u7"], ["i3", "i5", "i24"]
    _side("score", tmp_path / "forgot", _queries(tmp_path, users, items), tmp_path / "s.npz")
    with np.load(tmp_path / "s.npz") as f:
        theirs = f["scores"]
    u, i = new.users_.index(users), new.items_.index(items)
    b = refit["global_bias"] + refit["user_biases"][u] + refit["item_biases"][i]
    np.testing.assert_allclose(theirs, b + new.score(users, items), rtol=1e-5, atol=1e-5)


def test_bad_state_is_named(tmp_path, ratings):
    (tmp_path / "lenskit.json").write_text('{"class": "ItemKNNScorer"}')
    with pytest.raises(DataError, match="ItemKNNScorer"):
        from_lenskit(tmp_path, ratings[1])
