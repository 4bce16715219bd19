"""Evaluation: held-out accuracy metrics (ranking and rating) of fitted recommenders."""

from recforget.evaluate.accuracy import (
    DEFAULT_METRICS,
    RANKING_METRICS,
    evaluate_ranking,
    evaluate_ratings,
)
from recforget.evaluate.ranking import PER_K_METRICS, auc_per_user, mae, rank_metrics, rmse

__all__ = [
    "DEFAULT_METRICS",
    "PER_K_METRICS",
    "RANKING_METRICS",
    "auc_per_user",
    "evaluate_ranking",
    "evaluate_ratings",
    "mae",
    "rank_metrics",
    "rmse",
]
