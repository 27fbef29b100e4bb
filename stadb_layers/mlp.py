r"""The channel MLP shared by the SE gate and CBAM's channel gate.

Hu et al. (SE, CVPR 2018) and Woo et al. (CBAM, ECCV 2018) both gate channels with the same bottleneck
MLP on a pooled descriptor, ``Linear(C, C/r) -> act -> Linear(C/r, C)``. :class:`ChannelMLP` is that
MLP; :class:`~stadb_layers.SE` and :class:`~stadb_layers.cbam.ChannelGate` extend it with their pooling
and gate.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from stadb_layers.checks import check_positive_int

__all__ = ["ChannelMLP"]


class ChannelMLP(nn.Module):
    r"""Bottleneck MLP over channels: :math:`\mathrm{MLP}(v) = W_2\,\delta(W_1 v + b_1) + b_2`.

    :math:`W_1 \in \mathbb{R}^{C_h \times C}` and :math:`W_2 \in \mathbb{R}^{C \times C_h}` are the
    ``fc1`` and ``fc2`` linear layers (both with bias), :math:`\delta` the activation ``act``, and the
    hidden width is :math:`C_h` = ``max(1, channels // reduction)`` (so ``channels < reduction`` works).

    The channel gates subclass it rather than hold it, so their parameters keep the state-dict keys
    ``fc1.weight``, ``fc1.bias``, ``fc2.weight`` and ``fc2.bias`` of the layer itself (timm's
    ``SEModule`` and ``CbamModule`` use the same names, for 1x1 convolutions). Subclasses override
    ``forward`` and call :meth:`mlp`.

    Args:
        channels: Number of input and output channels :math:`C`.
        reduction: Reduction ratio :math:`r`.
        act_layer: Factory of the hidden activation :math:`\delta`, called with no arguments.
        device: Device of the parameters.
        dtype: Floating dtype of the parameters.

    Shape:
        - Input: :math:`(\ast, C)`.
        - Output: :math:`(\ast, C)`.

    Examples:
        >>> mlp = ChannelMLP(64, reduction=16)
        >>> mlp.hidden_channels
        4
        >>> mlp(torch.randn(2, 64)).shape
        torch.Size([2, 64])
    """

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        *,
        act_layer: Callable[[], nn.Module] = nn.ReLU,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.channels = check_positive_int(channels, "channels")
        self.reduction = check_positive_int(reduction, "reduction")
        self.hidden_channels = max(1, self.channels // self.reduction)
        self.fc1 = nn.Linear(self.channels, self.hidden_channels, bias=True, device=device, dtype=dtype)
        self.act = act_layer()
        self.fc2 = nn.Linear(self.hidden_channels, self.channels, bias=True, device=device, dtype=dtype)

    def mlp(self, v: Tensor) -> Tensor:
        r"""Return :math:`W_2\,\delta(W_1 v + b_1) + b_2` for ``v`` of shape :math:`(\ast, C)`."""
        out: Tensor = self.fc2(self.act(self.fc1(v)))
        return out

    def forward(self, v: Tensor) -> Tensor:
        """Return :meth:`mlp` of ``v``."""
        return self.mlp(v)

    def extra_repr(self) -> str:
        """Describe the configuration."""
        return f"channels={self.channels}, reduction={self.reduction}, hidden_channels={self.hidden_channels}"
