"""The STADB re-identification network and its ablations.

From "STADB: A Self-Thresholding Attention Guided ADB Network for Person Re-identification"
(Jiang, Wang, Wang, Zheng), sections 3 and 4.2. Two heads share a ResNet-50 with last stride 1:

- global: GAP -> 1x1 conv 2048->512 + BN + ReLU (triplet feature) -> BN -> classifier;
- drop/attention: Bottleneck -> {SelfThresholdDrop with probability rho, attention module otherwise}
  -> GMP -> Linear 2048->1024 + BN + ReLU (triplet feature) -> BN -> classifier.

At test time the embedding is the concatenation of the two triplet features (512 + 1024 = 1536-d),
with the attention module running in the second head (unless ``eval_attention`` is off, as in the
authors' code).
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch
from timm.models.resnet import Bottleneck, ResNet
from torch import nn

from stadb_layers import RandomBranchSelector

from ..config import Variant
from ..config.schema import ClassifierInit
from .backbone import build_backbone
from .folder.files import load_model_folder
from .heads import DropAttentionBranch, EmbeddingHead, build_regulariser

__all__ = ["STADBNet", "TrainOutput", "Variant"]

GLOBAL_DIM = 512
BRANCH_DIM = 1024


class TrainOutput(NamedTuple):
    """Per-head triplet features and identity logits of a training forward."""

    features: list[torch.Tensor]
    logits: list[torch.Tensor]


class STADBNet(nn.Module):
    """ResNet-50 STADB network: a global head and a drop/attention head (one of them in some variants).

    Args:
        num_classes: Number of training identities.
        variant: Which heads run (see :class:`Variant`); ``"stadb"`` is the full model.
        attention: Attention module of the second head: ``"cbam"`` (paper), ``"se"``, ``"srm"`` or
            ``"triplet"`` (Table 8).
        alpha: Threshold of :class:`~stadb_layers.SelfThresholdDrop` (Table 11).
        rho: Probability of the drop branch per iteration (Table 10).
        backbone: timm ResNet name, optionally with a weight tag such as ``"resnet50.tv_in1k"``.
        pretrained: Load ImageNet weights through timm.
        weights: Local backbone weights file, instead of downloading.
        seed: Seed of the branch selector.
        extra_bottleneck: Give the second head its own Bottleneck before the regulariser; without
            it (the authors' code) the regulariser takes the backbone output.
        eval_attention: Run the attention module at test time (``stadb``); without it (the authors'
            code) the second head's embedding skips the attention.
        freeze_bnneck: Keep the BatchNorm before each classifier at weight 1 and bias 0 (the
            authors' code leaves it out of the optimiser): its parameters stop requiring gradients
            and :meth:`trainable_parameters` leaves them out. Its running statistics still update.
        classifier_init: Initial classifier weights, ``"normal"`` or ``"kaiming"`` (the authors').
        attention_kwargs: Further keyword arguments of the attention module, e.g. ``reduction``.

    Shape:
        - Input: (N, 3, H, W) normalised images.
        - Training output: :class:`TrainOutput` with one (feature, logits) pair per head.
        - Eval output: (N, 1536) embedding (N, 512 for the global-only variant, N, 1024 for the
          variants without a global head).

    Attributes:
        backbone: The timm ResNet, last stride 1.
        global_head: The global head's :class:`~stadb_reid.model.heads.EmbeddingHead`, or ``None``
            for the ``attention`` and ``drop`` variants.
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
        extra_bottleneck: bool = True,
        eval_attention: bool = True,
        freeze_bnneck: bool = False,
        classifier_init: ClassifierInit | str = ClassifierInit.NORMAL,
        attention_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.variant = Variant(variant)
        self.backbone: ResNet = build_backbone(backbone, pretrained=pretrained, weights=weights)
        channels = int(self.backbone.num_features)
        self.global_head: EmbeddingHead | None = None
        if self.variant not in (Variant.ATTENTION, Variant.DROP):
            global_reduction = nn.Sequential(
                nn.AdaptiveAvgPool2d(1),
                nn.Conv2d(channels, GLOBAL_DIM, 1, bias=False),
                nn.BatchNorm2d(GLOBAL_DIM),
                nn.ReLU(inplace=True),
            )
            self.global_head = EmbeddingHead(
                global_reduction, GLOBAL_DIM, num_classes, classifier_init=classifier_init
            )
        self.branch: DropAttentionBranch | None = None
        self.branch_head: EmbeddingHead | None = None
        if self.variant is not Variant.GLOBAL:
            regulariser = build_regulariser(
                self.variant,
                channels,
                attention,
                alpha,
                rho,
                seed,
                eval_attention=eval_attention,
                attention_kwargs=attention_kwargs,
            )
            self.branch = DropAttentionBranch(
                Bottleneck(channels, channels // 4) if extra_bottleneck else None, regulariser
            )
            branch_reduction = nn.Sequential(
                nn.Linear(channels, BRANCH_DIM, bias=False), nn.BatchNorm1d(BRANCH_DIM), nn.ReLU(inplace=True)
            )
            self.branch_head = EmbeddingHead(
                branch_reduction, BRANCH_DIM, num_classes, classifier_init=classifier_init
            )
        if freeze_bnneck:
            for head in self.heads:
                head.bottleneck.requires_grad_(False)

    @property
    def heads(self) -> list[EmbeddingHead]:
        """The embedding heads, global first."""
        return [head for head in (self.global_head, self.branch_head) if head is not None]

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters the optimiser updates: all but the frozen ones (see ``freeze_bnneck``)."""
        return [parameter for parameter in self.parameters() if parameter.requires_grad]

    @property
    def embedding_dim(self) -> int:
        """Size of the test embedding."""
        return (GLOBAL_DIM if self.global_head is not None else 0) + (
            BRANCH_DIM if self.branch_head is not None else 0
        )

    @property
    def selector(self) -> RandomBranchSelector | None:
        """The branch selector of the second head, if this variant has one (for logging)."""
        return self.branch.selector if self.branch is not None else None

    @classmethod
    def from_pretrained(
        cls, path_or_repo_id: str | Path, *, device: str | torch.device | None = None
    ) -> "STADBNet":
        """The network of a model folder (``stadb-reid export --format folder``), in eval mode.

        Only ``config.yaml`` (safe YAML) and ``model.safetensors`` are read: no pickle, no code from the
        folder. A ``str`` that names no local path but looks like ``owner/name`` is downloaded as a
        Hugging Face Hub repo when ``huggingface_hub`` is installed.

        Args:
            path_or_repo_id: The model folder, or a Hub repo id.
            device: Where to put the network; default: the CPU.

        Raises:
            ModelFolderError: The folder is missing, lacks a file, its config does not parse, or its
                weights do not fit the network of its config (names the first mismatching tensor); or
                the Hub repo cannot be downloaded (one line naming the repo id).
        """
        return load_model_folder(cls, path_or_repo_id, device=device)[0]

    def forward(self, images: torch.Tensor) -> TrainOutput | torch.Tensor:
        """Per-head features and logits in training mode; the concatenated embedding in eval mode."""
        feature_map = self.backbone(images)
        features = [self.global_head(feature_map)] if self.global_head is not None else []
        if self.branch is not None and self.branch_head is not None:
            features.append(self.branch_head(self.branch(feature_map)))
        if self.training:
            return TrainOutput(
                features, [head.classify(f) for head, f in zip(self.heads, features, strict=True)]
            )
        return torch.cat(features, dim=1)
