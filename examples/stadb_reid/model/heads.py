"""The two heads of :class:`~stadb_reid.model.STADBNet` and the trunk of the second one.

- :class:`EmbeddingHead`: reduction to the triplet feature, then BN and the identity classifier;
- :class:`DropAttentionBranch`: the second head's extra Bottleneck (optional), its regulariser (drop
  and/or attention, see :func:`build_regulariser`), global max pooling and flattening.

:class:`DropAttentionBranch` is an :class:`~torch.nn.Sequential`, so its ``state_dict`` keys stay
``branch.0.*`` (the Bottleneck) and ``branch.1.*`` (the regulariser) inside the network; its properties
name these parts for the code that reads them (logging, the attention figure).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from stadb_layers import BatchDrop, RandomBranchSelector, SelfThresholdDrop, create_attention

from ..config import Variant
from ..config.schema import ClassifierInit

__all__ = ["DropAttentionBranch", "EmbeddingHead", "build_regulariser"]


class EmbeddingHead(nn.Module):
    """Reduction to the triplet feature, then BN and the identity classifier.

    Args:
        reduction: Maps pooled features to the ``feature_dim``-d triplet feature.
        feature_dim: Size of the triplet feature.
        num_classes: Number of training identities.
        classifier_init: ``normal``: weights from N(0, 0.001); ``kaiming``: the STADB authors'
            ``kaiming_normal_(mode="fan_out")``, std sqrt(2 / num_classes). The bias starts at 0.

    Examples:
        >>> head = EmbeddingHead(nn.Linear(8, 4), feature_dim=4, num_classes=3)
        >>> feature = head(torch.randn(2, 8))
        >>> tuple(feature.shape), tuple(head.classify(feature).shape)
        ((2, 4), (2, 3))
    """

    def __init__(
        self,
        reduction: nn.Module,
        feature_dim: int,
        num_classes: int,
        *,
        classifier_init: ClassifierInit | str = ClassifierInit.NORMAL,
    ) -> None:
        super().__init__()
        self.reduction = reduction
        self.bottleneck = nn.BatchNorm1d(feature_dim)
        self.classifier = nn.Linear(feature_dim, num_classes)
        if ClassifierInit(classifier_init) is ClassifierInit.KAIMING:
            nn.init.kaiming_normal_(self.classifier.weight, a=0, mode="fan_out")
        else:
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


def build_regulariser(
    variant: Variant,
    channels: int,
    attention: str,
    alpha: float,
    rho: float,
    seed: int,
    *,
    eval_attention: bool = True,
    attention_kwargs: Mapping[str, Any] | None = None,
) -> nn.Module:
    """The module between the extra Bottleneck and the max pooling of the second head.

    Args:
        variant: Which ablation (any but :attr:`Variant.GLOBAL`, which has no second head).
        channels: Channels of the Bottleneck output.
        attention: Name of the attention module, for :func:`stadb_layers.create_attention`.
        alpha: Threshold of :class:`~stadb_layers.SelfThresholdDrop`.
        rho: Probability of the drop branch per training iteration.
        seed: Seed of the branch selector.
        eval_attention: Run the attention module in eval mode. ``False`` (``stadb`` only) runs the drop
            branch instead, which passes its input through, as the STADB authors' code does.
        attention_kwargs: Further keyword arguments of the attention module.

    Returns:
        :class:`BatchDrop` (``bdb``), the attention module (``global_attention``, ``attention``), or
        a :class:`~stadb_layers.RandomBranchSelector` between SelfThresholdDrop and the attention
        module (``stadb``) or the identity (``global_drop``, ``drop``), running the second branch in
        eval mode (the first with ``eval_attention=False``).

    Raises:
        ValueError: If ``eval_attention`` is ``False`` for ``global_attention`` or ``attention``,
            whose only module is the attention.

    Examples:
        >>> type(build_regulariser(Variant.BDB, 8, "cbam", 0.8, 0.25, 0)).__name__
        'BatchDrop'
    """
    if variant is Variant.BDB:
        return BatchDrop()
    if variant in (Variant.GLOBAL_ATTENTION, Variant.ATTENTION) and not eval_attention:
        raise ValueError(f"eval_attention=False needs the stadb variant: {variant.value} has no drop branch")
    attention_module = create_attention(attention, channels, **(attention_kwargs or {}))
    if variant in (Variant.GLOBAL_ATTENTION, Variant.ATTENTION):
        return attention_module
    if variant in (Variant.GLOBAL_DROP, Variant.DROP):
        branches: list[nn.Module] = [SelfThresholdDrop(alpha), nn.Identity()]
        eval_branch = 1
    else:
        branches = [SelfThresholdDrop(alpha), attention_module]
        # The drop branch is the identity in eval mode: the embedding then skips the attention.
        eval_branch = 1 if eval_attention else 0
    return RandomBranchSelector(branches, probs=[rho, 1.0 - rho], eval_branch=eval_branch, seed=seed)


class DropAttentionBranch(nn.Sequential):
    """Extra Bottleneck -> regulariser -> global max pooling -> flatten: (N, C, h, w) to (N, C).

    Args:
        extra_bottleneck: The second head's own residual block on the backbone output, or ``None`` to
            feed the backbone output to the regulariser (an :class:`~torch.nn.Identity` takes its
            place, so the regulariser's ``state_dict`` keys stay ``1.*``).
        regulariser: Drop and/or attention module, e.g. from :func:`build_regulariser`.

    Examples:
        >>> regulariser = build_regulariser(Variant.STADB, 8, "cbam", alpha=0.8, rho=0.25, seed=0)
        >>> branch = DropAttentionBranch(nn.Identity(), regulariser)
        >>> type(branch.threshold_drop).__name__, type(branch.attention).__name__
        ('SelfThresholdDrop', 'CBAM')
        >>> tuple(branch.eval()(torch.randn(2, 8, 6, 4)).shape)
        (2, 8)
    """

    def __init__(self, extra_bottleneck: nn.Module | None, regulariser: nn.Module) -> None:
        first = nn.Identity() if extra_bottleneck is None else extra_bottleneck
        super().__init__(first, regulariser, nn.AdaptiveMaxPool2d(1), nn.Flatten(1))

    @property
    def extra_bottleneck(self) -> nn.Module:
        """The residual block the second head runs on the backbone output (``state_dict``: ``0.*``).

        An :class:`~torch.nn.Identity` when the branch was built without one.
        """
        return self[0]

    @property
    def regulariser(self) -> nn.Module:
        """The drop and/or attention module after the Bottleneck (``state_dict``: ``1.*``)."""
        return self[1]

    @property
    def selector(self) -> RandomBranchSelector | None:
        """The random choice between drop and attention, if the regulariser is one."""
        regulariser = self.regulariser
        return regulariser if isinstance(regulariser, RandomBranchSelector) else None

    @property
    def threshold_drop(self) -> SelfThresholdDrop | None:
        """The :class:`~stadb_layers.SelfThresholdDrop` of the regulariser, if it has one."""
        return next((part for part in self._regulariser_parts() if isinstance(part, SelfThresholdDrop)), None)

    @property
    def attention(self) -> nn.Module | None:
        """The attention module (CBAM, SE, SRM or triplet attention) of the regulariser, if it has one.

        That is the part that neither drops (SelfThresholdDrop, BatchDrop) nor passes its input through.
        """
        not_attention = (SelfThresholdDrop, BatchDrop, nn.Identity)
        return next((part for part in self._regulariser_parts() if not isinstance(part, not_attention)), None)

    def _regulariser_parts(self) -> tuple[nn.Module, ...]:
        """The selector's branches, or the regulariser alone when it is not a selector."""
        selector = self.selector
        return tuple(selector.branches) if selector is not None else (self.regulariser,)
