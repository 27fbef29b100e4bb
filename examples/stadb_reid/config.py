"""Training configuration: typed dataclasses, filled from YAML files and command-line overrides.

OmegaConf merges the YAML files onto the dataclass schema, so a misspelt key or a wrong type in a
config file is an error that names the key, not a silently ignored setting.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .errors import ConfigError

__all__ = [
    "CONFIG_DIR",
    "AmpMode",
    "AttentionType",
    "Choice",
    "Config",
    "ConfigError",
    "DistanceMetric",
    "Variant",
    "config_files_set",
    "flatten_config",
    "load_config",
]

CONFIG_DIR = Path(__file__).parent / "configs"


class Choice(str, Enum):
    """A config value with a fixed set of spellings: compares equal to, and prints as, its value."""

    def __str__(self) -> str:
        return str(self.value)


class Variant(Choice):
    """Which heads run: the ablations of the paper's Table 6, and the BDB comparator."""

    GLOBAL = "global"
    GLOBAL_DROP = "global_drop"
    GLOBAL_ATTENTION = "global_attention"
    STADB = "stadb"
    BDB = "bdb"


class AttentionType(Choice):
    """The attention module of the second head (the paper's Table 8); names of ``create_attention``."""

    CBAM = "cbam"
    SE = "se"
    SRM = "srm"
    TRIPLET = "triplet"


class AmpMode(Choice):
    """Mixed precision: off (fp32), bf16 (CPU and CUDA) or fp16 with loss scaling (CUDA)."""

    OFF = "off"
    BF16 = "bf16"
    FP16 = "fp16"


class DistanceMetric(Choice):
    """Distance between embeddings at evaluation."""

    EUCLIDEAN = "euclidean"
    SQEUCLIDEAN = "sqeuclidean"
    COSINE = "cosine"


@dataclass
class DataConfig:
    """Dataset and input pipeline."""

    dataset: str = "synthetic"
    root: str = "data/synthetic"
    height: int = 384
    width: int = 128
    num_identities: int = 32
    num_instances: int = 4
    num_workers: int = 4
    test_batch_size: int = 128
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelConfig:
    """Network variant and its hyper-parameters (paper values by default)."""

    variant: Variant = Variant.STADB
    attention: AttentionType = AttentionType.CBAM
    alpha: float = 0.8
    rho: float = 0.25
    backbone: str = "resnet50"
    pretrained: bool = True
    weights: str | None = None


@dataclass
class OptimConfig:
    """Adam with the paper's warm-up and step schedule.

    ``lr(epoch) = base_lr * (epoch // warmup_step + 1) * warmup_step / warmup_epochs`` below
    ``warmup_epochs``, then ``base_lr`` times ``gamma`` per milestone passed.
    """

    epochs: int = 600
    base_lr: float = 1e-3
    weight_decay: float = 5e-4
    warmup_epochs: int = 50
    warmup_step: int = 5
    milestones: list[int] = field(default_factory=lambda: [200, 300])
    gamma: float = 0.1
    label_smoothing: float = 0.0


@dataclass
class EvalConfig:
    """Evaluation settings."""

    every: int = 0
    flip: bool = False
    rerank: bool = False
    metric: DistanceMetric = DistanceMetric.EUCLIDEAN


@dataclass
class Config:
    """Everything a training run needs.

    ``amp`` is ``off``, ``bf16`` or ``fp16`` (CUDA only); ``channels_last`` trains in NHWC memory
    format; ``compile`` wraps the training model in ``torch.compile``; ``deterministic`` asks torch
    for deterministic kernels (with the per-image augmentation seeds, a CPU run is then bit-exact
    across restarts and resumes).
    """

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    output_dir: str = "outputs/run"
    device: str = "cpu"
    amp: AmpMode = AmpMode.OFF
    channels_last: bool = False
    compile: bool = False
    deterministic: bool = False
    seed: int = 0


def resolve_config_path(path: str | Path) -> Path:
    """A config path as given, or the name of a bundled config such as ``market1501``."""
    candidate = Path(path)
    if candidate.is_file():
        return candidate
    bundled = CONFIG_DIR / f"{candidate.stem}.yaml"
    if candidate.parent == Path(".") and bundled.is_file():
        return bundled
    available = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
    raise ConfigError(f"config file not found: {path} (bundled configs: {available})")


def load_config(
    files: Sequence[str | Path] | None = None,
    overrides: dict[str, Any] | None = None,
    dotlist: list[str] | None = None,
) -> Config:
    """Merge YAML files (later ones win), then ``overrides``, then ``dotlist`` onto the defaults.

    Args:
        files: Paths of YAML files, or names of bundled configs (``"market1501"``, ``"demo_cpu"``...).
        overrides: Dotted keys to values, e.g. ``{"optim.epochs": 10}``; ``None`` values are skipped.
        dotlist: ``KEY=VALUE`` strings with YAML values, e.g. ``["optim.milestones=[20, 30]"]``.

    Raises:
        ConfigError: For a missing file, an unknown key or a value of the wrong type.

    Examples:
        >>> config = load_config(["market1501"], {"optim.epochs": 3})
        >>> config.data.dataset, config.optim.epochs, config.model.alpha
        ('market1501', 3, 0.8)
    """
    merged = OmegaConf.structured(Config)
    try:
        for file in files or []:
            path = resolve_config_path(file)
            merged = OmegaConf.merge(merged, OmegaConf.load(path))
        for key, value in (overrides or {}).items():
            if value is not None:
                OmegaConf.update(merged, key, value, merge=False)
        merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(dotlist or []))
        config = OmegaConf.to_object(merged)
    except OmegaConfBaseException as error:
        where = f"{error.full_key}: " if getattr(error, "full_key", None) else ""
        raise ConfigError(where + str(error).splitlines()[0]) from error
    assert isinstance(config, Config)
    return config


def config_files_set(files: Sequence[str | Path] | None, key: str) -> bool:
    """Whether any of the YAML ``files`` (paths or bundled names) sets the dotted ``key``.

    Examples:
        >>> config_files_set(["market1501"], "data.dataset"), config_files_set(["bdb"], "data.dataset")
        (True, False)
    """
    try:
        loaded = [OmegaConf.load(resolve_config_path(file)) for file in files or []]
        return any(OmegaConf.select(content, key) is not None for content in loaded)
    except OmegaConfBaseException as error:
        raise ConfigError(str(error).splitlines()[0]) from error


def config_to_dict(config: Config) -> dict[str, Any]:
    """Plain nested dict of a config, for JSON metrics and checkpoints."""
    plain = _without_enums(OmegaConf.to_container(OmegaConf.structured(config)))
    assert isinstance(plain, dict)
    return plain


def _without_enums(value: Any) -> Any:
    # Plain strings, so the dict goes into JSON and into checkpoints read with weights_only=True.
    if isinstance(value, dict):
        return {str(key): _without_enums(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_enums(item) for item in value]
    return value.value if isinstance(value, Enum) else value


def flatten_config(nested: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` to ``{"a.b": 1}``; dict-valued leaves such as ``data.options`` stay whole."""
    flat: dict[str, Any] = {}
    for key, value in nested.items():
        if isinstance(value, dict) and key != "options":
            flat.update(flatten_config(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
