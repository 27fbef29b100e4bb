"""The parts a run is built from: the device, the seeds and the network of a config."""

import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from ..config import Config
from ..errors import ConfigError
from ..model import STADBNet
from ..model.folder_config import network_arguments

__all__ = ["build_model", "deterministic_algorithms", "resolve_device", "seed_everything"]


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


@contextmanager
def deterministic_algorithms(enabled: bool) -> Iterator[None]:
    """Ask torch for deterministic kernels inside the block (if ``enabled``), as it was after."""
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(enabled or previous)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)
