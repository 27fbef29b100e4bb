"""Self-thresholding feature drop.

From "STADB: A Self-Thresholding Attention Guided ADB Network for Person Re-identification"
(Jiang, Wang, Wang, Zheng), building on the attention-based dropout layer (ADL) of Choe and Shim,
"Attention-based Dropout Layer for Weakly Supervised Object Localization", CVPR 2019.

The layer erases the most discriminative positions of a feature map during training, so the network
has to learn from the remaining ones.

:func:`self_threshold_drop` is the eager formulation and the reference. :class:`SelfThresholdDrop` runs
the same computation through a custom autograd function with fused passes (see
:class:`_ThresholdDropFunction`): a Triton kernel for CUDA tensors, a cache-blocked ATen pass on CPU, and
the eager formulation everywhere else and under TorchScript and ``torch.compile``.

Edge semantics (see :func:`self_threshold_drop`): with ``alpha``, a sample without a positive peak
attention is left unchanged; in both modes a sample whose attention has a NaN is left unchanged, so
non-finite values propagate to the output instead of being masked away.
"""

import functools
import importlib
import math
from types import ModuleType
from typing import Any

import torch
from torch import nn

from ._validation import check_feature_map, check_in_interval
from .kernels import cpu_threshold_drop

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


def channel_mean_attention(x: torch.Tensor) -> torch.Tensor:
    """Channel-mean attention map of ``x``: (N, C, H, W) -> (N, 1, H, W).

    Half-precision inputs are accumulated and returned in float32, so the threshold comparison does not
    suffer from the rounding of a 16-bit mean.
    """
    if x.dtype in (torch.float16, torch.bfloat16):
        return x.mean(dim=1, keepdim=True, dtype=torch.float32)
    return x.mean(dim=1, keepdim=True)


def keep_mask_from_attention(
    attention: torch.Tensor, alpha: float | None, drop_ratio: float | None
) -> torch.Tensor:
    """Boolean keep mask (N, 1, H, W) from an attention map, for exactly one of the two modes.

    A position is dropped when its attention reaches the sample's threshold and the sample can be erased:
    its attention has no NaN and, with ``alpha``, a positive peak. Other samples are kept whole. Every
    fused backend reproduces this rule bit for bit.
    """
    peak = attention.amax(dim=(2, 3), keepdim=True)  # NaN if the sample's attention has a NaN
    if drop_ratio is not None:
        flat = attention.flatten(1)
        num_dropped = math.ceil(drop_ratio * flat.shape[1])
        threshold = flat.topk(num_dropped, dim=1).values[:, -1:].view(-1, 1, 1, 1)
        erasable = peak == peak
    else:
        assert alpha is not None
        threshold = alpha * peak
        erasable = peak > 0  # False for NaN too
    return ~((attention >= threshold) & erasable)


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

    This function is the plain eager formulation, kept as the reference; :class:`SelfThresholdDrop`
    computes the same masks (bit for bit) with fused kernels and less memory.

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
    keep = keep_mask_from_attention(channel_mean_attention(x), alpha, drop_ratio)
    return x * keep, keep


def _attention_and_keep(
    x: torch.Tensor, alpha: float | None, drop_ratio: float | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention map and keep mask of ``x`` with the reference operators."""
    attention = channel_mean_attention(x)
    return attention, keep_mask_from_attention(attention, alpha, drop_ratio)


@functools.cache
def _triton_kernels() -> ModuleType | None:
    """The Triton kernel module, imported on first use; None when Triton is not installed."""
    module = importlib.import_module(".kernels.triton_threshold_drop", __package__)
    return module if module.available() else None


def _fused_backend(x: torch.Tensor, inplace: bool) -> str | None:
    """``"triton"``, ``"cpu"`` or None (use the eager formulation) for input ``x``."""
    if torch._C._are_functorch_transforms_active():
        return None  # vmap, torch.func.grad, ...: the eager operators have batching and grad rules
    if x.device.type == "cpu":
        return "cpu"
    if x.device.type != "cuda":
        return None
    kernels = _triton_kernels()
    if kernels is None or not kernels.supports(x):
        return None
    if inplace and not (x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)):
        return None  # let ``mul_`` report (or handle) overlapping and strided inputs
    return "triton"


def _check_inplace_allowed(x: torch.Tensor) -> None:
    """Raise before touching ``x`` where autograd forbids writing into it, as ``x.mul_`` would."""
    if not (torch.is_grad_enabled() and x.requires_grad):
        return
    if x.is_leaf:
        raise RuntimeError("a leaf Variable that requires grad is being used in an in-place operation.")
    base = x._base
    if base is not None and base.is_leaf and base.requires_grad:
        raise RuntimeError(
            "a view of a leaf Variable that requires grad is being used in an in-place operation."
        )


class _ThresholdDropFunction(torch.autograd.Function):
    """Fused self-threshold drop: ``x -> (x * keep, attention, keep)``, differentiable in ``x`` only.

    Forward:
        * ``"cpu"``: :func:`.kernels.cpu_threshold_drop.forward`, chunks of samples reduced and masked
          while they are in cache, each step a reference ATen operator.
        * ``"triton"``: the reference channel mean (one read), then one Triton pass that takes each
          sample's max, thresholds and applies the mask (``drop_ratio``: ``topk`` on the small map,
          then the same apply kernel).

    Only the boolean (N, 1, H, W) keep mask is saved for backward (``N*H*W`` bytes), never the input;
    the backward is ``grad * keep``. With ``inplace`` the input is overwritten and marked dirty, so
    autograd rejects it wherever an earlier operator saved it, as for ``nn.ReLU(inplace=True)``.
    """

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        alpha: float | None,
        drop_ratio: float | None,
        inplace: bool,
        backend: str,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if backend == "triton":
            kernels = _triton_kernels()
            assert kernels is not None
            attention = channel_mean_attention(x)
            out = x if inplace else torch.empty_like(x)
            if drop_ratio is None:
                assert alpha is not None
                keep = kernels.threshold_and_apply(x, attention, alpha, out)
            else:
                keep = keep_mask_from_attention(attention, None, drop_ratio)
                kernels.apply_keep(x, keep, out)
        else:
            out, attention, keep = cpu_threshold_drop.forward(
                x, functools.partial(_attention_and_keep, alpha=alpha, drop_ratio=drop_ratio), inplace=inplace
            )
        if inplace:
            ctx.mark_dirty(x)
        ctx.mark_non_differentiable(attention, keep)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(keep)
        ctx.backend = backend
        return out, attention, keep

    @staticmethod
    def backward(
        ctx: Any, grad_out: torch.Tensor | None, *unused_grads: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, None, None, None, None]:
        if grad_out is None:
            return None, None, None, None, None
        (keep,) = ctx.saved_tensors
        if torch.is_grad_enabled():
            # create_graph=True: stay differentiable (double backward) with the eager product.
            return grad_out * keep, None, None, None, None
        if ctx.backend == "triton":
            kernels = _triton_kernels()
            assert kernels is not None
            grad_in = torch.empty_like(grad_out)
            kernels.apply_keep(grad_out, keep, grad_in)
        else:
            grad_in = cpu_threshold_drop.backward(grad_out, keep)
        return grad_in, None, None, None, None


def _fused_threshold_drop(
    x: torch.Tensor,
    alpha: float | None,
    drop_ratio: float | None,
    inplace: bool = False,
    backend: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(out, attention, keep)`` through the fused path; ``backend`` overrides the automatic choice.

    Arguments are assumed validated. Falls back to the eager formulation where no fused backend applies.
    """
    if backend is None:
        backend = _fused_backend(x, inplace)
    if inplace:
        _check_inplace_allowed(x)
    if backend is None:
        attention, keep = _attention_and_keep(x, alpha, drop_ratio)
        return (x.mul_(keep) if inplace else x * keep), attention, keep
    out, attention, keep = _ThresholdDropFunction.apply(x, alpha, drop_ratio, inplace, backend)
    # With autograd off, apply() returns an alias of a dirtied input; hand back the input itself.
    return (x if inplace else out), attention, keep


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
    TorchScript and ``torch.compile`` use the eager formulation of :func:`self_threshold_drop`. All paths
    compute the attention with the same reduction as the eager formulation, so the masks are
    bit-identical to it. For 16-bit inputs that attention is accumulated in float32, so the mask can
    differ, at positions within rounding of the threshold, from an implementation that averages in
    bfloat16 or float16 (such as the original ADL code run under autocast). On CPU, output and gradient
    buffers of 1 MiB or more are recycled between calls once no tensor uses them (up to two idle buffers
    are kept), because fresh allocations page-fault; see :mod:`stadb_layers.kernels.cpu_threshold_drop`.

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
        if torch.jit.is_scripting() or torch.compiler.is_compiling():
            attention = channel_mean_attention(x)
            keep = keep_mask_from_attention(attention, self.alpha, self.drop_ratio)
            out = x.mul_(keep) if self.inplace else x * keep
        else:
            out, attention, keep = self._fused_forward(x)
        self.last_attention = attention.detach()
        self.last_keep_mask = keep
        return out

    @torch.jit.unused
    def _fused_forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(out, attention, keep)`` through the fused kernels (not scriptable; eager mode only)."""
        return _fused_threshold_drop(x, self.alpha, self.drop_ratio, self.inplace)

    def extra_repr(self) -> str:
        """Mode and its parameter, plus ``inplace`` when set."""
        mode = f"alpha={self.alpha}" if self.drop_ratio is None else f"drop_ratio={self.drop_ratio}"
        return mode + (", inplace=True" if self.inplace else "")
