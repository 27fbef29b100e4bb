"""Evaluation of a model on a dataset's query and gallery sets, as the trainer runs it."""

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from ..config import Config
from ..data import ReIDDataset, build_test_loaders
from ..evaluation import (
    RankMetrics,
    evaluate_from_features,
    extract_features,
    k_reciprocal_rerank_features,
    rank_metrics,
)
from ..evaluation.features import Embeddings

__all__ = ["embed_test_sets", "evaluate_model", "rank_test_sets"]


def embed_test_sets(
    model: nn.Module, dataset: ReIDDataset, config: Config, device: torch.device, *, progress: bool = True
) -> tuple[Embeddings, Embeddings]:
    """Embed the query and gallery sets with the test transform (flip-averaged if ``config.eval.flip``)."""
    query_loader, gallery_loader = build_test_loaders(
        dataset,
        height=config.data.height,
        width=config.data.width,
        batch_size=config.data.test_batch_size,
        num_workers=config.data.num_workers,
    )
    query = extract_features(model, query_loader, device, flip=config.eval.flip, progress=progress)
    gallery = extract_features(model, gallery_loader, device, flip=config.eval.flip, progress=progress)
    return query, gallery


def rank_test_sets(
    query: Embeddings, gallery: Embeddings, config: Config, *, progress: bool = False
) -> tuple[RankMetrics, npt.NDArray[np.float32] | None]:
    """Rank the gallery for every query as ``config.eval`` says (metric, re-ranking, truncated AP).

    ``config.eval.ap_at = N > 0`` adds the mAP truncated at rank ``N`` (summary key ``mAP_at_N``) next
    to the full one; see :func:`~stadb_reid.evaluation.rank.rank_metrics` for the formula.

    Re-ranking uses :func:`~stadb_reid.evaluation.k_reciprocal_rerank_features` on squared Euclidean
    distances, as in Zhong et al.'s code (so re-ranked figures compare with published ones): it works
    from the features in tiles and never builds the gallery-gallery matrix, so it runs at any dataset
    size (MSMT17 in about 5 GB).

    Args:
        query: Query features, identities and cameras.
        gallery: Gallery features, identities and cameras.
        config: The run's configuration (``config.eval``).
        progress: Show progress bars for the long steps.

    Returns:
        The metrics, and the re-ranked ``(num_query, num_gallery)`` distances when re-ranking
        (``None`` otherwise: the plain path works in chunks and never holds the full matrix).
    """
    q_features, q_pids, q_camids = query
    g_features, g_pids, g_camids = gallery
    max_rank = min(50, len(g_pids))
    if not config.eval.rerank:
        metrics = evaluate_from_features(
            q_features,
            g_features,
            q_pids,
            g_pids,
            q_camids,
            g_camids,
            metric=config.eval.metric.value,
            max_rank=max_rank,
            progress=progress,
            ap_at=config.eval.ap_at,
        )
        return metrics, None
    distances = k_reciprocal_rerank_features(q_features, g_features, metric="sqeuclidean", progress=progress)
    metrics = rank_metrics(
        distances, q_pids, g_pids, q_camids, g_camids, max_rank=max_rank, ap_at=config.eval.ap_at
    )
    return metrics, distances


def evaluate_model(
    model: nn.Module, dataset: ReIDDataset, config: Config, device: torch.device, *, progress: bool = True
) -> dict[str, float]:
    """Embed the query and gallery sets and return rank-1/5/10, mAP, mINP (and ``mAP_at_N``) in percent."""
    query, gallery = embed_test_sets(model, dataset, config, device, progress=progress)
    metrics, _ = rank_test_sets(query, gallery, config, progress=progress)
    return metrics.summary()
