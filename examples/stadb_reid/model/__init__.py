"""The STADB network: backbone, heads, ablation variants and the BDB comparator."""

from .backbone import PretrainedWeightsUnavailableError, WeightsFileError, build_backbone
from .batch_drop import BatchDrop
from .stadb import STADBNet, TrainOutput, Variant

__all__ = [
    "BatchDrop",
    "PretrainedWeightsUnavailableError",
    "STADBNet",
    "TrainOutput",
    "Variant",
    "WeightsFileError",
    "build_backbone",
]
