"""Load any saved model by the kind recorded in its ``config.json``."""

from __future__ import annotations

import json
from pathlib import Path

from recforget.data.errors import DataError
from recforget.models.base import Recommender


def load_model(path: str | Path) -> Recommender:
    """Load a model directory written by any recforget model's ``save``."""
    config_path = Path(path) / "config.json"
    if not config_path.is_file():
        raise DataError("not a recforget model directory: config.json is missing", file=str(path))
    kind = json.loads(config_path.read_text()).get("model")
    if kind == "als":
        from recforget.models.als import ALS

        return ALS.load(path)
    if kind == "ncf":
        from recforget.models.ncf import NCF

        return NCF.load(path)
    if kind == "sharded":
        from recforget.models.sharded import ShardedEnsemble

        return ShardedEnsemble.load(path)
    raise DataError(f"unknown model kind {kind!r}", file=str(config_path))
