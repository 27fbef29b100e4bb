"""Training configuration: typed dataclasses, filled from YAML files and command-line overrides.

OmegaConf merges the YAML files onto the dataclass schema, so a misspelt key or a wrong type in a
config file is an error that names the key, not a silently ignored setting.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .errors import ConfigError

__all__ = [
    "CONFIG_DIR",
    "DEFAULT_RECIPE",
    "RECIPE_DIR",
    "AmpMode",
    "AttentionType",
    "CBAMConfig",
    "Choice",
    "ClassifierInit",
    "Config",
    "ConfigError",
    "DistanceMetric",
    "EpochMode",
    "Variant",
    "available_recipes",
    "bundled_configs",
    "config_files_set",
    "flatten_config",
    "load_config",
]

CONFIG_DIR = Path(__file__).parent / "configs"
#: Where ``--recipe NAME`` finds ``NAME.yaml``: the settings every run starts from.
RECIPE_DIR = CONFIG_DIR / "recipes"
#: The recipe of a command line without ``--recipe``: the paper, the authors' code where it is silent.
DEFAULT_RECIPE = "paper"
# Folders searched, in order, for a bare ``--config NAME``: the dataset configs, then the ablations.
_CONFIG_SEARCH_PATH = (CONFIG_DIR, CONFIG_DIR / "ablations")


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


class ClassifierInit(Choice):
    """Initial weights of the identity classifiers: N(0, 0.001), or the STADB authors' Kaiming normal."""

    NORMAL = "normal"
    KAIMING = "kaiming"


class EpochMode(Choice):
    """What a training epoch covers: every image once, or every identity once (the STADB authors' code)."""

    IMAGES = "images"
    IDENTITIES = "identities"


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
    """Dataset and input pipeline.

    ``epoch``: ``images`` (every training image about once, ``PKSampler``) or ``identities`` (every
    identity once with K images, ``num_ids // num_identities`` batches, as the STADB authors' code).
    Augmentation after resizing and a random flip: ``padding`` (zero padding and random crop back,
    0 disables it), then on the normalised tensor ``cutout_prob`` / ``cutout_size`` (one square
    filled with the mean colour, ``Cutout``) and ``erasing_prob`` (random erasing). The authors' code
    is ``epoch=identities, padding=0, erasing_prob=0, cutout_prob=0.5, cutout_size=64``.
    """

    dataset: str = "synthetic"
    root: str = "data/synthetic"
    height: int = 384
    width: int = 128
    num_identities: int = 32
    num_instances: int = 4
    num_workers: int = 4
    test_batch_size: int = 128
    options: dict[str, Any] = field(default_factory=dict)
    epoch: EpochMode = EpochMode.IMAGES
    padding: int = 10
    erasing_prob: float = 0.5
    cutout_prob: float = 0.0
    cutout_size: int = 64


@dataclass
class CBAMConfig:
    """Keyword arguments of ``stadb_layers.CBAM``, used when ``model.attention`` is ``cbam``.

    The defaults are the CBAM paper's module; the STADB authors' code uses ``reduction=4``,
    ``kernel_size=3``, ``spatial_bias=True``, ``spatial_norm=False`` and ``pool_order="avg_max"``.
    ``pool_order`` is ``max_mean`` or ``avg_max``; ``gates`` is ``channel_spatial``, ``channel`` or
    ``spatial``.
    """

    reduction: int = 16
    kernel_size: int = 7
    spatial_bias: bool = False
    spatial_norm: bool = True
    pool_order: str = "max_mean"
    gates: str = "channel_spatial"


@dataclass
class ModelConfig:
    """Network variant and its hyper-parameters (paper values by default).

    ``backbone`` is a timm ResNet name, optionally with a weight tag (``resnet50.tv_in1k``: torchvision's
    ImageNet weights, where the STADB authors start; plain ``resnet50`` is timm's default tag). The other
    options reproduce the STADB authors' code where it departs from the paper:
    ``extra_bottleneck=false`` leaves out the second head's extra Bottleneck (built but not called
    there); ``eval_attention=false`` skips the attention module at test time (its drop module passes
    its input through in eval mode); ``freeze_bnneck=true`` keeps the BatchNorm before each classifier
    at its initial weight 1 and bias 0 (left out of the optimiser); ``classifier_init=kaiming``
    initialises the classifiers with Kaiming normal (fan_out) weights.
    """

    variant: Variant = Variant.STADB
    attention: AttentionType = AttentionType.CBAM
    alpha: float = 0.8
    rho: float = 0.25
    backbone: str = "resnet50"
    pretrained: bool = True
    weights: str | None = None
    extra_bottleneck: bool = True
    eval_attention: bool = True
    freeze_bnneck: bool = False
    classifier_init: ClassifierInit = ClassifierInit.NORMAL
    cbam: CBAMConfig = field(default_factory=CBAMConfig)


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
    """Evaluation settings.

    ``every``: epochs between interim test evaluations (0: the final one only); with it, the run also
    reports the best-on-test epoch (selected by rank-1 on the test set, so not a held-out estimate).
    ``flip``: average the raw embeddings of each image and its mirror. ``ap_at``: also report the mAP
    truncated at this rank, ``AP@N = (1/P) * sum over hits k with rank r_k <= N of k / r_k`` (P: all
    correct matches), as the STADB authors' code does; 0 reports the standard full mAP only.
    """

    every: int = 0
    flip: bool = False
    rerank: bool = False
    metric: DistanceMetric = DistanceMetric.EUCLIDEAN
    ap_at: int = 0


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


def bundled_configs() -> list[str]:
    """Names accepted by ``--config``: the dataset configs, then the ablation overlays, each sorted.

    Examples:
        >>> names = bundled_configs()
        >>> names.index("market1501") < names.index("bdb"), "paper" in names
        (True, False)
    """
    return [name for folder in _CONFIG_SEARCH_PATH for name in sorted(p.stem for p in folder.glob("*.yaml"))]


def resolve_config_path(path: str | Path) -> Path:
    """A config path as given, or the name of a bundled config such as ``market1501`` or ``bdb``.

    A bare name is looked up in ``configs/`` (datasets and the demo), then ``configs/ablations/``.
    """
    candidate = Path(path)
    if candidate.is_file():
        return candidate
    if candidate.parent == Path("."):
        name = candidate.name.removesuffix(".yaml")  # not .stem: "rho_0.5" names rho_0.5.yaml
        for folder in _CONFIG_SEARCH_PATH:
            if (folder / f"{name}.yaml").is_file():
                return folder / f"{name}.yaml"
    raise ConfigError(f"config file not found: {path} (bundled configs: {', '.join(bundled_configs())})")


def available_recipes() -> list[str]:
    """Names accepted by ``--recipe``.

    Examples:
        >>> available_recipes()
        ['defaults', 'paper', 'reference']
    """
    return sorted(path.stem for path in RECIPE_DIR.glob("*.yaml"))


def _recipe_layers(name: str) -> list[Any]:
    """The YAML contents of recipe ``name``, the recipe it ``extends`` (if any) first."""
    path = RECIPE_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown recipe {name!r}: expected {' or '.join(available_recipes())}")
    content = OmegaConf.load(path)
    if not isinstance(content, DictConfig):
        raise ConfigError(f"recipe {path} must be a mapping of config keys")
    # ``extends: reference`` keeps each value in one file: the paper recipe lists only where the
    # paper's text departs from the authors' code.
    base = content.pop("extends", None)
    return [*(_recipe_layers(str(base)) if base is not None else []), content]


def load_config(
    files: Sequence[str | Path] | None = None,
    overrides: dict[str, Any] | None = None,
    dotlist: list[str] | None = None,
    *,
    recipe: str | None = None,
) -> Config:
    """Merge a recipe, YAML files (later ones win), ``overrides``, then ``dotlist`` onto the defaults.

    Args:
        files: Paths of YAML files, or names of bundled configs (``"market1501"``, ``"demo_cpu"``...).
        overrides: Dotted keys to values, e.g. ``{"optim.epochs": 10}``; ``None`` values are skipped.
        dotlist: ``KEY=VALUE`` strings with YAML values, e.g. ``["optim.milestones=[20, 30]"]``.
        recipe: A bundled recipe (``"paper"``, ``"reference"``, see :func:`available_recipes`)
            merged first, under the files; ``None`` for the schema's defaults alone (the command
            line's default is :data:`DEFAULT_RECIPE`).

    Raises:
        ConfigError: For a missing file or recipe, an unknown key or a value of the wrong type.

    Examples:
        >>> config = load_config(["market1501"], {"optim.epochs": 3})
        >>> config.data.dataset, config.optim.epochs, config.model.alpha
        ('market1501', 3, 0.8)
    """
    merged = OmegaConf.structured(Config)
    try:
        layers = _recipe_layers(recipe) if recipe is not None else []
        for layer in [*layers, *(OmegaConf.load(resolve_config_path(file)) for file in files or [])]:
            merged = OmegaConf.merge(merged, layer)
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
