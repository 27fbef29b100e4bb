"""The parts a run is built from, one builder each.

The device, the seeds, the dataset and its loader, the network, the optimiser and the step; the
learning-rate schedule is :func:`~stadb_reid.engine.schedule.optim_schedule`.
"""

import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import cast

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from stadb_layers import RandomBranchSelector

from ..config import Config
from ..config.schema import DataConfig
from ..data import ReIDDataset, build_train_loader, dataset_from_config
from ..data.loaders import TrainLoader
from ..errors import ConfigError
from ..model import STADBNet
from ..model.folder.config import network_arguments
from .distributed import DistributedContext
from .precision import Precision
from .step import TrainStep

__all__ = [
    "build_dataset",
    "build_loader",
    "build_model",
    "build_optimizer",
    "build_step",
    "deterministic_algorithms",
    "resolve_device",
    "seed_everything",
]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """``"cpu"`` or ``"cuda"`` (optionally ``"cuda:N"``), with a clear error when CUDA is missing."""
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ConfigError(f"device must be cpu or cuda, got {name!r}") from error
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device must be cpu or cuda, got {name!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda was requested but torch sees no CUDA GPU; use --device cpu")
    return device


def build_model(config: Config, num_classes: int, *, pretrained: bool | None = None) -> STADBNet:
    """The network described by ``config.model``; ``pretrained`` overrides the config's setting.

    ``model.cbam`` reaches the attention module only when ``model.attention`` is ``cbam``. Train the
    network's :meth:`~stadb_reid.model.STADBNet.trainable_parameters` (``model.freeze_bnneck``).
    """
    model_config = config.model
    return STADBNet(
        num_classes,
        **{
            **network_arguments(model_config),
            "pretrained": model_config.pretrained if pretrained is None else pretrained,
        },
        weights=Path(model_config.weights) if model_config.weights else None,
        seed=config.seed,
    )


def build_dataset(data: DataConfig, context: DistributedContext) -> ReIDDataset:
    """The dataset ``data`` names, on every rank; rank 0 loads it first (it makes a missing synthetic one)."""
    if not context.is_main:
        context.barrier()
    dataset = dataset_from_config(data)
    if context.is_main:
        context.barrier()
    return dataset


def build_loader(config: Config, dataset: ReIDDataset, context: DistributedContext) -> TrainLoader:
    """This rank's P x K batches of ``dataset``'s training images, augmented as ``config.data`` says."""
    data = config.data
    return build_train_loader(
        dataset,
        height=data.height,
        width=data.width,
        num_identities=data.num_identities,
        num_instances=data.num_instances,
        num_workers=data.num_workers,
        seed=config.seed,
        rank=context.rank,
        world_size=context.world_size,
        padding=data.padding,
        erasing_prob=data.erasing_prob,
        cutout_prob=data.cutout_prob,
        cutout_size=data.cutout_size,
        epoch_mode=data.epoch,
    )


def build_optimizer(config: Config, network: STADBNet) -> torch.optim.Adam:
    """Adam over the network's trainable parameters (``model.freeze_bnneck`` leaves the BN-necks out)."""
    optim = config.optim
    return torch.optim.Adam(network.trainable_parameters(), lr=optim.base_lr, weight_decay=optim.weight_decay)


def build_step(
    network: STADBNet,
    optimizer: torch.optim.Optimizer,
    config: Config,
    context: DistributedContext,
    precision: Precision,
) -> TrainStep:
    """The optimisation step on the network as it trains: channels-last, in DDP, compiled, as configured."""
    model: nn.Module = network
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if context.is_distributed:
        # The branch not drawn in a step leaves its parameters without gradients.
        has_random_branches = any(isinstance(m, RandomBranchSelector) for m in network.modules())
        model = DistributedDataParallel(
            model,
            device_ids=[context.device.index] if context.device.type == "cuda" else None,
            find_unused_parameters=has_random_branches,
        )
    if config.compile:
        model = cast(nn.Module, torch.compile(model))
    return TrainStep(
        model,
        optimizer,
        precision=precision,
        context=context,
        channels_last=config.channels_last,
        label_smoothing=config.optim.label_smoothing,
    )


@contextmanager
def deterministic_algorithms(enabled: bool) -> Iterator[None]:
    """Ask torch for deterministic kernels inside the block (if ``enabled``), as it was after."""
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(enabled or previous)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)
