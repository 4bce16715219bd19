"""The warm start of every NCF unlearner: the original network on the remaining data."""

from __future__ import annotations

from typing import Any

import numpy as np

from recforget.data.interactions import Removal
from recforget.models.ncf import NCF
from recforget.unlearn.ncf.sample import carry_negatives, kept_rows


# ---------------------------------------------------------------------------- helpers
def transplant(model: NCF, removal: Removal, *, negatives: bool = True, **params: Any) -> NCF:
    """A copy of ``model`` on the remaining data, removed users'/items' rows dropped.

    The copy keeps the objective's ridge (``objective_reg_``) and, when ``model`` has them
    cached and ``negatives`` is true, its fixed negatives (redrawn only for the users the
    removal touches); fine-tuning, which draws fresh negatives, passes ``negatives=False``.
    """
    dev = next(model.module_.parameters()).device
    module = model.module_.take(
        kept_rows(removal.user_map).to(dev), kept_rows(removal.item_map).to(dev)
    )
    new = NCF.from_module(
        module, removal.data, **{**model.get_params(), "random_state": model.seed_, **params}
    )
    new.seed_ = model.seed_
    if hasattr(model, "objective_reg_"):
        new.objective_reg_ = model.objective_reg_
    if negatives and "_negatives_cache" in model.__dict__ and not params:
        carry_negatives(model, removal, new)
    return new


def affected_rows(removal: Removal) -> tuple[np.ndarray, np.ndarray]:
    """New indices of kept users / items that lost interactions."""
    return removal.user_map[removal.affected_users], removal.item_map[removal.affected_items]


__all__ = ["affected_rows", "transplant"]
