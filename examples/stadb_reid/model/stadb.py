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

from stadb_layers import RandomBranchSelector, SelfThresholdDrop, create_attention

from ..config import Variant
from .backbone import build_backbone
from .batch_drop import BatchDrop

__all__ = ["STADBNet", "TrainOutput", "Variant"]

GLOBAL_DIM = 512
BRANCH_DIM = 1024


class TrainOutput(NamedTuple):
    """Per-head triplet features and identity logits of a training forward."""

    features: list[torch.Tensor]
    logits: list[torch.Tensor]


class EmbeddingHead(nn.Module):
    """Reduction to the triplet feature, then BN and the identity classifier."""

    def __init__(self, reduction: nn.Module, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.reduction = reduction
        self.bottleneck = nn.BatchNorm1d(feature_dim)
        self.classifier = nn.Linear(feature_dim, num_classes)
        nn.init.normal_(self.classifier.weight, std=0.001)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """Triplet feature (N, feature_dim) of pooled (N, C) or (N, C, 1, 1) features."""
        feature: torch.Tensor = self.reduction(pooled).flatten(1)
        return feature

    def classify(self, feature: torch.Tensor) -> torch.Tensor:
        """Identity logits of a triplet feature."""
        logits: torch.Tensor = self.classifier(self.bottleneck(feature))
        return logits


def _branch_regulariser(
    variant: Variant, channels: int, attention: str, alpha: float, rho: float, seed: int
) -> nn.Module:
    """The module between the extra Bottleneck and the max pooling of the second head."""
    if variant is Variant.BDB:
        return BatchDrop()
    attention_module = create_attention(attention, channels)
    if variant is Variant.GLOBAL_ATTENTION:
        return attention_module
    if variant is Variant.GLOBAL_DROP:
        branches: list[nn.Module] = [SelfThresholdDrop(alpha), nn.Identity()]
    else:
        branches = [SelfThresholdDrop(alpha), attention_module]
    return RandomBranchSelector(branches, probs=[rho, 1.0 - rho], eval_branch=1, seed=seed)


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
        self.branch: nn.Sequential | None = None
        self.branch_head: EmbeddingHead | None = None
        if self.variant is not Variant.GLOBAL:
            self.branch = nn.Sequential(
                Bottleneck(channels, channels // 4),
                _branch_regulariser(self.variant, channels, attention, alpha, rho, seed),
                nn.AdaptiveMaxPool2d(1),
                nn.Flatten(1),
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
        if self.branch is not None and isinstance(self.branch[1], RandomBranchSelector):
            return self.branch[1]
        return None

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
