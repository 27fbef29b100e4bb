"""CBAM's spatial attention gate and the Z-pool it shares with triplet attention.

Woo, Park, Lee and Kweon, "CBAM: Convolutional Block Attention Module", ECCV 2018,
https://arxiv.org/abs/1807.06521 (Section 3, spatial attention module); Misra, Nalamada, Arasanipalai
and Hou, "Rotate to Attend: Convolutional Triplet Attention Module", WACV 2021,
https://arxiv.org/abs/2010.03045 (Z-pool). :class:`~stadb_layers.CBAM` and
:class:`~stadb_layers.TripletAttention` are built on it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from stadb_layers.checks import check_bool, check_choice, check_feature_map, check_odd_kernel_size

__all__ = ["POOL_ORDERS", "SpatialGate", "z_pool"]

#: Orders of the two pooled maps a :class:`SpatialGate` convolves.
POOL_ORDERS = ("max_mean", "avg_max")


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
    # Keep-dim maps joined by torch.cat, and a contiguous copy once moved: the convolution that follows
    # must not read a view. Under torch.compile(dynamic=True), Inductor sorts the symbolic strides of
    # such a view (torch.stack's reshape, a permute) without its ShapeEnv and fails with "cannot
    # determine truth value of Relational" (pytorch/pytorch#185510, fix pending in #185871).
    pooled = torch.cat((x.amax(dim=dim, keepdim=True), x.mean(dim=dim, keepdim=True)), dim=dim)
    return pooled if dim == 1 else pooled.movedim(dim, 1).contiguous()


class SpatialGate(nn.Module):
    r"""CBAM spatial attention: a convolution over the channel-wise max and mean maps.

    .. math::

        M_s(F) = \sigma\big(\mathcal{N}(f^{k \times k}(P(F)) + b)\big), \qquad F'' = M_s(F) \otimes F,

    where :math:`P(F)` stacks the channel-wise maps in ``pool_order``: :math:`[\max_c F;\ \mathrm{mean}_c F]`
    for ``"max_mean"`` (the official ``ChannelPool``, triplet attention's Z-pool) or
    :math:`[\mathrm{mean}_c F;\ \max_c F]` for ``"avg_max"``. :math:`f^{k \times k}` has "same" padding,
    :math:`b` is its bias (0 unless ``bias``) and :math:`\mathcal{N}` is a batch norm with the official
    ``eps=1e-5, momentum=0.01`` (the identity unless ``norm``). :meth:`attention_from_pooled` maps a pooled
    map to the gate; :class:`~stadb_layers.TripletAttention` calls it on maps pooled over C, H and W.

    Args:
        kernel_size: Odd side :math:`k` of the square convolution kernel.
        bias: Whether the convolution has a bias :math:`b`.
        norm: Whether a batch norm follows the convolution (attribute ``bn``, else ``nn.Identity``).
        pool_order: Order of the two pooled maps, ``"max_mean"`` or ``"avg_max"``.
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
        >>> gate.attention_from_pooled(gate.pool(x)).shape
        torch.Size([2, 1, 6, 5])
        >>> SpatialGate(3, bias=True, norm=False, pool_order="avg_max")
        SpatialGate(
          kernel_size=3, bias=True, norm=False, pool_order='avg_max'
          (conv): Conv2d(2, 1, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))
          (bn): Identity()
          (gate): Sigmoid()
        )
    """

    def __init__(
        self,
        kernel_size: int = 7,
        *,
        bias: bool = False,
        norm: bool = True,
        pool_order: str = "max_mean",
        gate_layer: Callable[[], nn.Module] = nn.Sigmoid,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.kernel_size = check_odd_kernel_size(kernel_size, "kernel_size")
        # Not stored as self.bias: generic init code zeroes any non-None `bias` attribute it finds.
        bias = check_bool(bias, "bias")
        self.pool_order = check_choice(pool_order, "pool_order", POOL_ORDERS)
        self.conv = nn.Conv2d(
            2, 1, kernel_size, padding=kernel_size // 2, bias=bias, device=device, dtype=dtype
        )
        self.bn: nn.Module = (
            nn.BatchNorm2d(1, eps=1e-5, momentum=0.01, device=device, dtype=dtype)
            if check_bool(norm, "norm")
            else nn.Identity()
        )
        self.gate = gate_layer()

    def pool(self, x: Tensor) -> Tensor:
        """Return the channel-wise max and mean maps of ``x``, :math:`(N, 2, H, W)`, in ``pool_order``."""
        if self.pool_order == "avg_max":
            return torch.cat((x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)), dim=1)  # see z_pool
        return z_pool(x, dim=1)

    def attention_from_pooled(self, pooled: Tensor) -> Tensor:
        r"""Return the attention map :math:`\sigma(\mathcal{N}(f^{k \times k}(\text{pooled}) + b))`.

        Args:
            pooled: Pooled map of shape :math:`(N, 2, A, B)`, its two maps in ``pool_order`` (see
                :meth:`pool` and :func:`z_pool`).

        Returns:
            The gate of shape :math:`(N, 1, A, B)`.

        Raises:
            ValueError: If ``pooled`` is not a 4-D floating tensor with 2 channels and a non-empty
                spatial size.
        """
        check_feature_map(pooled, "pooled")
        if pooled.shape[1] != 2:
            raise ValueError(f"pooled must have 2 channels ({self.pool_order} maps), got {pooled.shape[1]}")
        gate: Tensor = self.gate(self.bn(self.conv(pooled)))
        return gate

    def forward(self, x: Tensor) -> Tensor:
        """Return ``x`` scaled by the spatial attention map."""
        check_feature_map(x, "x")
        return x * self.attention_from_pooled(self.pool(x))

    def extra_repr(self) -> str:
        """Describe the configuration: the kernel size and the options that differ from the defaults."""
        parts = [f"kernel_size={self.kernel_size}"]
        if self.conv.bias is not None:
            parts.append("bias=True")
        if not isinstance(self.bn, nn.BatchNorm2d):
            parts.append("norm=False")
        if self.pool_order != "max_mean":
            parts.append(f"pool_order={self.pool_order!r}")
        return ", ".join(parts)
