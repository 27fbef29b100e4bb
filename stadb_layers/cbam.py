"""Convolutional Block Attention Module (CBAM), and the variant of the STADB authors.

Woo, Park, Lee and Kweon, "CBAM: Convolutional Block Attention Module", ECCV 2018,
https://arxiv.org/abs/1807.06521. Official code: https://github.com/Jongchan/attention-module.
The STADB authors' variant (https://github.com/wangxiao5791509/STADB_ReID, ``models/networks.py``) is
:meth:`CBAM.stadb_reference`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from stadb_layers.checks import (
    check_bool,
    check_choice,
    check_feature_map,
    check_odd_kernel_size,
    check_positive_int,
)
from stadb_layers.mlp import ChannelMLP
from stadb_layers.spatial_gate import POOL_ORDERS, SpatialGate

__all__ = ["CBAM", "ChannelGate"]

_GATES = ("channel_spatial", "channel", "spatial")
# The options of CBAM.stadb_reference (its docstring cites the authors' lines).
_STADB_REFERENCE: dict[str, Any] = {
    "reduction": 4,
    "kernel_size": 3,
    "spatial_bias": True,
    "spatial_norm": False,
    "pool_order": "avg_max",
}


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


class CBAM(nn.Module):
    r"""Convolutional Block Attention Module: channel attention followed by spatial attention.

    For a feature map :math:`F \in \mathbb{R}^{C \times H \times W}`,

    .. math::

        M_c(F) &= \sigma\big(\mathrm{MLP}(\mathrm{AvgPool}(F)) + \mathrm{MLP}(\mathrm{MaxPool}(F))\big)
            \in \mathbb{R}^{C \times 1 \times 1}, \qquad F' = M_c(F) \otimes F, \\
        M_s(F') &= \sigma\big(\mathcal{N}(f^{k \times k}(P(F')) + b)\big)
            \in \mathbb{R}^{1 \times H \times W}, \qquad F'' = M_s(F') \otimes F',

    with :class:`ChannelGate`'s MLP (``Linear(C, C/r) -> act -> Linear(C/r, C)``, both with bias, shared
    by the two pooled descriptors) and :class:`SpatialGate`'s pool :math:`P`, convolution :math:`f`, bias
    :math:`b` and norm :math:`\mathcal{N}`. The defaults follow the official code: :math:`P(F) = [\max_c
    F;\ \mathrm{mean}_c F]`, no bias, batch norm with ``eps=1e-5, momentum=0.01``. Unlike it, the hidden
    width is ``max(1, channels // reduction)`` so that ``channels < reduction`` works. ``gates`` keeps one
    gate only (the paper's Table 7 ablation); the other is not built. :meth:`stadb_reference` builds the
    STADB authors' variant.

    The first positional argument is the channel count, so the class can be passed as timm's
    ``attn_layer`` (e.g. ``timm.create_model("resnet50", block_args=dict(attn_layer=CBAM))``).

    Args:
        channels: Number of input channels :math:`C`.
        reduction: Reduction ratio :math:`r` of the channel MLP.
        kernel_size: Odd side :math:`k` of the spatial convolution kernel.
        spatial_bias: Whether the spatial convolution has a bias :math:`b`.
        spatial_norm: Whether a batch norm :math:`\mathcal{N}` follows the spatial convolution.
        pool_order: Order of the spatial pool's maps, ``"max_mean"`` (official CBAM) or ``"avg_max"``.
        gates: ``"channel_spatial"`` (CBAM), ``"channel"`` (:math:`F'` only) or ``"spatial"``
            (:math:`M_s(F) \otimes F` only).
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
        >>> CBAM(64, gates="spatial").channel_gate is None
        True
    """

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        kernel_size: int = 7,
        *,
        spatial_bias: bool = False,
        spatial_norm: bool = True,
        pool_order: str = "max_mean",
        gates: str = "channel_spatial",
        act_layer: Callable[[], nn.Module] = nn.ReLU,
        gate_layer: Callable[[], nn.Module] = nn.Sigmoid,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        # Every option is checked, also those of a gate that is not built, so a bad config fails early.
        self.channels = check_positive_int(channels, "channels")
        self.reduction = check_positive_int(reduction, "reduction")
        self.kernel_size = check_odd_kernel_size(kernel_size, "kernel_size")
        self.spatial_bias = check_bool(spatial_bias, "spatial_bias")
        self.spatial_norm = check_bool(spatial_norm, "spatial_norm")
        self.pool_order = check_choice(pool_order, "pool_order", POOL_ORDERS)
        self.gates = check_choice(gates, "gates", _GATES)
        self.channel_gate: ChannelGate | None = None
        self.spatial_gate: SpatialGate | None = None
        if gates != "spatial":
            self.channel_gate = ChannelGate(
                channels, reduction, act_layer=act_layer, gate_layer=gate_layer, device=device, dtype=dtype
            )
        if gates != "channel":
            self.spatial_gate = SpatialGate(
                kernel_size,
                bias=spatial_bias,
                norm=spatial_norm,
                pool_order=pool_order,
                gate_layer=gate_layer,
                device=device,
                dtype=dtype,
            )

    @classmethod
    def stadb_reference(cls, channels: int, **overrides: Any) -> CBAM:
        r"""The CBAM of the STADB authors' code: ``reduction=4``, a 3x3 convolution with bias, no norm.

        From ``models/networks.py`` of https://github.com/wangxiao5791509/STADB_ReID: ``fc1``/``fc2`` are
        1x1 convolutions with ``reduction = 4`` (the same MLP as :class:`ChannelGate`'s), the spatial
        convolution is ``nn.Conv2d(2, 1, kernel_size=3, stride=1, padding=1)`` (bias on) with no batch
        norm, and its input is ``torch.cat((avg, mx), 1)``. So the preset is ``reduction=4,
        kernel_size=3, spatial_bias=True, spatial_norm=False, pool_order="avg_max"``.

        Args:
            channels: Number of input channels :math:`C`.
            **overrides: Any other keyword argument of :class:`CBAM`; it replaces the preset's value.

        Returns:
            The configured :class:`CBAM`.

        Examples:
            >>> cbam = CBAM.stadb_reference(2048)
            >>> cbam.reduction, cbam.kernel_size, cbam.spatial_bias, cbam.spatial_norm, cbam.pool_order
            (4, 3, True, False, 'avg_max')
            >>> sum(p.numel() for p in cbam.parameters())
            2099731
        """
        return cls(channels, **{**_STADB_REFERENCE, **overrides})

    def forward(self, x: Tensor) -> Tensor:
        """Apply the channel gate, then the spatial gate (those that ``gates`` keeps)."""
        check_feature_map(x, "x", "CBAM", self.channels)
        if self.channel_gate is not None:
            x = self.channel_gate(x)
        if self.spatial_gate is not None:
            x = self.spatial_gate(x)
        return x

    def extra_repr(self) -> str:
        """Describe the configuration: the sizes of the gates that exist and the non-default options."""
        parts = [f"channels={self.channels}"]
        if self.channel_gate is not None:
            parts.append(f"reduction={self.reduction}")
        if self.spatial_gate is not None:
            parts.append(f"kernel_size={self.kernel_size}")
            if self.spatial_bias:
                parts.append("spatial_bias=True")
            if not self.spatial_norm:
                parts.append("spatial_norm=False")
            if self.pool_order != "max_mean":
                parts.append(f"pool_order={self.pool_order!r}")
        if self.gates != "channel_spatial":
            parts.append(f"gates={self.gates!r}")
        return ", ".join(parts)
