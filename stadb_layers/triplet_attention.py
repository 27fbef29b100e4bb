"""Triplet attention.

Misra, Nalamada, Arasanipalai and Hou, "Rotate to Attend: Convolutional Triplet Attention Module",
WACV 2021, https://arxiv.org/abs/2010.03045. Official code: https://github.com/landskape-ai/triplet-attention.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from stadb_layers._validation import check_feature_map, check_odd_kernel_size, check_positive_int

__all__ = ["TripletAttention"]


class _ZPoolGate(nn.Module):
    """Map a Z-pooled ``(N, 2, A, B)`` tensor to a gate ``(N, 1, A, B)``: k x k conv, batch norm, gate."""

    def __init__(
        self,
        kernel_size: int,
        gate_layer: Callable[[], nn.Module],
        device: torch.device | str | None,
        dtype: torch.dtype | None,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            2, 1, kernel_size, padding=kernel_size // 2, bias=False, device=device, dtype=dtype
        )
        self.bn = nn.BatchNorm2d(1, eps=1e-5, momentum=0.01, device=device, dtype=dtype)
        self.gate = gate_layer()

    def forward(self, pooled: Tensor) -> Tensor:
        """Return the gate for a Z-pooled map (max first, mean second along dim 1)."""
        gate: Tensor = self.gate(self.bn(self.conv(pooled)))
        return gate


class TripletAttention(nn.Module):
    r"""Triplet attention: three Z-pool + convolution gates, one per pair of (C, H, W) dimensions.

    Z-pool concatenates the max and the mean along one dimension (max first, as in the official code),
    :math:`Z_d(X) = [\max_d X;\ \mathrm{mean}_d X]`. Each branch gates the input with

    .. math::

        G_d(X) = \sigma\Big(\mathrm{BN}\big(f_d^{k \times k}(Z_d(X))\big)\Big),

    where :math:`f_d^{k \times k}` is a bias-free :math:`2 \to 1` convolution with "same" padding over the two
    remaining dimensions, and the output is the average of the three gated tensors

    .. math::

        Y = \tfrac{1}{3}\big(X \odot G_H(X) + X \odot G_W(X) + X \odot G_C(X)\big),

    with broadcasting over the pooled dimension. The branches are

    * ``cw``: pool over :math:`H`, convolve over the :math:`(C, W)` plane;
    * ``hc``: pool over :math:`W`, convolve over the :math:`(H, C)` plane (:math:`H` is the kernel's first
      axis, as in the official ``x.permute(0, 3, 2, 1)``);
    * ``hw``: pool over :math:`C`, convolve over the :math:`(H, W)` plane (the usual spatial attention).

    Rather than permuting and copying the whole input as the official code does, this layer pools along
    the right dimension and transposes only the small pooled map and gate; the result is the same.
    The batch norms use the official ``eps=1e-5, momentum=0.01``.

    Reference:
        Misra et al., "Rotate to Attend: Convolutional Triplet Attention Module", WACV 2021.

    Args:
        channels: Unused: the module has no channel-dependent parameters. Accepted (and checked if given)
            so that the class works as timm's ``attn_layer``, which passes the channel count first.
        kernel_size: Odd side :math:`k` of the three square convolution kernels.
        gate_layer: Factory of the gate :math:`\sigma` (one instance per branch), called with no arguments.
        device: Device of the parameters and buffers.
        dtype: Floating dtype of the parameters and buffers.

    Shape:
        - Input: :math:`(N, C, H, W)`.
        - Output: :math:`(N, C, H, W)`, same as the input.

    Examples:
        >>> attn = TripletAttention(kernel_size=7)
        >>> attn(torch.randn(2, 16, 9, 11)).shape
        torch.Size([2, 16, 9, 11])
    """

    def __init__(
        self,
        channels: int | None = None,
        kernel_size: int = 7,
        *,
        gate_layer: Callable[[], nn.Module] = nn.Sigmoid,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if channels is not None:
            check_positive_int(channels, "channels")
        self.kernel_size = check_odd_kernel_size(kernel_size, "kernel_size")
        self.cw = _ZPoolGate(kernel_size, gate_layer, device, dtype)
        self.hc = _ZPoolGate(kernel_size, gate_layer, device, dtype)
        self.hw = _ZPoolGate(kernel_size, gate_layer, device, dtype)

    def forward(self, x: Tensor) -> Tensor:
        """Return the average of the three gated copies of ``x``."""
        check_feature_map(x, "x")
        # C-W branch: pool over H -> (N, 2, C, W); gate (N, 1, C, W) -> (N, C, 1, W).
        pooled_cw = torch.stack((x.amax(dim=2), x.mean(dim=2)), dim=1)
        gate_cw: Tensor = self.cw(pooled_cw).transpose(1, 2)
        # H-C branch: pool over W -> (N, 2, C, H) -> (N, 2, H, C); gate (N, 1, H, C) -> (N, C, H, 1).
        pooled_hc = torch.stack((x.amax(dim=3), x.mean(dim=3)), dim=1).transpose(2, 3)
        gate_hc: Tensor = self.hc(pooled_hc).permute(0, 3, 2, 1)
        # H-W branch: pool over C -> (N, 2, H, W); gate (N, 1, H, W).
        pooled_hw = torch.cat((x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)), dim=1)
        gate_hw: Tensor = self.hw(pooled_hw)
        # x*g1 + x*g2 + x*g3 == x * (g1 + g2 + g3); the gate sum broadcasts to (N, C, H, W) once.
        return x * ((gate_cw + gate_hc + gate_hw) / 3.0)

    def extra_repr(self) -> str:
        """Describe the configuration."""
        return f"kernel_size={self.kernel_size}"
