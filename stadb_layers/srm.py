"""Style-based Recalibration Module (SRM).

Lee, Kim and Nam, "SRM: A Style-based Recalibration Module for Convolutional Neural Networks", ICCV 2019,
https://arxiv.org/abs/1903.10829. Official code: https://github.com/hyunjaelee410/style-based-recalibration-module.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from stadb_layers.checks import check_feature_map, check_in_interval, check_positive_int

__all__ = ["SRM"]


def _style_statistics(x: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    r"""Per-channel mean :math:`\mu` and :math:`\sigma = \sqrt{\mathrm{Var} + \epsilon}`, each (N, C).

    They are computed from :math:`x / s`, with :math:`s` a power of two at most
    :math:`\max(1, \max_{h,w} |x|)` per sample and channel, and scaled back by :math:`s`, so no square
    can overflow. Scaling by a power of two is exact, so for float32 and float64 inputs the result is
    bit-identical to the plain formula wherever that one does not overflow; float16 and bfloat16 inputs
    are computed in float32 and rounded once. :math:`s` is a constant for autograd, which is exact:
    :math:`s \sqrt{\mathrm{Var}(x / s) + \epsilon / s^2} = \sqrt{\mathrm{Var}(x) + \epsilon}` for every
    :math:`s > 0`.
    """
    work = torch.float32 if x.element_size() < 4 else x.dtype
    peak = torch.linalg.vector_norm(x.detach(), math.inf, dim=(2, 3), keepdim=True, dtype=work)
    scale = torch.exp2(torch.floor(torch.log2(peak.clamp(min=1.0))))
    var, mean = torch.var_mean(x * scale.reciprocal(), dim=(2, 3), correction=0)  # exact: a power of two
    scale = scale.flatten(1)
    scaled_eps = eps / (scale * scale)
    # For huge s (float32: from about 2**50 for eps = 1e-8) the scaled eps is subnormal, too coarse to
    # give sqrt(eps) back, then 0. A constant channel there has sigma exactly sqrt(eps); the square
    # root, infinitely steep at 0, is not evaluated. The bound is float32's smallest normal number
    # (a literal: TorchScript has neither torch.finfo nor float globals); float64 work uses it too.
    exact = (var == 0) & (scaled_eps < 1.1754943508222875e-38)
    var = var + scaled_eps
    std = torch.where(exact, math.sqrt(eps), scale * torch.sqrt(torch.where(exact, 1.0, var)))
    return (scale * mean).to(x.dtype), std.to(x.dtype)


class _StyleStatistics(torch.autograd.Function):
    r""":func:`_style_statistics` with a hand-written backward that saves ``x``, never the scaled copy.

    Autograd would keep the scaled copy of the input for the backward of ``var_mean``: one more
    input-sized tensor (float32, so twice the input for 16-bit inputs). ``x`` itself is kept alive anyway by
    the gating product. The backward is the analytic gradient

    .. math::

        \frac{\partial L}{\partial x} = \frac{1}{HW}\Big(\frac{\partial L}{\partial \mu}
            + \frac{\partial L}{\partial \sigma}\,\frac{x - \mu}{\sigma}\Big),

    and under ``create_graph`` it recomputes :math:`\mu, \sigma` differentiably, so double backward stays
    exact.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, eps: float) -> tuple[Tensor, Tensor]:
        mean, std = _style_statistics(x, eps)
        ctx.save_for_backward(x, mean, std)
        ctx.eps = eps
        return mean, std

    @staticmethod
    def backward(ctx: Any, grad_mean: Tensor, grad_std: Tensor) -> tuple[Tensor, None]:
        x, mean, std = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: the gradient must be differentiable in x as well
            mean, std = _style_statistics(x, ctx.eps)
        positions = x.shape[2] * x.shape[3]
        offset = (grad_mean / positions)[:, :, None, None]
        slope = (grad_std / (positions * std))[:, :, None, None]
        return torch.addcmul(offset, x - mean[:, :, None, None], slope), None


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

        **Range and dtype.** The style statistics are taken on a temporary per-channel copy of the input
        scaled by a power of two (autograd keeps only the input), so they stay finite for inputs up to the
        dtype's range (float32: about ``1e38``, where the plain formula overflows from about ``1e19``) and are
        bit-identical to it at ordinary magnitudes for float32 and float64. The batch norm after the CFC still
        sees :math:`z` at the input's magnitude: in train mode, with non-zero CFC weights, its running
        variance overflows for inputs beyond about ``1e19``, as any ``BatchNorm1d`` would. The output has the
        dtype of the input, also when a float32 module gets float16 or bfloat16 input, with or without
        autocast. Non-finite input gives a non-finite output (nothing raises).

    Reference:
        Lee et al., "SRM: A Style-based Recalibration Module for Convolutional Neural Networks", ICCV 2019.

    Args:
        channels: Number of input channels :math:`C`.
        eps: Positive :math:`\epsilon` added to the variance before the square root.
        gate_layer: Factory of the gate (sigmoid by default), called with no arguments.
        device: Device of the parameters and buffers.
        dtype: Floating dtype of the parameters and buffers.

    Shape:
        - Input: :math:`(N, C, H, W)` with :math:`C` = ``channels`` and :math:`H, W \ge 1`; otherwise
          ``forward`` raises a one-line ``ValueError``.
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
        """Return ``x`` scaled by the style gate, in the dtype of ``x``."""
        check_feature_map(x, "x", "SRM", self.channels)
        if torch.jit.is_scripting() or torch.compiler.is_compiling():
            mean, std = _style_statistics(x, self.eps)  # the compiler decides what to keep for backward
        else:
            mean, std = self._eager_style_statistics(x)
        style = torch.stack((mean, std), dim=2)  # (N, C, 2)
        z = self.bn((style * self.cfc).sum(dim=2))  # channel-wise fully connected layer, (N, C)
        gate: Tensor = self.gate(z)
        # A float32 module on 16-bit input would otherwise promote the output to float32.
        return x * gate.to(x.dtype)[:, :, None, None]

    @torch.jit.unused
    def _eager_style_statistics(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """:func:`_style_statistics`, through :class:`_StyleStatistics` when autograd records it."""
        if torch.is_grad_enabled() and x.requires_grad and not torch._C._are_functorch_transforms_active():
            statistics: tuple[Tensor, Tensor] = _StyleStatistics.apply(x, self.eps)
            return statistics
        return _style_statistics(x, self.eps)

    def extra_repr(self) -> str:
        """Describe the configuration."""
        return f"channels={self.channels}, eps={self.eps}"
