"""The STADB network: backbone, heads, ablation variants and the BDB comparator."""

from .backbone import PretrainedWeightsUnavailableError, build_backbone
from .batch_drop import BatchDrop
from .stadb import STADBNet, TrainOutput, Variant

__all__ = [
    "BatchDrop",
    "PretrainedWeightsUnavailableError",
    "STADBNet",
    "TrainOutput",
    "Variant",
    "build_backbone",
]
