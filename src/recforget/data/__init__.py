"""Interaction data: vocabularies, the Interactions matrix, readers, data sets, splits."""

from recforget.data.errors import DataError, UnknownIdError
from recforget.data.interactions import Interactions, Removal
from recforget.data.vocab import Vocabulary

__all__ = ["DataError", "Interactions", "Removal", "UnknownIdError", "Vocabulary"]
