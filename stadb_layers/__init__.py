"""Drop-in layers for STADB: self-thresholding drop, attention, branch selection and triplet loss.

``BatchDrop``, the drop layer of BDB (the paper's comparator), sits beside ``SelfThresholdDrop``.

Reference implementation of "STADB: A Self-Thresholding Attention Guided ADB Network for Person
Re-identification" (Jiang, Wang, Wang, Zheng).
"""

from importlib.metadata import PackageNotFoundError, version

from .batch_drop import BatchDrop, batch_drop
from .branch_selector import RandomBranchSelector
from .cbam import CBAM
from .create_attention import create_attention
from .se import SE
from .srm import SRM
from .threshold_drop import SelfThresholdDrop, self_threshold_drop
from .triplet_attention import TripletAttention
from .triplet_loss import SoftMarginBatchHardTriplet, soft_margin_batch_hard_triplet

try:
    __version__ = version("stadb-layers")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

__all__ = [
    "CBAM",
    "SE",
    "SRM",
    "BatchDrop",
    "RandomBranchSelector",
    "SelfThresholdDrop",
    "SoftMarginBatchHardTriplet",
    "TripletAttention",
    "batch_drop",
    "create_attention",
    "self_threshold_drop",
    "soft_margin_batch_hard_triplet",
]
