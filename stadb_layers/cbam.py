"""Convolutional Block Attention Module (CBAM).

Woo, Park, Lee and Kweon, "CBAM: Convolutional Block Attention Module", ECCV 2018,
https://arxiv.org/abs/1807.06521. Official code: https://github.com/Jongchan/attention-module.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from stadb_layers._validation import check_feature_map, check_odd_kernel_size
from stadb_layers.mlp import ChannelMLP

__all__ = ["CBAM", "ChannelGate", "SpatialGate", "z_pool"]


def z_pool(x: Tensor, dim: int) -> Tensor:
    r"""Z-pool: the max and the mean of ``x`` over ``dim``, stacked as two channels, max first.

    :math:`Z_d(X) = [\max_d X;\ \mathrm{mean}_d X]`, the official ``ChannelPool`` of CBAM (for
    ``dim=1``) and ``ZPool`` of triplet attention.

    Args:
        x: Tensor of shape :math:`(N, D_1, \ldots, D_k)`.
        dim: Dimension to pool over, not the batch dimension 0.

    Returns:
        Tensor of shape :math:`(N, 2, \ldots)`: ``x``'s shape without ``dim``, with the max map at index
        0 and the mean map at index 1 of dimension 1.

    Examples:
        >>> z_pool(torch.randn(2, 4, 6, 5), dim=2).shape
        torch.Size([2, 2, 4, 5])
    """
    return torch.stack((x.amax(dim=dim), x.mean(dim=dim)), dim=1)


class ChannelGate(ChannelMLP):
    r"""CBAM channel attention: a shared MLP on the global average and max pools.

    .. math::

        M_c(F) = \sigma\big(\mathrm{MLP}(\mathrm{AvgPool}(F)) + \mathrm{MLP}(\mathrm{MaxPool}(F))\big),
        \qquad F' = M_c(F) \otimes F,

    with :math:`\mathrm{MLP}(v) = W_1\,\delta(W_0 v + b_0) + b_1`, :math:`W_0 \in \mathbb{R}^{C/r \times C}`,
    :math:`W_1 \in \mathbb{R}^{C \times C/r}`, :math:`\delta` the activation and :math:`\sigma` the gate.
    The MLP is the :class:`~stadb_layers.mlp.ChannelMLP` that SE uses too (parameters ``fc1``, ``fc2``).

    Args:
        channels: Number of input channels :math:`C`.
        reduction: Reduction ratio :math:`r`; the hidden width is ``max(1, channels // reduction)``.
        act_layer: Factory of the hidden activation :math:`\delta`, called with no arguments.
        gate_layer: Factory of the gate :math:`\sigma`, called with no arguments.
        device: Device of the parameters.
        dtype: Floating dtype of the parameters.

    Shape:
        - Input: :math:`(N, C, H, W)` with :math:`C` = ``channels`` and :math:`H, W \ge 1` (else
          ``ValueError``).
        - Output: :math:`(N, C, H, W)`.

    Examples:
        >>> gate = ChannelGate(32, reduction=8)
        >>> gate(torch.randn(2, 32, 5, 5)).shape
        torch.Size([2, 32, 5, 5])
    """

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        *,
        act_layer: Callable[[], nn.Module] = nn.ReLU,
        gate_layer: Callable[[], nn.Module] = nn.Sigmoid,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(channels, reduction, act_layer=act_layer, device=device, dtype=dtype)
        self.gate = gate_layer()

    def forward(self, x: Tensor) -> Tensor:
        """Return ``x`` scaled by the channel attention map."""
        check_feature_map(x, "x", "ChannelGate", self.channels)
        # Both pooled descriptors go through the shared MLP in one batched call: (2, N, C) -> (N, C).
        pooled = torch.stack((x.mean(dim=(2, 3)), x.amax(dim=(2, 3))))
        gate: Tensor = self.gate(self.mlp(pooled).sum(dim=0))
        return x * gate[:, :, None, None]


class SpatialGate(nn.Module):
    r"""CBAM spatial attention: a convolution over the channel-wise max and mean maps.

    .. math::

        M_s(F) = \sigma\Big(\mathrm{BN}\big(f^{k \times k}([\max_c F;\ \mathrm{mean}_c F])\big)\Big),
        \qquad F'' = M_s(F) \otimes F,

    where the two pooled maps are concatenated with the max first, as in the official ``ChannelPool``
    (triplet attention's Z-pool). The convolution has no bias and "same" padding; the batch norm uses the
    official ``eps=1e-5`` and ``momentum=0.01``. :meth:`attention_from_pooled` maps a pooled map to the
    gate; :class:`~stadb_layers.TripletAttention` calls it on maps pooled over C, H and W.

    Args:
        kernel_size: Odd side :math:`k` of the square convolution kernel.
        gate_layer: Factory of the gate :math:`\sigma`, called with no arguments.
        device: Device of the parameters and buffers.
        dtype: Floating dtype of the parameters and buffers.

    Shape:
        - Input: :math:`(N, C, H, W)` with :math:`H, W \ge 1` (else ``ValueError``).
        - Output: :math:`(N, C, H, W)`.

    Examples:
        >>> gate = SpatialGate(kernel_size=3)
        >>> x = torch.randn(2, 4, 6, 5)
        >>> gate(x).shape
        torch.Size([2, 4, 6, 5])
        >>> gate.attention_from_pooled(z_pool(x, dim=1)).shape
        torch.Size([2, 1, 6, 5])
    """

    def __init__(
        self,
        kernel_size: int = 7,
        *,
        gate_layer: Callable[[], nn.Module] = nn.Sigmoid,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.kernel_size = check_odd_kernel_size(kernel_size, "kernel_size")
        self.conv = nn.Conv2d(
            2, 1, kernel_size, padding=kernel_size // 2, bias=False, device=device, dtype=dtype
        )
        self.bn = nn.BatchNorm2d(1, eps=1e-5, momentum=0.01, device=device, dtype=dtype)
        self.gate = gate_layer()

    def attention_from_pooled(self, pooled: Tensor) -> Tensor:
        r"""Return the attention map :math:`\sigma(\mathrm{BN}(f^{k \times k}(\text{pooled})))`.

        Args:
            pooled: Z-pooled map of shape :math:`(N, 2, A, B)` (see :func:`z_pool`).

        Returns:
            The gate of shape :math:`(N, 1, A, B)`.

        Raises:
            ValueError: If ``pooled`` is not a 4-D floating tensor with 2 channels and a non-empty
                spatial size.
        """
        check_feature_map(pooled, "pooled")
        if pooled.shape[1] != 2:
            raise ValueError(f"pooled must have 2 channels (max, mean), got {pooled.shape[1]}")
        gate: Tensor = self.gate(self.bn(self.conv(pooled)))
        return gate

    def forward(self, x: Tensor) -> Tensor:
        """Return ``x`` scaled by the spatial attention map."""
        check_feature_map(x, "x")
        return x * self.attention_from_pooled(z_pool(x, dim=1))

    def extra_repr(self) -> str:
        """Describe the configuration."""
        return f"kernel_size={self.kernel_size}"


class CBAM(nn.Module):
    r"""Convolutional Block Attention Module: channel attention followed by spatial attention.

    For a feature map :math:`F \in \mathbb{R}^{C \times H \times W}`,

    .. math::

        M_c(F) &= \sigma\big(\mathrm{MLP}(\mathrm{AvgPool}(F)) + \mathrm{MLP}(\mathrm{MaxPool}(F))\big)
            \in \mathbb{R}^{C \times 1 \times 1}, \\
        F' &= M_c(F) \otimes F, \\
        M_s(F') &= \sigma\Big(\mathrm{BN}\big(f^{k \times k}([\max_c F';\ \mathrm{mean}_c F'])\big)\Big)
            \in \mathbb{R}^{1 \times H \times W}, \\
        F'' &= M_s(F') \otimes F',

    where the MLP (``Linear(C, C/r) -> act -> Linear(C/r, C)``, both with bias) is shared between the two
    pooled descriptors, :math:`f^{k \times k}` is a bias-free convolution with "same" padding and
    :math:`\sigma` is the gate (sigmoid by default). This follows the official implementation: the spatial
    pool puts the max map first and the batch norm uses ``eps=1e-5, momentum=0.01``. Unlike the official
    code, the hidden width is ``max(1, channels // reduction)`` so that ``channels < reduction`` works.

    The first positional argument is the channel count, so the class can be passed as timm's
    ``attn_layer`` (e.g. ``timm.create_model("resnet50", block_args=dict(attn_layer=CBAM))``).

    Reference:
        Woo et al., "CBAM: Convolutional Block Attention Module", ECCV 2018.

    Args:
        channels: Number of input channels :math:`C`.
        reduction: Reduction ratio :math:`r` of the channel MLP.
        kernel_size: Odd side :math:`k` of the spatial convolution kernel.
        act_layer: Factory of the MLP activation, called with no arguments.
        gate_layer: Factory of the gate :math:`\sigma` (one instance per gate), called with no arguments.
        device: Device of the parameters and buffers.
        dtype: Floating dtype of the parameters and buffers.

    Shape:
        - Input: :math:`(N, C, H, W)` with :math:`C` = ``channels`` and :math:`H, W \ge 1`; otherwise
          ``forward`` raises a one-line ``ValueError``.
        - Output: :math:`(N, C, H, W)`, same as the input.

    Examples:
        >>> cbam = CBAM(64, reduction=16, kernel_size=7)
        >>> cbam(torch.randn(2, 64, 8, 8)).shape
        torch.Size([2, 64, 8, 8])
    """

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        kernel_size: int = 7,
        *,
        act_layer: Callable[[], nn.Module] = nn.ReLU,
        gate_layer: Callable[[], nn.Module] = nn.Sigmoid,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.channel_gate = ChannelGate(
            channels, reduction, act_layer=act_layer, gate_layer=gate_layer, device=device, dtype=dtype
        )
        self.spatial_gate = SpatialGate(kernel_size, gate_layer=gate_layer, device=device, dtype=dtype)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the channel gate, then the spatial gate."""
        check_feature_map(x, "x", "CBAM", self.channel_gate.channels)
        out: Tensor = self.spatial_gate(self.channel_gate(x))
        return out

    def extra_repr(self) -> str:
        """Describe the configuration."""
        return (
            f"channels={self.channel_gate.channels}, reduction={self.channel_gate.reduction}, "
            f"kernel_size={self.spatial_gate.kernel_size}"
        )
