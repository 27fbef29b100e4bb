"""Self-thresholding feature drop.

From "STADB: A Self-Thresholding Attention Guided ADB Network for Person Re-identification"
(Jiang, Wang, Wang, Zheng), building on the attention-based dropout layer (ADL) of Choe and Shim,
"Attention-based Dropout Layer for Weakly Supervised Object Localization", CVPR 2019.

The layer erases the most discriminative positions of a feature map during training, so the network
has to learn from the remaining ones.
"""

import math
from typing import Optional

import torch
from torch import nn

from ._validation import check_feature_map, check_in_interval

__all__ = ["SelfThresholdDrop", "self_threshold_drop"]

DEFAULT_ALPHA = 0.8


def _resolve_mode(alpha: Optional[float], drop_ratio: Optional[float]) -> tuple[Optional[float], Optional[float]]:
    """Validate the two mutually exclusive modes and fill in the paper's default ``alpha``."""
    if drop_ratio is not None:
        if alpha is not None:
            raise ValueError("alpha and drop_ratio are mutually exclusive; pass only one of them")
        return None, check_in_interval(drop_ratio, "drop_ratio", 0.0, 1.0, low_closed=False, high_closed=False)
    if alpha is None:
        alpha = DEFAULT_ALPHA
    return check_in_interval(alpha, "alpha", 0.0, 1.0, low_closed=False, high_closed=True), None


def channel_mean_attention(x: torch.Tensor) -> torch.Tensor:
    """Channel-mean attention map of ``x``: (N, C, H, W) -> (N, 1, H, W).

    Half-precision inputs are accumulated and returned in float32, so the threshold comparison does not
    suffer from the rounding of a 16-bit mean.
    """
    if x.dtype in (torch.float16, torch.bfloat16):
        return x.mean(dim=1, keepdim=True, dtype=torch.float32)
    return x.mean(dim=1, keepdim=True)


def keep_mask_from_attention(
    attention: torch.Tensor, alpha: Optional[float], drop_ratio: Optional[float]
) -> torch.Tensor:
    """Boolean keep mask (N, 1, H, W) from an attention map, for exactly one of the two modes."""
    if drop_ratio is not None:
        flat = attention.flatten(1)
        num_dropped = int(math.ceil(drop_ratio * flat.shape[1]))
        kth_largest = flat.topk(num_dropped, dim=1).values[:, -1:]
        threshold = kth_largest.view(-1, 1, 1, 1)
    else:
        assert alpha is not None
        threshold = alpha * attention.amax(dim=(2, 3), keepdim=True)
    return attention < threshold


def self_threshold_drop(
    x: torch.Tensor, alpha: Optional[float] = None, drop_ratio: Optional[float] = None
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Zero the most strongly activated spatial positions of a feature map.

    The attention map is the channel mean of ``x``, and a position is dropped when its attention reaches
    the per-sample threshold:

    .. math::

        A_{n,h,w} = \frac{1}{C} \sum_{c} x_{n,c,h,w}, \qquad
        \tau_n = \alpha \max_{h,w} A_{n,h,w}, \qquad
        M_{n,h,w} = [A_{n,h,w} < \tau_n], \qquad
        y = x \odot M.

    This is the rule of the ADL and STADB reference code (``attention >= threshold`` is dropped). The
    paper's prose says "greater than"; the two differ at ``alpha = 1``, where the reference rule still
    drops the peak position. With ``drop_ratio`` instead, :math:`\tau_n` is the k-th largest attention
    value of the sample with :math:`k = \lceil \text{drop\_ratio} \cdot H W \rceil`, so at least that
    fraction of positions is erased (ties at the threshold are erased too).

    The mask is a constant for autograd, so :math:`\partial y / \partial x = M`. Half-precision inputs
    compute the attention in float32.

    Args:
        x: Feature map of shape (N, C, H, W), floating point.
        alpha: Threshold as a fraction of each sample's peak attention, in (0, 1]. Defaults to 0.8 (the
            paper's value) when ``drop_ratio`` is not given.
        drop_ratio: Fraction of positions to erase, in (0, 1). Mutually exclusive with ``alpha``.

    Returns:
        ``(out, keep_mask)``: the masked feature map, same shape and dtype as ``x``, and the boolean keep
        mask of shape (N, 1, H, W).

    Raises:
        ValueError: If ``x`` is not a 4-D floating tensor, if ``alpha`` or ``drop_ratio`` is out of range,
            or if both are given.

    Examples:
        >>> x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
        >>> out, keep = self_threshold_drop(x, alpha=0.7)
        >>> out
        tensor([[[[1., 2.],
                  [0., 0.]]]])
        >>> keep.shape
        torch.Size([1, 1, 2, 2])
    """
    check_feature_map(x, "x")
    alpha, drop_ratio = _resolve_mode(alpha, drop_ratio)
    keep = keep_mask_from_attention(channel_mean_attention(x), alpha, drop_ratio)
    return x * keep, keep


class SelfThresholdDrop(nn.Module):
    r"""Self-thresholding drop: erase the most discriminative positions during training.

    In training mode the layer computes the channel-mean attention of its input, drops every position
    whose attention reaches :math:`\alpha` times the sample's peak (or the top ``drop_ratio`` fraction of
    positions) and returns ``x * keep_mask``; see :func:`self_threshold_drop` for the formula and for how
    the rule relates to the paper's text. In eval mode it is the identity.

    After each training forward, :attr:`last_attention` (float32 for 16-bit inputs) and
    :attr:`last_keep_mask` hold the detached (N, 1, H, W) maps of that call for visualisation. They cost
    ``N*H*W`` elements, a ``1/C`` fraction of the input, and hold no autograd graph.

    Args:
        alpha: Threshold as a fraction of each sample's peak attention, in (0, 1]. Defaults to 0.8 (the
            paper's value) when ``drop_ratio`` is not given.
        drop_ratio: Fraction of positions to erase, in (0, 1). Mutually exclusive with ``alpha``.
        inplace: Multiply the input in place, like ``nn.ReLU(inplace=True)``. Only valid where autograd
            does not need the unmasked input (for example right after a convolution).

    Shape:
        - Input: (N, C, H, W)
        - Output: (N, C, H, W)

    Examples:
        >>> drop = SelfThresholdDrop(alpha=0.8)
        >>> x = torch.rand(2, 16, 6, 4)
        >>> y = drop(x)
        >>> bool((y == 0).any())
        True
        >>> bool(torch.equal(drop.eval()(x), x))
        True
    """

    alpha: Optional[float]
    drop_ratio: Optional[float]
    last_attention: Optional[torch.Tensor]
    last_keep_mask: Optional[torch.Tensor]

    def __init__(
        self, alpha: Optional[float] = None, *, drop_ratio: Optional[float] = None, inplace: bool = False
    ) -> None:
        super().__init__()
        self.alpha, self.drop_ratio = _resolve_mode(alpha, drop_ratio)
        self.inplace = inplace
        self.last_attention = None
        self.last_keep_mask = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Drop the most activated positions in training mode; identity in eval mode."""
        check_feature_map(x, "x")
        if not self.training:
            return x
        attention = channel_mean_attention(x)
        keep = keep_mask_from_attention(attention, self.alpha, self.drop_ratio)
        self.last_attention = attention.detach()
        self.last_keep_mask = keep
        if self.inplace:
            return x.mul_(keep)
        return x * keep

    def extra_repr(self) -> str:
        """Mode and its parameter, plus ``inplace`` when set."""
        mode = f"alpha={self.alpha}" if self.drop_ratio is None else f"drop_ratio={self.drop_ratio}"
        return mode + (", inplace=True" if self.inplace else "")
