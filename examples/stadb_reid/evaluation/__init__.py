"""Evaluation of the STADB re-ID trainer: features, distances, re-ranking and CMC / mAP / mINP.

Typical use::

    qf, q_pids, q_camids = extract_features(model, query_loader, device, flip=True)
    gf, g_pids, g_camids = extract_features(model, gallery_loader, device, flip=True)
    metrics = evaluate_from_features(qf, gf, q_pids, g_pids, q_camids, g_camids)  # chunked, low memory
    print(metrics.summary())  # rank1, rank5, rank10, mAP, mINP in percent

or, with a full distance matrix (e.g. re-ranked)::

    distmat = k_reciprocal_rerank_features(qf, gf, metric="sqeuclidean")
    cmc, mAP = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids)
"""

from .distance import evaluate_from_features, pairwise_distance
from .features import extract_features
from .metrics import RankMetrics
from .rank import evaluate_rank, rank_metrics
from .rerank_features import k_reciprocal_rerank_features

__all__ = [
    "RankMetrics",
    "evaluate_from_features",
    "evaluate_rank",
    "extract_features",
    "k_reciprocal_rerank_features",
    "pairwise_distance",
    "rank_metrics",
]
