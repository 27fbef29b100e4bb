"""The rules a network's settings obey, one set for a training config and a model folder's ``config.yaml``.

:func:`~stadb_reid.engine.preflight.validate_config` applies them to a run's config before training, and
:meth:`~stadb_reid.model.folder.config.ModelFolderConfig.from_dict` to a model folder (a downloaded,
untrusted file) before anything is built. The schema checks types only; these check values.

Examples:
    >>> from stadb_reid.config.schema import ModelConfig
    >>> check_model_config(ModelConfig(alpha=0.5))
    >>> check_model_config(ModelConfig(alpha=5.0))
    Traceback (most recent call last):
    ...
    stadb_reid.errors.ConfigError: model.alpha must lie in (0.0, 1.0], got 5.0
"""

from __future__ import annotations

import dataclasses

import torch

from stadb_layers import CBAM
from stadb_layers.checks import check_in_interval, check_int

from ..config import Variant
from ..config.schema import ModelConfig
from ..errors import ConfigError
from .backbone import check_backbone_name

__all__ = ["MIN_INPUT_SIDE", "check_input_size", "check_model_config"]

#: Smallest input height and width: the ResNet's stride-16 feature map keeps at least one position.
MIN_INPUT_SIDE = 16


def check_input_size(height: int, width: int, keys: tuple[str, str] = ("data.height", "data.width")) -> None:
    """Raise :class:`ConfigError` naming ``keys[0]`` or ``keys[1]`` unless both are integers >= 16."""
    for value, key in zip((height, width), keys, strict=True):
        try:
            check_int(value, key, MIN_INPUT_SIDE)
        except ValueError as error:
            raise ConfigError(str(error)) from None


def check_model_config(model: ModelConfig, key: str = "model") -> None:
    """Raise :class:`ConfigError`, naming the first key under ``key`` whose value is out of its domain.

    ``alpha`` in (0, 1], ``rho`` in [0, 1] (NaN in neither), ``backbone`` a timm ResNet, every
    ``cbam`` option as :class:`stadb_layers.CBAM` takes it, and ``eval_attention=false`` only with a
    drop branch. ``weights`` (a local file of a training run) is the caller's to check.
    """
    try:
        check_in_interval(model.alpha, f"{key}.alpha", 0.0, 1.0, low_closed=False, high_closed=True)
        check_in_interval(model.rho, f"{key}.rho", 0.0, 1.0, low_closed=True, high_closed=True)
        check_backbone_name(model.backbone, f"{key}.backbone")
    except ValueError as error:
        raise ConfigError(str(error)) from None
    try:  # CBAM checks every option; on the meta device a huge kernel_size allocates nothing
        with torch.device("meta"):
            CBAM(8, **dataclasses.asdict(model.cbam))
    except (ValueError, TypeError) as error:
        raise ConfigError(f"{key}.cbam.{error}") from None
    if not model.eval_attention and model.variant in (Variant.GLOBAL_ATTENTION, Variant.ATTENTION):
        raise ConfigError(
            f"{key}.eval_attention=false needs {key}.variant stadb: {Variant(model.variant).value} has no "
            "drop branch to run at test time instead of the attention"
        )
