"""Squeeze-and-Excitation (SE) channel attention.

Hu, Shen and Sun, "Squeeze-and-Excitation Networks", CVPR 2018, https://arxiv.org/abs/1709.01507.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from stadb_layers.checks import check_feature_map
from stadb_layers.mlp import ChannelMLP

__all__ = ["SE"]


class SE(ChannelMLP):
    r"""Squeeze-and-Excitation block: a channel gate computed from the global average pool.

    For a feature map :math:`X \in \mathbb{R}^{C \times H \times W}`,

    .. math::

        z_c &= \frac{1}{HW} \sum_{i=1}^{H} \sum_{j=1}^{W} X_{c,i,j}, \\
        s &= \sigma\big(W_2\,\delta(W_1 z + b_1) + b_2\big), \\
        Y_{c,i,j} &= s_c\, X_{c,i,j},

    with :math:`W_1 \in \mathbb{R}^{C/r \times C}`, :math:`W_2 \in \mathbb{R}^{C \times C/r}`, :math:`\delta`
    the activation (ReLU) and :math:`\sigma` the gate (sigmoid). The MLP is the shared
    :class:`~stadb_layers.mlp.ChannelMLP` (parameters ``fc1``, ``fc2``); its hidden width is
    ``max(1, channels // reduction)`` (timm's ``SEModule`` instead rounds it with ``make_divisible``).

    The first positional argument is the channel count, so the class can be passed as timm's
    ``attn_layer``.

    Reference:
        Hu et al., "Squeeze-and-Excitation Networks", CVPR 2018.

    Args:
        channels: Number of input channels :math:`C`.
        reduction: Reduction ratio :math:`r`.
        act_layer: Factory of the hidden activation :math:`\delta`, called with no arguments.
        gate_layer: Factory of the gate :math:`\sigma`, called with no arguments.
        device: Device of the parameters.
        dtype: Floating dtype of the parameters.

    Shape:
        - Input: :math:`(N, C, H, W)` with :math:`C` = ``channels`` and :math:`H, W \ge 1`; otherwise
          ``forward`` raises a one-line ``ValueError``.
        - Output: :math:`(N, C, H, W)`, same as the input.

    Examples:
        >>> se = SE(64, reduction=16)
        >>> se(torch.randn(2, 64, 7, 7)).shape
        torch.Size([2, 64, 7, 7])
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
        """Return ``x`` scaled by the excitation gate."""
        check_feature_map(x, "x", "SE", self.channels)
        excitation: Tensor = self.gate(self.mlp(x.mean(dim=(2, 3))))
        return x * excitation[:, :, None, None]
