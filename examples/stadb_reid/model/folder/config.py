"""``config.yaml`` of a model folder: what rebuilds the eval-mode network and what feeds it.

The file holds ``format`` (:data:`MODEL_FORMAT`), ``num_classes``, ``embedding_dim``, ``input``
(``height``, ``width`` and the normalisation ``mean`` and ``std``), ``model`` (the run config's
``model`` section) and ``provenance`` (dataset, recipe, metrics, command line and git commit;
informative only, see :func:`~stadb_reid.model.folder.card.run_provenance`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from stadb_layers.checks import check_int

from ...config.schema import IMAGENET_MEAN, IMAGENET_STD, AttentionType, ModelConfig
from ...errors import ConfigError, ModelFolderError
from ..config_checks import check_input_size, check_model_config
from .weights import HasStateDict

__all__ = [
    "MODEL_FORMAT",
    "EmbeddingNetwork",
    "ModelFolderConfig",
    "model_folder_config",
    "network_arguments",
    "trained_model_config",
]

MODEL_FORMAT = "stadb-reid-model/1"


def _entry(data: Mapping[str, Any], key: str, kind: type, path: Path) -> Any:
    value: Any = data
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise ModelFolderError(f"{path} lacks {key}")
        value = value[part]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ModelFolderError(f"{path}: {key} must be of type {kind.__name__}, got {value!r}")
    return value


def _channels(data: Mapping[str, Any], key: str, path: Path) -> tuple[float, ...]:
    values = _entry(data, key, list, path)
    if len(values) != 3 or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        raise ModelFolderError(f"{path}: {key} must be a list of 3 numbers, got {values}")
    if not all(math.isfinite(v) for v in values):
        raise ModelFolderError(f"{path}: {key} must hold finite numbers, got {values}")
    return tuple(float(v) for v in values)


def _refuse_interpolation(value: object, key: str, path: Path) -> None:
    """Refuse ``${...}`` anywhere in ``value``: OmegaConf would resolve it (``oc.env`` reads the env)."""
    if isinstance(value, str) and "${" in value:
        raise ModelFolderError(
            f"{path}: {key} holds the interpolation {value!r}; a model folder's config is never resolved"
        )
    if isinstance(value, Mapping | list):
        for name, item in value.items() if isinstance(value, Mapping) else enumerate(value):
            _refuse_interpolation(item, f"{key}.{name}", path)


@dataclass(frozen=True)
class ModelFolderConfig:
    """The contents of a model folder's ``config.yaml``.

    Attributes:
        num_classes: Training identities (the classifier's size; not part of the embedding).
        embedding_dim: Size of the embedding the network returns in eval mode.
        height: Input height the images are resized to.
        width: Input width.
        mean: Per-channel mean (RGB, [0, 1] scale) subtracted after scaling the pixels to [0, 1].
        std: Per-channel standard deviation the result is divided by.
        model: The run config's ``model`` section, without ``pretrained`` and ``weights``.
        provenance: ``dataset``, ``recipe``, ``metrics``, ``command`` and ``commit``, for the card.

    Examples:
        >>> config = ModelFolderConfig(10, 1536, 384, 128, (0.5,) * 3, (0.25,) * 3, {"variant": "stadb"})
        >>> ModelFolderConfig.from_dict(config.to_dict(), Path("config.yaml")) == config
        True
        >>> config.model_config().variant, config.model_config().alpha  # the defaults fill the rest
        (<Variant.STADB: 'stadb'>, 0.8)
    """

    num_classes: int
    embedding_dim: int
    height: int
    width: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    model: dict[str, Any]
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The nested dict written to ``config.yaml``."""
        return {
            "format": MODEL_FORMAT,
            "num_classes": self.num_classes,
            "embedding_dim": self.embedding_dim,
            "input": {"height": self.height, "width": self.width, "mean": [*self.mean], "std": [*self.std]},
            "model": self.model,
            "provenance": self.provenance,
        }

    @classmethod
    def from_dict(cls, data: object, path: Path) -> ModelFolderConfig:
        """Check the parsed ``config.yaml`` at ``path`` and return its contents.

        Every value is checked before anything is built: the ``model`` section against the training
        config's rules (:mod:`~stadb_reid.model.config_checks`), the sizes, and finite normalisation
        values. No interpolation is resolved: a ``${...}`` in ``num_classes``, ``embedding_dim``,
        ``input`` or ``model`` is refused (``provenance`` is kept as written, for the card).

        Raises:
            ModelFolderError: Another ``format``, a missing entry, one of the wrong type or out of its
                domain, or an interpolation (names ``path`` and the key).
        """
        if not isinstance(data, dict) or data.get("format") != MODEL_FORMAT:
            found = data.get("format") if isinstance(data, dict) else None
            raise ModelFolderError(f"{path} has format {found!r}; this version reads {MODEL_FORMAT!r}")
        for key in ("num_classes", "embedding_dim", "input", "model"):
            _refuse_interpolation(data.get(key), key, path)
        std = _channels(data, "input.std", path)
        if min(std) <= 0:
            raise ModelFolderError(f"{path}: input.std must be positive, got {list(std)}")
        provenance = data.get("provenance") or {}
        if not isinstance(provenance, dict):  # kept literally: the card shows it, nothing resolves it
            raise ModelFolderError(f"{path}: provenance must be a mapping, got {provenance!r}")
        config = cls(
            num_classes=_entry(data, "num_classes", int, path),
            embedding_dim=_entry(data, "embedding_dim", int, path),
            height=_entry(data, "input.height", int, path),
            width=_entry(data, "input.width", int, path),
            mean=_channels(data, "input.mean", path),
            std=std,
            model=_entry(data, "model", dict, path),
            provenance=provenance,
        )
        model = config.model_config(path)
        try:
            for value, key in ((config.num_classes, "num_classes"), (config.embedding_dim, "embedding_dim")):
                check_int(value, key, 1)
            check_input_size(config.height, config.width, ("input.height", "input.width"))
            check_model_config(model)  # the training config's rules
        except (ConfigError, ValueError) as error:
            raise ModelFolderError(f"{path}: {error}") from None
        return config

    def model_config(self, path: Path | None = None) -> ModelConfig:
        """The ``model`` section on the schema's defaults (a folder written before a key existed).

        Raises:
            ModelFolderError: An unknown key or a value of the wrong type (names ``path`` and the key).
        """
        try:
            model = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ModelConfig), self.model))
        except OmegaConfBaseException as error:
            key = f"model.{error.full_key}" if getattr(error, "full_key", None) else "model"
            raise ModelFolderError(f"{path or 'config'}: {key}: {str(error).splitlines()[0]}") from error
        assert isinstance(model, ModelConfig)
        return model


class EmbeddingNetwork(HasStateDict, Protocol):
    """What a model folder needs of a network: its weights and the size of its eval-mode embedding.

    :class:`~stadb_reid.model.STADBNet` is one; the folder's code never imports it, so the network
    can import the folder (:meth:`~stadb_reid.model.STADBNet.from_pretrained`).
    """

    @property
    def embedding_dim(self) -> int:
        """Size of the embedding the network returns in eval mode."""
        ...


def model_folder_config(
    network: EmbeddingNetwork,
    run_config: Mapping[str, Any],
    *,
    num_classes: int,
    mean: Sequence[float],
    std: Sequence[float],
    height: int | None = None,
    width: int | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> ModelFolderConfig:
    """Describe ``network``, trained with ``run_config``, as a model folder's ``config.yaml`` does.

    Args:
        network: The trained network.
        run_config: The run's config as a plain dict (:func:`~stadb_reid.config.config_to_dict`).
        num_classes: Training identities.
        mean: Normalisation mean of the eval transform.
        std: Normalisation standard deviation of the eval transform.
        height: Input height; default: ``run_config["data"]["height"]``.
        width: Input width; default: ``run_config["data"]["width"]``.
        provenance: How the model was made, for the card
            (:func:`~stadb_reid.model.folder.card.run_provenance`).
    """
    data = run_config["data"]
    return ModelFolderConfig(
        num_classes=num_classes,
        embedding_dim=network.embedding_dim,
        height=data["height"] if height is None else height,
        width=data["width"] if width is None else width,
        mean=tuple(float(value) for value in mean),
        std=tuple(float(value) for value in std),
        # The folder's weights replace the initial ones; a local weights path means nothing elsewhere.
        model={k: v for k, v in run_config["model"].items() if k not in ("pretrained", "weights")},
        provenance=dict(provenance or {}),
    )


def network_arguments(model: ModelConfig) -> dict[str, Any]:
    """:class:`~stadb_reid.model.STADBNet`'s keyword arguments for a config's ``model`` section.

    No weights are read or downloaded (``pretrained=False``): a folder's weights replace them all.
    ``model.cbam`` reaches the attention module only when ``model.attention`` is ``cbam``.
    """
    cbam = AttentionType(model.attention) is AttentionType.CBAM
    return {
        "variant": model.variant,
        "attention": model.attention,
        "alpha": model.alpha,
        "rho": model.rho,
        "backbone": model.backbone,
        "pretrained": False,
        "extra_bottleneck": model.extra_bottleneck,
        "eval_attention": model.eval_attention,
        "freeze_bnneck": model.freeze_bnneck,
        "classifier_init": model.classifier_init,
        "attention_kwargs": dataclasses.asdict(model.cbam) if cbam else None,
    }


def trained_model_config(
    network: EmbeddingNetwork,
    run_config: Mapping[str, Any],
    num_classes: int,
    *,
    height: int | None = None,
    width: int | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> ModelFolderConfig:
    """Describe a network this package trained with ``run_config`` (a plain dict), preprocessing included.

    The trainer's test transform (:func:`~stadb_reid.data.build_test_transform`) resizes to the run's
    ``data.height x data.width`` and normalises with :data:`~stadb_reid.config.schema.IMAGENET_MEAN`
    and :data:`~stadb_reid.config.schema.IMAGENET_STD`; the config records exactly that, so
    :class:`~stadb_reid.inference.ReIDExtractor` gives the embeddings ``stadb-reid evaluate`` computes.

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
