"""The LensKit side of the LensKit round-trip tests, run in the interpreter that has LensKit.

LensKit 2025.x pins pandas 2 while recforget's environment has pandas 3, so the tests run
this script in a second environment (``.venv-lenskit``, see the Makefile):

    python lenskit_side.py train KIND RATINGS.csv EPOCHS[,EPOCHS...] SEED OUT_PREFIX [KEY=VALUE ...]
    python lenskit_side.py score STATE_DIR QUERIES.csv OUT.npz
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd


def train(kind: str, ratings: str, epochs: list[int], seed: int, out: str, **config) -> None:
    """Train one scorer per entry of ``epochs`` (same seed); states in ``{out}{epochs}``."""
    from lenskit.als import BiasedMFScorer, ImplicitMFScorer
    from lenskit.data import from_interactions_df
    from lenskit.training import TrainingOptions

    from recforget.interop.lenskit import save_state, state_of

    frame = pd.read_csv(ratings)
    data = from_interactions_df(frame, user_col="user", item_col="item", rating_col="rating")
    cls = {"ImplicitMFScorer": ImplicitMFScorer, "BiasedMFScorer": BiasedMFScorer}[kind]
    for n in epochs:
        scorer = cls(epochs=n, **config)
        scorer.train(data, TrainingOptions(rng=seed))
        save_state(f"{out}{n}", *state_of(scorer))


def score(state: str, queries: str, out: str) -> None:
    from lenskit.data import ItemList

    from recforget.interop.lenskit import load_state, scorer_from_state

    scorer = scorer_from_state(*load_state(state))
    q = pd.read_csv(queries)
    scores = np.empty(len(q))
    for user, rows in q.groupby("user", sort=False):
        items = ItemList(item_ids=rows["item"].to_numpy())
        scores[rows.index.to_numpy()] = scorer(user, items).scores()
    np.savez(out, scores=scores)


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    if cmd == "train":
        kind, ratings, epochs, seed, out, *kv = args
        config = {}
        for item in kv:
            k, v = item.split("=")
            config[k] = v == "true" if v in ("true", "false") else float(v)
        train(kind, ratings, [int(e) for e in epochs.split(",")], int(seed), out, **config)
    elif cmd == "score":
        score(*args)
    else:
        raise SystemExit(f"unknown command {cmd!r}")
