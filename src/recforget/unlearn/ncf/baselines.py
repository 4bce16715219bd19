"""The NCF baselines: the retrain oracle and AdamW fine-tuning."""

from __future__ import annotations

import numbers

import numpy as np

from recforget.data.interactions import Removal
from recforget.models.base import clone
from recforget.models.ncf import NCF
from recforget.unlearn.ncf.transplant import transplant
from recforget.unlearn.registry import register


# ---------------------------------------------------------------------------- methods
@register("retrain", "ncf")
def retrain(model: NCF, removal: Removal, *, random_state: int | None = None) -> tuple[NCF, dict]:
    """The oracle: same parameters and seed, trained from scratch on the remaining data.

    ``random_state`` trains with another seed instead: two retrains differ by their seeds
    alone, which measures how far apart two equally valid "forgotten" models lie.
    """
    if random_state is not None and (
        isinstance(random_state, bool)
        or not isinstance(random_state, numbers.Integral)
        or random_state < 0
    ):
        raise ValueError(f"random_state must be a non-negative integer, got {random_state!r}")
    seed = model.seed_ if random_state is None else int(random_state)
    new = clone(model).set_params(random_state=seed).fit(removal.data)
    if hasattr(model, "objective_reg_"):
        new.objective_reg_ = model.objective_reg_
    return new, {"tol": None, "epochs": new.n_iter_, "random_state": seed}


@register("finetune", "ncf")
def finetune(
    model: NCF, removal: Removal, *, epochs: int = 5, lr: float | None = None
) -> tuple[NCF, dict]:
    """Warm start, then ``epochs`` AdamW epochs of the model's own trainer on the remaining data.

    Negatives are drawn afresh each epoch among the items that are not remaining positives.

    .. note:: Experimental (approximate).
    """
    new = transplant(model, removal, negatives=False)
    rng = np.random.default_rng([new.seed_, 1])
    new.train_epochs(removal.data, int(epochs), lr=lr, random_state=rng)
    return new, {"tol": None, "epochs": int(epochs)}


__all__ = ["finetune", "retrain"]
