"""Load any saved model by the kind recorded in its ``config.json``."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from recforget.data.errors import DataError
from recforget.models.base import Recommender

# kind recorded by ``save`` -> (module, class); imported on use (NCF needs torch), by name, so
# a model that loads other models through this registry (an ensemble) is no import circle
KINDS: dict[str, tuple[str, str]] = {
    "als": ("recforget.models.als", "ALS"),
    "ncf": ("recforget.models.ncf", "NCF"),
    "sharded": ("recforget.models.sharded", "ShardedEnsemble"),
}


def load_model(path: str | Path) -> Recommender:
    """Load a model directory written by any recforget model's ``save``."""
    config_path = Path(path) / "config.json"
    if not config_path.is_file():
        raise DataError("not a recforget model directory: config.json is missing", file=str(path))
    kind = json.loads(config_path.read_text()).get("model")
    if kind not in KINDS:
        raise DataError(f"unknown model kind {kind!r}", file=str(config_path))
    module, name = KINDS[kind]
    return getattr(importlib.import_module(module), name).load(path)
