"""Self-thresholding feature drop.

From "STADB: A Self-Thresholding Attention Guided ADB Network for Person Re-identification"
(Jiang, Wang, Wang, Zheng), building on the attention-based dropout layer (ADL) of Choe and Shim,
"Attention-based Dropout Layer for Weakly Supervised Object Localization", CVPR 2019.

The layer erases the most discriminative positions of a feature map during training, so the network
has to learn from the remaining ones.

:func:`self_threshold_drop` is the functional op and :class:`SelfThresholdDrop` the layer; both run one
path, ``threshold_drop_with_maps`` of :mod:`stadb_layers._threshold_drop_autograd`: a custom autograd
function with fused passes (a Triton kernel for CUDA tensors, a cache-blocked ATen pass on CPU), and the
eager formulation everywhere else and under TorchScript and ``torch.compile``. The mask rule, with the
reference operators that every pass reproduces bit for bit, is :mod:`stadb_layers.kernels.threshold_mask`.

Edge semantics (see :func:`self_threshold_drop`): with ``alpha``, a sample without a positive peak
attention is left unchanged; in both modes a sample whose attention has a NaN is left unchanged, so
non-finite values propagate to the output instead of being masked away.
"""

import torch
from torch import nn

from ._threshold_drop_autograd import threshold_drop_with_maps
from .checks import check_feature_map, check_in_interval

__all__ = ["SelfThresholdDrop", "self_threshold_drop"]

DEFAULT_ALPHA = 0.8


def _resolve_mode(alpha: float | None, drop_ratio: float | None) -> tuple[float | None, float | None]:
    """Validate the two mutually exclusive modes and fill in the paper's default ``alpha``."""
    if drop_ratio is not None:
        if alpha is not None:
            raise ValueError("alpha and drop_ratio are mutually exclusive; pass only one of them")
        return None, check_in_interval(
            drop_ratio, "drop_ratio", 0.0, 1.0, low_closed=False, high_closed=False
        )
    if alpha is None:
        alpha = DEFAULT_ALPHA
    return check_in_interval(alpha, "alpha", 0.0, 1.0, low_closed=False, high_closed=True), None


def self_threshold_drop(
    x: torch.Tensor, alpha: float | None = None, drop_ratio: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Zero the most strongly activated spatial positions of a feature map.

    The attention map is the channel mean of ``x``, and a position is dropped when its attention reaches
    the per-sample threshold:

    .. math::

        A_{n,h,w} = \frac{1}{C} \sum_{c} x_{n,c,h,w}, \qquad
        \tau_n = \alpha \max_{h,w} A_{n,h,w}, \qquad
        M_{n,h,w} = 1 - [A_{n,h,w} \ge \tau_n]\,[\max_{h,w} A_{n,h,w} > 0], \qquad
        y = x \odot M.

    This is the rule of the ADL and STADB reference code (``attention >= threshold`` is dropped). The
    paper's prose says "greater than"; the two differ at ``alpha = 1``, where the reference rule still
    drops the peak position. With ``drop_ratio`` instead, :math:`\tau_n` is the k-th largest attention
    value of the sample with :math:`k = \lceil \text{drop\_ratio} \cdot H W \rceil`, so at least that
    fraction of positions is erased (ties at the threshold are erased too).

    Edge cases, decided here and identical on every backend:

    * **No positive peak** (``alpha`` mode): a sample whose peak attention is ``<= 0`` is left unchanged.
      For the post-ReLU input of the paper this is an all-zero map, with no activated region to erase.
      (The bare rule would drop nothing for a negative peak, since ``alpha`` times it lies above it,
      but every zero-attention position at a zero peak.) ``drop_ratio`` mode ranks positions, whatever
      their sign.
    * **NaN**: a sample whose attention has a NaN (a NaN in ``x``, or ``+inf`` and ``-inf`` in one
      column) is left unchanged in both modes, so the NaN reaches the output and the gradient instead
      of leaving a clean-looking zeroed sample. Nothing raises (that would need a device sync).
    * **Infinity**: a ``+inf`` peak is a positive peak; its positions are dropped and ``x * 0`` turns
      their infinite values into NaN, which again reaches the output.

    The mask is a constant for autograd, so :math:`\partial y / \partial x = M`. Half-precision inputs
    compute the attention in float32.

    The function runs the layer's fused path (see :class:`SelfThresholdDrop` for its performance), which
    saves only the boolean mask for backward; its masks equal the eager formulation's bit for bit.

    Args:
        x: Feature map of shape (N, C, H, W), floating point.
        alpha: Threshold as a fraction of each sample's peak attention, in (0, 1]. Defaults to 0.8 (the
            paper's value) when ``drop_ratio`` is not given.
        drop_ratio: Fraction of positions to erase, in (0, 1). Mutually exclusive with ``alpha``.

    Returns:
        ``(out, keep_mask)``: the masked feature map, same shape and dtype as ``x``, and the boolean keep
        mask of shape (N, 1, H, W).

    Raises:
        ValueError: If ``x`` is not a 4-D floating tensor with a non-empty spatial size, if ``alpha`` or
            ``drop_ratio`` is out of range, or if both are given.

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
    out, _, keep = threshold_drop_with_maps(x, alpha, drop_ratio, False)
    return out, keep


class SelfThresholdDrop(nn.Module):
    r"""Self-thresholding drop: erase the most discriminative positions during training.

    In training mode the layer computes the channel-mean attention of its input, drops every position
    whose attention reaches :math:`\alpha` times the sample's peak (or the top ``drop_ratio`` fraction of
    positions) and returns ``x * keep_mask``; see :func:`self_threshold_drop` for the formula, for how
    the rule relates to the paper's text and for the edge cases (a sample without a positive peak, or with
    a NaN in its attention, is left unchanged). In eval mode it is the identity.

    After each training forward, :attr:`last_attention` (float32 for 16-bit inputs) and
    :attr:`last_keep_mask` hold the detached (N, 1, H, W) maps of that call for visualisation. They cost
    ``N*H*W`` elements, a ``1/C`` fraction of the input, and hold no autograd graph.

    Performance: the training forward is a custom autograd function that saves only the boolean keep
    mask for backward (``N*H*W`` bytes, never the input) and allocates one output, or none with
    ``inplace=True``. CUDA tensors (float32/float16/bfloat16) use a Triton kernel when Triton is
    installed, CPU tensors a cache-blocked pass that reads the input from memory once; other devices,
    TorchScript and ``torch.compile`` use the eager formulation (the reference operators of
    :mod:`stadb_layers.kernels.threshold_mask`). :func:`self_threshold_drop` runs the same path. All paths
    compute the attention with the same reduction as the eager formulation, so the masks are
    bit-identical to it. For 16-bit inputs that attention is accumulated in float32, so the mask can
    differ, at positions within rounding of the threshold, from an implementation that averages in
    bfloat16 or float16 (such as the original ADL code run under autocast).

    Args:
        alpha: Threshold as a fraction of each sample's peak attention, in (0, 1]. Defaults to 0.8 (the
            paper's value) when ``drop_ratio`` is not given.
        drop_ratio: Fraction of positions to erase, in (0, 1). Mutually exclusive with ``alpha``.
        inplace: Multiply the input in place, like ``nn.ReLU(inplace=True)``. Only valid where autograd
            does not need the unmasked input (for example right after a convolution or BatchNorm); like
            ``mul_``, it raises for a leaf that requires grad, and backward raises if an earlier operator
            saved the input.

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

    alpha: float | None
    drop_ratio: float | None
    last_attention: torch.Tensor | None
    last_keep_mask: torch.Tensor | None

    def __init__(
        self, alpha: float | None = None, *, drop_ratio: float | None = None, inplace: bool = False
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
        out, attention, keep = threshold_drop_with_maps(x, self.alpha, self.drop_ratio, self.inplace)
        self.last_attention = attention.detach()
        self.last_keep_mask = keep
        return out

    def extra_repr(self) -> str:
        """Mode and its parameter, plus ``inplace`` when set."""
        mode = f"alpha={self.alpha}" if self.drop_ratio is None else f"drop_ratio={self.drop_ratio}"
        return mode + (", inplace=True" if self.inplace else "")
