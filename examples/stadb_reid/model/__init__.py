"""The STADB network: backbone, heads, ablation variants and the BDB comparator (stadb_layers.BatchDrop)."""

from .backbone import (
    PretrainedWeightsUnavailableError,
    WeightsFileError,
    build_backbone,
    check_backbone_name,
    check_pretrained_reachable,
)
from .heads import DropAttentionBranch, EmbeddingHead
from .stadb import STADBNet, TrainOutput, Variant

__all__ = [
    "DropAttentionBranch",
    "EmbeddingHead",
    "PretrainedWeightsUnavailableError",
    "STADBNet",
    "TrainOutput",
    "Variant",
    "WeightsFileError",
    "build_backbone",
    "check_backbone_name",
    "check_pretrained_reachable",
]
