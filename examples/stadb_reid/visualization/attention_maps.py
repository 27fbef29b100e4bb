r"""The attention maps of the second head, computed for the attention figure (the paper's Figure 3).

For an image batch the maps are computed, in eval mode, on the output :math:`F` of the second head's
extra Bottleneck, i.e. the input of its regulariser (the SelfThresholdDrop / CBAM branch selector):

* the channel-mean attention :math:`A = \frac{1}{C}\sum_c F_c`, the map SelfThresholdDrop thresholds;
* the keep mask :math:`M = [A < \alpha \max A]` of the model's SelfThresholdDrop (the positions a
  training step on the drop branch would erase are those with :math:`M = 0`);
* CBAM's spatial attention :math:`M_s \in (0, 1)`, the output of ``cbam.spatial_gate.gate`` when the
  model's CBAM runs on :math:`F`.

Variants without a second head (``global``) use the backbone output for :math:`A`; maps a variant has
no module for (no SelfThresholdDrop, no CBAM) are left out and named in :attr:`AttentionMaps.absent`.
Drawing them is :mod:`stadb_reid.visualization.attention`'s part.

Examples:
    >>> import torch
    >>> from stadb_reid.model import STADBNet
    >>> maps = compute_attention_maps(STADBNet(4, backbone="resnet18"), torch.randn(2, 3, 64, 32))
    >>> maps.source, tuple(maps.attention.shape), maps.keep_mask is not None, maps.absent
    ('branch', (2, 1, 4, 2), True, ())
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from stadb_layers import CBAM, SelfThresholdDrop, self_threshold_drop

from ..model import STADBNet

__all__ = ["AttentionMaps", "compute_attention_maps"]


@dataclass(frozen=True)
class AttentionMaps:
    """The maps of :func:`compute_attention_maps`, at feature-map resolution, on the CPU.

    Attributes:
        attention: ``(N, 1, h, w)`` float32 channel-mean attention.
        keep_mask: ``(N, 1, h, w)`` boolean keep mask of the model's SelfThresholdDrop (``True`` = kept),
            or ``None`` when the model has none.
        spatial_attention: ``(N, 1, h, w)`` float32 CBAM spatial attention, or ``None`` without CBAM.
        source: Which feature map the maps were computed on: ``"branch"`` (the second head's
            Bottleneck output) or ``"backbone"`` (variants without a second head).
        alpha: Threshold of the keep mask as a fraction of the peak attention; ``None`` without a
            SelfThresholdDrop or in its ``drop_ratio`` mode.
        drop_ratio: Fraction of positions the keep mask drops in ``drop_ratio`` mode, else ``None``.
        absent: One line per map the model cannot provide, saying why.
    """

    attention: Tensor
    keep_mask: Tensor | None
    spatial_attention: Tensor | None
    source: str
    alpha: float | None
    drop_ratio: float | None
    absent: tuple[str, ...]


def compute_attention_maps(model: STADBNet, images: Tensor) -> AttentionMaps:
    """Compute the channel-mean attention, keep mask and CBAM spatial attention of an image batch.

    The model runs in eval mode under :func:`torch.inference_mode` (its previous mode is restored). The
    keep mask uses the ``alpha`` (or ``drop_ratio``) of the model's own SelfThresholdDrop, through the
    reference function :func:`stadb_layers.self_threshold_drop`. The CBAM spatial map is captured with a
    forward hook on ``spatial_gate.gate`` while the model's CBAM runs on the Bottleneck output.

    Args:
        model: A :class:`~stadb_reid.model.STADBNet` (any variant).
        images: ``(N, 3, H, W)`` normalised images on the model's device.

    Returns:
        The :class:`AttentionMaps`, on the CPU.

    Raises:
        ValueError: If ``images`` is not a 4-D batch of 3-channel images.
    """
    check_image_batch(images)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            return _maps_in_eval_mode(model, images)
    finally:
        model.train(was_training)


def check_image_batch(images: Tensor) -> None:
    """Raise ``ValueError`` unless ``images`` is a 4-D ``(N, 3, H, W)`` batch of 3-channel images.

    Args:
        images: The tensor to check.

    Raises:
        ValueError: If ``images`` has another number of dimensions or channels.
    """
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be an (N, 3, H, W) batch, got shape {tuple(images.shape)}")


def _maps_in_eval_mode(model: STADBNet, images: Tensor) -> AttentionMaps:
    """The maps of :func:`compute_attention_maps`, for a model already in eval and inference mode."""
    feature_map: Tensor = model.backbone(images)
    branch = model.branch
    if branch is None:
        absent = ("keep mask (no second head)", "CBAM spatial attention (no second head)")
        return AttentionMaps(_channel_mean(feature_map), None, None, "backbone", None, None, absent)
    feature_map = branch.extra_bottleneck(feature_map)
    absent_maps: list[str] = []

    keep_mask = alpha = drop_ratio = None
    drop = branch.threshold_drop
    if drop is not None:
        keep_mask, alpha, drop_ratio = _keep_mask(drop, feature_map), drop.alpha, drop.drop_ratio
    else:
        absent_maps.append(f"keep mask (no SelfThresholdDrop in variant {model.variant.value})")

    spatial_attention = None
    if isinstance(branch.attention, CBAM) and branch.attention.spatial_gate is not None:
        spatial_attention = _cbam_spatial_attention(branch.attention, feature_map)
    elif isinstance(branch.attention, CBAM):
        absent_maps.append("CBAM spatial attention (model.cbam.gates=channel builds no spatial gate)")
    else:
        absent_maps.append(f"CBAM spatial attention (no CBAM in variant {model.variant.value})")
    return AttentionMaps(
        _channel_mean(feature_map),
        keep_mask,
        spatial_attention,
        "branch",
        alpha,
        drop_ratio,
        tuple(absent_maps),
    )


def _keep_mask(drop: SelfThresholdDrop, feature_map: Tensor) -> Tensor:
    """The ``(N, 1, h, w)`` boolean keep mask ``drop``'s threshold rule gives ``feature_map``, on the CPU."""
    _, keep = self_threshold_drop(feature_map, alpha=drop.alpha, drop_ratio=drop.drop_ratio)
    return keep.cpu()


def _cbam_spatial_attention(cbam: CBAM, feature_map: Tensor) -> Tensor:
    """The spatial map CBAM multiplies ``feature_map`` by, captured by a hook on ``spatial_gate.gate``."""
    captured: list[Tensor] = []
    assert cbam.spatial_gate is not None  # the caller checked
    handle = cbam.spatial_gate.gate.register_forward_hook(
        lambda _module, _inputs, output: captured.append(output)
    )
    try:
        cbam(feature_map)
    finally:
        handle.remove()
    return captured[-1].float().cpu()


def _channel_mean(feature_map: Tensor) -> Tensor:
    """The ``(N, 1, h, w)`` float32 mean over the channels of ``feature_map``, on the CPU."""
    return feature_map.float().mean(dim=1, keepdim=True).cpu()
