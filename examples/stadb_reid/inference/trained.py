"""The model folder of a network trained by this package: its test transform is the preprocessing.

The trainer resizes to the run's ``data.height x data.width`` and normalises with the ImageNet
statistics (:func:`~stadb_reid.data.build_test_transform`); a folder written here records exactly
that, so :class:`~stadb_reid.inference.ReIDExtractor` gives the embeddings ``stadb-reid evaluate``
computes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..data import IMAGENET_MEAN, IMAGENET_STD
from ..model import STADBNet
from ..model.card import run_provenance
from ..model.folder import save_model_folder
from ..model.folder_config import ModelFolderConfig, model_folder_config

__all__ = ["save_trained_model", "trained_model_config"]


def trained_model_config(
    network: STADBNet,
    run_config: Mapping[str, Any],
    num_classes: int,
    *,
    height: int | None = None,
    width: int | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> ModelFolderConfig:
    """Describe a network trained with ``run_config`` (a plain dict) as its model folder's config does.

    Args:
        network: The trained network.
        run_config: The run's config (:func:`~stadb_reid.config.config_to_dict`).
        num_classes: Training identities.
        height: Input height; default: the run's ``data.height``.
        width: Input width; default: the run's ``data.width``.
        provenance: For the card; default: none.
    """
    return model_folder_config(
        network,
        run_config,
        num_classes=num_classes,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        height=height,
        width=width,
        provenance=provenance,
    )


def save_trained_model(
    folder: Path,
    network: STADBNet,
    run_config: Mapping[str, Any],
    num_classes: int,
    *,
    metrics: Mapping[str, Any] | None = None,
    height: int | None = None,
    width: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the model folder of a trained network, its card naming this process's command line.

    Args:
        folder: The folder to write (see :func:`~stadb_reid.model.folder.save_model_folder`).
        network: The trained network.
        run_config: The run's config as a plain dict.
        num_classes: Training identities.
        metrics: The run's results, for the card.
        height: Input height; default: the run's ``data.height``.
        width: Input width; default: the run's ``data.width``.
        overwrite: Replace the folder's files if they exist.

    Returns:
        ``folder``.

    Raises:
        ModelFolderError: A file exists and ``overwrite`` is not set, or writing fails.
    """
    provenance = run_provenance(run_config, metrics)
    config = trained_model_config(
        network, run_config, num_classes, height=height, width=width, provenance=provenance
    )
    return save_model_folder(folder, network, config, overwrite=overwrite)
