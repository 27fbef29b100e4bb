"""The configuration schema: typed dataclasses with their defaults, and the enums of the choice keys.

OmegaConf merges YAML files onto these dataclasses (:mod:`.files`), so a misspelt key or a wrong
type in a config file is an error that names the key, not a silently ignored setting.
"""

import os
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "AmpMode",
    "AttentionType",
    "CBAMConfig",
    "Choice",
    "ClassifierInit",
    "Config",
    "DataConfig",
    "DistanceMetric",
    "EpochMode",
    "EvalConfig",
    "ModelConfig",
    "OptimConfig",
    "Variant",
]


class Choice(str, Enum):
    """A config value with a fixed set of spellings: compares equal to, and prints as, its value."""

    def __str__(self) -> str:
        return str(self.value)


class Variant(Choice):
    """Which heads run: the six rows of the paper's Table 6, and the BDB comparator.

    ``attention`` and ``drop`` have no global head: the second head alone, with the attention
    module, or with SelfThresholdDrop (probability rho) and the identity otherwise.
    """

    ATTENTION = "attention"
    DROP = "drop"
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


def usable_cpus() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_num_workers() -> int:
    """Loader processes by default: the CPUs this process may run on, at most 8."""
    return min(usable_cpus(), 8)


#: The input normalisation of every run, not a setting: the channel means (RGB, [0, 1] scale) of
#: ImageNet, which the pretrained backbones expect. The test transform applies it, and a model folder
#: records it for the programs that feed the network.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
#: The ImageNet channel standard deviations (see :data:`IMAGENET_MEAN`).
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass
class DataConfig:
    """Dataset and input pipeline.

    ``epoch``: ``images`` (every training image about once, ``PKSampler``) or ``identities`` (every
    identity once with K images, ``num_ids // num_identities`` batches, as the STADB authors' code).
    Augmentation after resizing and a random flip: ``padding`` (zero padding and random crop back,
    0 disables it), then on the normalised tensor ``cutout_prob`` / ``cutout_size`` (one square
    filled with the mean colour, ``Cutout``; ``cutout_size: null`` is 1/6 of ``height``, rounded)
    and ``erasing_prob`` (random erasing). The authors' code is ``epoch=identities, padding=0,
    erasing_prob=0, cutout_prob=0.5`` and a 64-pixel Cutout at 384 x 128 (the recipes' ``null``).
    ``num_workers`` defaults to the CPUs this process may use, at most 8.
    """

    dataset: str = "synthetic"
    root: str = "data/synthetic"
    height: int = 384
    width: int = 128
    num_identities: int = 32
    num_instances: int = 4
    num_workers: int = field(default_factory=default_num_workers)
    test_batch_size: int = 128
    options: dict[str, Any] = field(default_factory=dict)
    epoch: EpochMode = EpochMode.IMAGES
    padding: int = 10
    erasing_prob: float = 0.5
    cutout_prob: float = 0.0
    cutout_size: int | None = 64


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

    Below epoch ``warmup_epochs`` (counted from 1) the rate starts at ``base_lr * warmup_step /
    warmup_epochs`` and rises by as much at every multiple of ``warmup_step`` after epoch 1, never
    above ``base_lr``; then it is ``base_lr`` times ``gamma`` per milestone passed
    (:func:`stadb_reid.engine.schedule.learning_rate`; ``stadb-reid info`` prints it).
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
