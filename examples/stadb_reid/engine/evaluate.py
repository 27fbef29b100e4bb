"""Evaluation of a model on a dataset's query and gallery sets."""

from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn

from ..config import Config, load_config
from ..data import ReIDDataset, build_dataset, build_test_loaders
from ..evaluation import (
    Metric,
    RankMetrics,
    evaluate_from_features,
    extract_features,
    k_reciprocal_rerank,
    pairwise_distance,
    rank_metrics,
)
from ..model import STADBNet
from .checkpoint import load_checkpoint

__all__ = [
    "Embedded",
    "embed_test_sets",
    "evaluate_checkpoint",
    "evaluate_model",
    "evaluate_untrained",
    "load_trained_model",
    "rank_test_sets",
]


#: Embeddings of a test split with their identities and cameras, as ``extract_features`` returns them.
Embedded = tuple[Tensor, npt.NDArray[np.int64], npt.NDArray[np.int64]]


def embed_test_sets(
    model: nn.Module, dataset: ReIDDataset, config: Config, device: torch.device, *, progress: bool = True
) -> tuple[Embedded, Embedded]:
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
    query: Embedded, gallery: Embedded, config: Config
) -> tuple[RankMetrics, npt.NDArray[np.float32] | None]:
    """Rank the gallery for every query as ``config.eval`` says (metric, re-ranking).

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
            metric=cast(Metric, config.eval.metric),
            max_rank=max_rank,
        )
        return metrics, None
    # Squared Euclidean, as in Zhong et al.'s code, so re-ranked figures compare with published ones.
    distances = k_reciprocal_rerank(
        pairwise_distance(q_features, g_features, metric="sqeuclidean").numpy(),
        pairwise_distance(q_features, q_features, metric="sqeuclidean").numpy(),
        pairwise_distance(g_features, g_features, metric="sqeuclidean").numpy(),
    )
    return rank_metrics(distances, q_pids, g_pids, q_camids, g_camids, max_rank=max_rank), distances


def evaluate_model(
    model: nn.Module, dataset: ReIDDataset, config: Config, device: torch.device, *, progress: bool = True
) -> dict[str, float]:
    """Embed the query and gallery sets and return rank-1/5/10, mAP and mINP in percent."""
    metrics, _ = rank_test_sets(*embed_test_sets(model, dataset, config, device, progress=progress), config)
    # A gallery shorter than 10 images has a shorter CMC; its last entry is then 100%.
    rank = {n: 100 * metrics.rank(min(n, len(metrics.cmc))) for n in (1, 5, 10)}
    return {
        "rank1": rank[1],
        "rank5": rank[5],
        "rank10": rank[10],
        "mAP": 100 * metrics.mean_ap,
        "mINP": 100 * metrics.mean_inp,
    }


def load_trained_model(
    checkpoint_path: Path, overrides: dict[str, Any] | None = None
) -> tuple[STADBNet, Config, dict[str, Any]]:
    """Rebuild the model stored in a checkpoint (on the CPU, in eval mode) and its config.

    No backbone weights are downloaded or read: the checkpoint's state dict replaces them all.

    Args:
        checkpoint_path: A ``checkpoint.pt`` written by :func:`~stadb_reid.engine.train`.
        overrides: Dotted config keys to change, e.g. ``{"data.root": ...}``; ``None`` values are
            skipped. Naming another dataset drops the checkpoint's ``data.options``, which belong to
            its own dataset.

    Returns:
        ``(model, config, checkpoint state)``.

    Raises:
        CheckpointError: The file is missing, damaged or not a stadb-reid checkpoint (names the path).
    """
    from .trainer import build_model

    state = load_checkpoint(checkpoint_path)
    overrides = dict(overrides or {})
    dataset = overrides.get("data.dataset")
    if dataset is not None and dataset != state["config"]["data"]["dataset"]:
        overrides["data.options"] = {}
    config = load_config([], {**flatten(state["config"]), **overrides})
    config.model.weights = None  # a local weights file used for training need not exist here
    model = build_model(config, state["num_classes"], pretrained=False)
    model.load_state_dict(state["model"])
    return model.eval(), config, state


def evaluate_checkpoint(
    checkpoint_path: Path, overrides: dict[str, Any], *, progress: bool = True
) -> dict[str, float]:
    """Rebuild the model stored in a checkpoint, load its weights and evaluate it.

    Args:
        checkpoint_path: A ``checkpoint.pt`` written by :func:`~stadb_reid.engine.train`.
        overrides: Dotted config keys to change (see :func:`load_trained_model`).
        progress: Show progress bars.
    """
    from .trainer import resolve_device

    model, config, _ = load_trained_model(checkpoint_path, overrides)
    device = resolve_device(config.device)
    dataset = build_dataset(config.data.dataset, config.data.root, **config.data.options)
    return evaluate_model(model.to(device), dataset, config, device, progress=progress)


def evaluate_untrained(
    config: Config, *, dataset: ReIDDataset | None = None, progress: bool = True
) -> dict[str, float]:
    """Evaluate the network ``config`` describes as initialised (seeded by ``config.seed``), untrained.

    This is the baseline a training run has to beat: on a dataset where it already scores well, the
    scores of a trained network say little.
    """
    from .trainer import build_model, resolve_device, seed_everything

    device = resolve_device(config.device)
    if dataset is None:
        dataset = build_dataset(config.data.dataset, config.data.root, **config.data.options)
    seed_everything(config.seed)
    model = build_model(config, dataset.num_train_pids).to(device)
    return evaluate_model(model, dataset, config, device, progress=progress)


def flatten(nested: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` to ``{"a.b": 1}``; dict-valued leaves such as ``data.options`` stay whole."""
    flat: dict[str, Any] = {}
    for key, value in nested.items():
        if isinstance(value, dict) and key != "options":
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
