"""Evaluation: held-out accuracy, consistency with the retrained oracle, membership inference."""

from recforget.evaluate.accuracy import (
    DEFAULT_METRICS,
    RANKING_METRICS,
    evaluate_ranking,
    evaluate_ratings,
)
from recforget.evaluate.attacks import (
    MIASplit,
    interaction_mia,
    rank_auc,
    sample_non_members,
    split_users_for_mia,
    user_mia,
)
from recforget.evaluate.consistency import (
    common_item_vectors,
    deleted_item_ranks,
    item_vectors,
    neighbour_overlap,
    rank_summary,
    score_agreement,
    topk_overlap,
)
from recforget.evaluate.foldin import FoldInProbe, fold_in_split, fold_in_trace
from recforget.evaluate.logistic import fit_logistic, logistic_decision
from recforget.evaluate.ranking import PER_K_METRICS, auc_per_user, mae, rank_metrics, rmse
from recforget.evaluate.rows import gap_closed

__all__ = [
    "DEFAULT_METRICS",
    "PER_K_METRICS",
    "RANKING_METRICS",
    "FoldInProbe",
    "MIASplit",
    "auc_per_user",
    "common_item_vectors",
    "deleted_item_ranks",
    "evaluate_ranking",
    "evaluate_ratings",
    "fit_logistic",
    "fold_in_split",
    "fold_in_trace",
    "gap_closed",
    "interaction_mia",
    "item_vectors",
    "logistic_decision",
    "mae",
    "neighbour_overlap",
    "rank_auc",
    "rank_metrics",
    "rank_summary",
    "rmse",
    "sample_non_members",
    "score_agreement",
    "split_users_for_mia",
    "topk_overlap",
    "user_mia",
]
