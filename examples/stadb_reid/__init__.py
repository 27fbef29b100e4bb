"""STADB person re-identification trainer built from stadb_layers."""

from .evaluation import (
    RankMetrics,
    evaluate_from_features,
    evaluate_rank,
    extract_features,
    k_reciprocal_rerank,
    pairwise_distance,
    rank_metrics,
)

__all__ = [
    "RankMetrics",
    "evaluate_from_features",
    "evaluate_rank",
    "extract_features",
    "k_reciprocal_rerank",
    "pairwise_distance",
    "rank_metrics",
]
