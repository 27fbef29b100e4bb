"""Triplet attention.

Misra, Nalamada, Arasanipalai and Hou, "Rotate to Attend: Convolutional Triplet Attention Module",
WACV 2021, https://arxiv.org/abs/2010.03045. Official code: https://github.com/landskape-ai/triplet-attention.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from einops.layers.torch import Rearrange
from torch import Tensor, nn

from stadb_layers.checks import check_feature_map, check_odd_kernel_size, check_positive_int
from stadb_layers.spatial_gate import SpatialGate, z_pool

__all__ = ["TripletAttention"]


class TripletAttention(nn.Module):
    r"""Triplet attention: three CBAM spatial gates, one per pair of (C, H, W) dimensions.

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

    Each branch is a :class:`~stadb_layers.spatial_gate.SpatialGate`, CBAM's spatial attention, applied
    as in the official code to the input permuted so that the pooled dimension comes first (its batch
    norm uses the official ``eps=1e-5, momentum=0.01``). Rather than permuting and copying the whole
    input, this layer Z-pools (:func:`~stadb_layers.spatial_gate.z_pool`) along the right dimension,
    passes the small pooled map to :meth:`~stadb_layers.spatial_gate.SpatialGate.attention_from_pooled`,
    rotates back only the gate and multiplies the input once by the sum of the three gates; the result
    is the same up to rounding. The rotations are einops ``Rearrange`` layers (no parameters or
    buffers, so they add nothing to the state dict), which TorchScript, ``torch.compile`` and ONNX
    export all handle.

    Reference:
        Misra et al., "Rotate to Attend: Convolutional Triplet Attention Module", WACV 2021.

    Args:
        channels: Optional channel count. The module has no channel-dependent parameters; the argument
            exists so that the class works as timm's ``attn_layer``, which passes the channel count
            first. When given, ``forward`` checks the input against it, like the other attention
            modules; ``None`` accepts any channel count.
        kernel_size: Odd side :math:`k` of the three square convolution kernels.
        gate_layer: Factory of the gate :math:`\sigma` (one instance per branch), called with no arguments.
        device: Device of the parameters and buffers.
        dtype: Floating dtype of the parameters and buffers.

    Shape:
        - Input: :math:`(N, C, H, W)` with :math:`H, W \ge 1`, and :math:`C` = ``channels`` when that
          was given; otherwise ``forward`` raises a one-line ``ValueError``.
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
        self.channels = None if channels is None else check_positive_int(channels, "channels")
        self.kernel_size = check_odd_kernel_size(kernel_size, "kernel_size")
        self.cw = SpatialGate(kernel_size, gate_layer=gate_layer, device=device, dtype=dtype)
        self.hc = SpatialGate(kernel_size, gate_layer=gate_layer, device=device, dtype=dtype)
        self.hw = SpatialGate(kernel_size, gate_layer=gate_layer, device=device, dtype=dtype)
        # Rotations between the branch planes and the input layout (einops patterns; p indexes the two
        # Z-pooled maps, g the single channel of a gate). H leads the H-C plane, as in the official
        # x.permute(0, 3, 2, 1).
        self.hc_plane = Rearrange("n p c h -> n p h c")
        self.cw_gate_to_input = Rearrange("n g c w -> n c g w")
        self.hc_gate_to_input = Rearrange("n g h c -> n c h g")

    def forward(self, x: Tensor) -> Tensor:
        """Return the average of the three gated copies of ``x``."""
        check_feature_map(x, "x", "TripletAttention", self.channels)
        # C-W branch: pool over H; the gate broadcasts over H.
        gate_cw: Tensor = self.cw_gate_to_input(self.cw.attention_from_pooled(z_pool(x, dim=2)))
        # H-C branch: pool over W, convolve the (H, C) plane; the gate broadcasts over W.
        gate_hc: Tensor = self.hc_gate_to_input(
            self.hc.attention_from_pooled(self.hc_plane(z_pool(x, dim=3)).contiguous())  # see z_pool
        )
        # H-W branch: pool over C; the gate (N, 1, H, W) broadcasts over C.
        gate_hw = self.hw.attention_from_pooled(z_pool(x, dim=1))
        # x*g1 + x*g2 + x*g3 == x * (g1 + g2 + g3); the gate sum broadcasts to (N, C, H, W) once.
        return x * ((gate_cw + gate_hc + gate_hw) / 3.0)

    def extra_repr(self) -> str:
        """Describe the configuration."""
        channels = "" if self.channels is None else f"channels={self.channels}, "
        return f"{channels}kernel_size={self.kernel_size}"
