"""The STADB re-identification network and its ablations.

From "STADB: A Self-Thresholding Attention Guided ADB Network for Person Re-identification"
(Jiang, Wang, Wang, Zheng), sections 3 and 4.2. Two heads share a ResNet-50 with last stride 1:

- global: GAP -> 1x1 conv 2048->512 + BN + ReLU (triplet feature) -> BN -> classifier;
- drop/attention: Bottleneck -> {SelfThresholdDrop with probability rho, attention module otherwise}
  -> GMP -> Linear 2048->1024 + BN + ReLU (triplet feature) -> BN -> classifier.

At test time the embedding is the concatenation of the two triplet features (512 + 1024 = 1536-d),
with the attention module running in the second head.
"""

from pathlib import Path
from typing import NamedTuple

import torch
from timm.models.resnet import Bottleneck, ResNet
from torch import nn

from stadb_layers import RandomBranchSelector

from ..config import Variant
from .backbone import build_backbone
from .heads import DropAttentionBranch, EmbeddingHead, build_regulariser

__all__ = ["STADBNet", "TrainOutput", "Variant"]

GLOBAL_DIM = 512
BRANCH_DIM = 1024


class TrainOutput(NamedTuple):
    """Per-head triplet features and identity logits of a training forward."""

    features: list[torch.Tensor]
    logits: list[torch.Tensor]


class STADBNet(nn.Module):
    """ResNet-50 STADB network: a global head and a drop/attention head.

    Args:
        num_classes: Number of training identities.
        variant: Which heads run (see :class:`Variant`); ``"stadb"`` is the full model.
        attention: Attention module of the second head: ``"cbam"`` (paper), ``"se"``, ``"srm"`` or
            ``"triplet"`` (Table 8).
        alpha: Threshold of :class:`~stadb_layers.SelfThresholdDrop` (Table 10).
        rho: Probability of the drop branch per iteration (Table 11).
        backbone: timm ResNet name.
        pretrained: Load ImageNet weights through timm.
        weights: Local backbone weights file, instead of downloading.
        seed: Seed of the branch selector.

    Shape:
        - Input: (N, 3, H, W) normalised images.
        - Training output: :class:`TrainOutput` with one (feature, logits) pair per head.
        - Eval output: (N, 1536) embedding (N, 512 for the global-only variant).

    Attributes:
        backbone: The timm ResNet, last stride 1.
        global_head: The global head's :class:`~stadb_reid.model.heads.EmbeddingHead`.
        branch: The second head's :class:`~stadb_reid.model.heads.DropAttentionBranch` (its parts by
            name: ``extra_bottleneck``, ``regulariser``, ``selector``, ``threshold_drop``,
            ``attention``), or ``None`` for the ``global`` variant.
        branch_head: The second head's :class:`~stadb_reid.model.heads.EmbeddingHead`, or ``None``.

    Examples:
        >>> model = STADBNet(10, backbone="resnet18").eval()
        >>> tuple(model(torch.randn(1, 3, 64, 32)).shape), type(model.branch.attention).__name__
        ((1, 1536), 'CBAM')
    """

    def __init__(
        self,
        num_classes: int,
        *,
        variant: Variant | str = Variant.STADB,
        attention: str = "cbam",
        alpha: float = 0.8,
        rho: float = 0.25,
        backbone: str = "resnet50",
        pretrained: bool = False,
        weights: Path | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.variant = Variant(variant)
        self.backbone: ResNet = build_backbone(backbone, pretrained=pretrained, weights=weights)
        channels = int(self.backbone.num_features)
        global_reduction = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, GLOBAL_DIM, 1, bias=False),
            nn.BatchNorm2d(GLOBAL_DIM),
            nn.ReLU(inplace=True),
        )
        self.global_head = EmbeddingHead(global_reduction, GLOBAL_DIM, num_classes)
        self.branch: DropAttentionBranch | None = None
        self.branch_head: EmbeddingHead | None = None
        if self.variant is not Variant.GLOBAL:
            self.branch = DropAttentionBranch(
                Bottleneck(channels, channels // 4),
                build_regulariser(self.variant, channels, attention, alpha, rho, seed),
            )
            branch_reduction = nn.Sequential(
                nn.Linear(channels, BRANCH_DIM, bias=False), nn.BatchNorm1d(BRANCH_DIM), nn.ReLU(inplace=True)
            )
            self.branch_head = EmbeddingHead(branch_reduction, BRANCH_DIM, num_classes)

    @property
    def embedding_dim(self) -> int:
        """Size of the test embedding."""
        return GLOBAL_DIM + (BRANCH_DIM if self.branch_head is not None else 0)

    @property
    def selector(self) -> RandomBranchSelector | None:
        """The branch selector of the second head, if this variant has one (for logging)."""
        return self.branch.selector if self.branch is not None else None

    def forward(self, images: torch.Tensor) -> TrainOutput | torch.Tensor:
        """Per-head features and logits in training mode; the concatenated embedding in eval mode."""
        feature_map = self.backbone(images)
        heads = [self.global_head]
        features = [self.global_head(feature_map)]
        if self.branch is not None and self.branch_head is not None:
            heads.append(self.branch_head)
            features.append(self.branch_head(self.branch(feature_map)))
        if self.training:
            return TrainOutput(features, [head.classify(f) for head, f in zip(heads, features, strict=True)])
        return torch.cat(features, dim=1)
