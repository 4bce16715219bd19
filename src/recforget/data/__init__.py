"""Interaction data: vocabularies, the Interactions matrix, readers, data sets, splits."""

from recforget.data.datasets import expand, load, load_item_genres
from recforget.data.errors import DataError, UnknownIdError
from recforget.data.generators import block_diagonal, random_ratings, synthetic
from recforget.data.interactions import Interactions, Removal
from recforget.data.readers import read_interactions, read_movielens
from recforget.data.split import leave_k_out, random_holdout, temporal, temporal_leave_k_out
from recforget.data.transforms import drop_empty, filter_values, k_core, to_implicit
from recforget.data.vocab import Vocabulary

__all__ = [
    "DataError",
    "Interactions",
    "Removal",
    "UnknownIdError",
    "Vocabulary",
    "block_diagonal",
    "drop_empty",
    "expand",
    "filter_values",
    "k_core",
    "leave_k_out",
    "load",
    "load_item_genres",
    "random_holdout",
    "random_ratings",
    "read_interactions",
    "read_movielens",
    "synthetic",
    "temporal",
    "temporal_leave_k_out",
    "to_implicit",
]
