"""All figures of a checkpoint: training curves, CMC, attention maps and ranked retrieval.

:func:`visualize_checkpoint` rebuilds the model and dataset of a checkpoint as
:func:`~stadb_reid.commands.evaluate_checkpoint` does, embeds the query and gallery sets once, and writes
``curves.png``, ``cmc.png``, ``attention.png`` and ``retrieval.png``. The same queries, chosen at
random with a seed and from different identities where possible, appear in the attention and the
retrieval figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor

from stadb_layers.checks import check_positive_int

from ..config import Overrides
from ..data import ReIDSample, build_test_transform, dataset_from_config
from ..data.loaders import read_image
from ..engine.build import resolve_device
from ..engine.evaluate import embed_test_sets, rank_test_sets
from ..errors import CheckpointError
from ..evaluation import RankMetrics, pairwise_distance
from ..evaluation.queries import has_match_in_other_camera
from ..visualization.attention import denormalize, plot_attention
from ..visualization.attention_maps import compute_attention_maps
from ..visualization.cmc import plot_cmc
from ..visualization.curves import plot_training_curves
from ..visualization.retrieval import plot_retrieval, select_queries, top_matches
from .evaluate import load_trained_model

__all__ = ["FigurePaths", "figure_paths", "visualize_checkpoint"]


class FigurePaths(NamedTuple):
    """The PNG files written by :func:`visualize_checkpoint`."""

    curves: Path
    """Loss, learning rate, rank-1 and mAP per epoch."""
    cmc: Path
    """CMC curve of the checkpoint."""
    attention: Path
    """Input, channel-mean attention, keep mask and CBAM spatial attention of the chosen queries."""
    retrieval: Path
    """The chosen queries with their top-ranked gallery images."""


def figure_paths(output_dir: Path) -> FigurePaths:
    """Where :func:`visualize_checkpoint` writes its figures: ``OUTPUT/<field>.png``."""
    return FigurePaths(*(output_dir / f"{name}.png" for name in FigurePaths._fields))


def _load_images(samples: Sequence[ReIDSample], height: int, width: int) -> Tensor:
    transform = build_test_transform(height, width)
    return torch.stack([transform(read_image(sample.path)) for sample in samples])


def _with_final_evaluation(
    history: list[dict[str, Any]], epoch: int, metrics: RankMetrics
) -> list[dict[str, Any]]:
    """The history, with this evaluation added to the checkpoint's epoch when it has none yet."""
    entries = [dict(entry) for entry in history]
    if entries and entries[-1].get("epoch") == epoch and "rank1" not in entries[-1]:
        entries[-1].update(rank1=100 * metrics.rank(1), mAP=100 * metrics.mean_ap)
    return entries


def visualize_checkpoint(
    checkpoint: str | Path,
    output_dir: str | Path,
    *,
    overrides: Overrides | None = None,
    num_queries: int = 6,
    top_k: int = 10,
    seed: int = 0,
    progress: bool = False,
) -> FigurePaths:
    """Write the training curves, CMC, attention and retrieval figures of a checkpoint.

    The model is rebuilt from the checkpoint's config and weights and the query and gallery sets are
    embedded as in evaluation (flip test, metric and re-ranking as configured). The curves are the
    checkpoint's history, with this evaluation's rank-1 and mAP added at the checkpoint's epoch when
    training did not evaluate there (the trainer's final evaluation is not part of the history). The
    queries are drawn with :func:`~stadb_reid.visualization.retrieval.select_queries` among those with
    a correct match in another camera.

    Args:
        checkpoint: A ``checkpoint.pt`` written by :func:`~stadb_reid.engine.train`.
        output_dir: Folder of the PNG files (created if needed).
        overrides: Settings to change from the checkpoint's, e.g.
            ``Overrides.from_flags(data_root=..., device="cpu")`` (see
            :func:`~stadb_reid.commands.evaluate.load_trained_model`).
        num_queries: Queries shown in the attention and retrieval figures.
        top_k: Gallery matches shown per query.
        seed: Seed of the query choice.
        progress: Show progress bars while embedding.

    Returns:
        The paths of the four PNG files.

    Raises:
        CheckpointError: If the checkpoint is missing, unreadable or has no training history.
        ReIDDataError: If the dataset cannot be found or read.
        ValueError: If ``num_queries`` or ``top_k`` is below 1.
    """
    check_positive_int(num_queries, "num_queries")
    check_positive_int(top_k, "top_k")
    checkpoint = Path(checkpoint)
    output_dir = Path(output_dir)
    model, config, state = load_trained_model(checkpoint, overrides)
    if not state.get("history"):
        raise CheckpointError(f"{checkpoint} has no training history to plot")
    torch_device = resolve_device(config.device)
    model.to(torch_device)
    data = dataset_from_config(config.data)

    height, width = config.data.height, config.data.width
    query, gallery = embed_test_sets(model, data, config, torch_device, progress=progress)
    metrics, reranked = rank_test_sets(query, gallery, config)
    (q_features, q_pids, q_camids), (g_features, g_pids, g_camids) = query, gallery

    eligible = has_match_in_other_camera(q_pids, q_camids, g_pids, g_camids)
    chosen = select_queries(q_pids, num_queries, seed=seed, eligible=eligible)
    distances = (
        reranked[chosen]
        if reranked is not None
        else pairwise_distance(q_features[chosen], g_features, config.eval.metric.value)
    )
    matches = top_matches(distances, q_pids[chosen], g_pids, q_camids[chosen], g_camids, top_k=top_k)

    query_images = _load_images([data.query[i] for i in chosen], height, width)
    captions = [f"query {i}\npid {q_pids[i]}, cam {q_camids[i]}" for i in chosen]
    maps = compute_attention_maps(model, query_images.to(torch_device))
    gallery_images = [
        list(denormalize(_load_images([data.gallery[m.gallery_index] for m in ranked], height, width)))
        for ranked in matches
    ]
    history = _with_final_evaluation(state["history"], state["completed_epochs"], metrics)
    paths = figure_paths(output_dir)
    return FigurePaths(
        curves=plot_training_curves(history, paths.curves),
        cmc=plot_cmc(metrics, paths.cmc, title=f"CMC, {config.data.dataset}"),
        attention=plot_attention(query_images, maps, paths.attention, captions=captions),
        retrieval=plot_retrieval(
            list(denormalize(query_images)), matches, gallery_images, paths.retrieval, query_captions=captions
        ),
    )
