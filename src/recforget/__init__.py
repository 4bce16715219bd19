"""recforget: fast, certified machine unlearning for recommender systems.

Train a recommender, then make it forget selected interactions, users or items
as if they had never been used, and check it against retraining from scratch.
"""

from __future__ import annotations

__version__ = "0.1.0"

from recforget.data.errors import DataError, UnknownIdError
from recforget.data.forgotten import IdKeyError
from recforget.data.interactions import Interactions, Removal
from recforget.data.vocab import Vocabulary
from recforget.models.als import ALS
from recforget.unlearn import DeletionRequest, UnlearnResult, forget

__all__ = [
    "ALS",
    "DataError",
    "DeletionRequest",
    "IdKeyError",
    "Interactions",
    "Removal",
    "UnknownIdError",
    "UnlearnResult",
    "Vocabulary",
    "__version__",
    "forget",
]
