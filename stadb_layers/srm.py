"""Style-based Recalibration Module (SRM).

Lee, Kim and Nam, "SRM: A Style-based Recalibration Module for Convolutional Neural Networks", ICCV 2019,
https://arxiv.org/abs/1903.10829. Official code: https://github.com/hyunjaelee410/style-based-recalibration-module.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from stadb_layers._validation import check_feature_map, check_in_interval, check_positive_int

__all__ = ["SRM"]


class SRM(nn.Module):
    r"""Style-based Recalibration Module: a channel gate computed from per-channel style statistics.

    For a feature map :math:`X \in \mathbb{R}^{C \times H \times W}`, style pooling gives, per channel,

    .. math::

        \mu_c = \frac{1}{HW} \sum_{i,j} X_{c,i,j}, \qquad
        \sigma_c = \sqrt{\frac{1}{HW} \sum_{i,j} (X_{c,i,j} - \mu_c)^2 + \epsilon},

    then style integration applies a channel-wise fully connected layer (CFC, one weight pair per channel),
    batch norm and the gate:

    .. math::

        z_c = w_{c,1}\,\mu_c + w_{c,2}\,\sigma_c, \qquad
        g_c = \mathrm{sigmoid}\big(\mathrm{BN}(z)_c\big), \qquad
        Y_{c,i,j} = g_c\, X_{c,i,j}.

    The CFC weight ``cfc`` has shape :math:`(C, 2)` and is initialised to zero, and the batch norm is ``bn``,
    as in the official ``SRMLayer`` (which applies ``BatchNorm2d`` to an :math:`(N, C, 1, 1)` view; this layer
    applies ``BatchNorm1d`` to :math:`(N, C)`, same statistics and same state-dict keys), so official state
    dicts load directly (mind the standard-deviation difference below).

    The first positional argument is the channel count, so the class can be passed as timm's
    ``attn_layer``.

    Note:
        **Difference from the official code.** The official layer uses the unbiased standard deviation
        ``std(dim=2)``, which is NaN when :math:`H W = 1` (e.g. a 1x1 feature map at the end of a network).
        This layer uses the population variance (``correction=0``) plus :math:`\epsilon` under the square
        root, so the output is finite for every spatial size; for large :math:`HW` the two agree closely.
        In eval mode the batch norm uses its running statistics, so any batch size (including 1) works; in
        train mode ``BatchNorm1d`` needs more than one sample, as usual.

    Reference:
        Lee et al., "SRM: A Style-based Recalibration Module for Convolutional Neural Networks", ICCV 2019.

    Args:
        channels: Number of input channels :math:`C`.
        eps: Positive :math:`\epsilon` added to the variance before the square root.
        gate_layer: Factory of the gate (sigmoid by default), called with no arguments.
        device: Device of the parameters and buffers.
        dtype: Floating dtype of the parameters and buffers.

    Shape:
        - Input: :math:`(N, C, H, W)`.
        - Output: :math:`(N, C, H, W)`, same as the input.

    Examples:
        >>> srm = SRM(32).eval()
        >>> srm(torch.randn(1, 32, 1, 1)).shape
        torch.Size([1, 32, 1, 1])
    """

    def __init__(
        self,
        channels: int,
        *,
        eps: float = 1e-5,
        gate_layer: Callable[[], nn.Module] = nn.Sigmoid,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.channels = check_positive_int(channels, "channels")
        self.eps = check_in_interval(eps, "eps", 0.0, math.inf, low_closed=False, high_closed=False)
        self.cfc = nn.Parameter(torch.empty(channels, 2, device=device, dtype=dtype))
        self.bn = nn.BatchNorm1d(channels, device=device, dtype=dtype)
        self.gate = gate_layer()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Zero the CFC weights (official initialisation) and reset the batch norm."""
        nn.init.zeros_(self.cfc)
        self.bn.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        """Return ``x`` scaled by the style gate."""
        check_feature_map(x, "x")
        var, mean = torch.var_mean(x, dim=(2, 3), correction=0)
        std = torch.sqrt(var + self.eps)
        style = torch.stack((mean, std), dim=2)  # (N, C, 2)
        z = self.bn((style * self.cfc).sum(dim=2))  # channel-wise fully connected layer, (N, C)
        gate: Tensor = self.gate(z)
        return x * gate[:, :, None, None]

    def extra_repr(self) -> str:
        """Describe the configuration."""
        return f"channels={self.channels}, eps={self.eps}"
