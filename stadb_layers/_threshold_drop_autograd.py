"""Training path of :class:`~stadb_layers.SelfThresholdDrop`: backend dispatch and the autograd function.

:func:`threshold_drop_with_maps` is what the layer's ``forward`` calls. Under TorchScript and
``torch.compile`` it runs the reference operators of :mod:`.kernels.threshold_mask` (the compiler fuses
them itself); in eager mode it runs :class:`ThresholdDropFunction`, which saves only the boolean keep
mask for backward, with the backend that :func:`fused_backend` picks for the input:

* ``"cpu"``: :mod:`.kernels.cpu_threshold_drop`, a cache-blocked pass of reference ATen operators;
* ``"triton"``: :mod:`.kernels.triton_threshold_drop` for CUDA tensors when Triton is installed;
* none: the reference operators, on other devices and under functorch transforms (``vmap``,
  ``torch.func.grad``), which have batching and gradient rules for them but not for the function.

Every backend computes the attention with the reference reduction, so their masks are bit-identical.
"""

from __future__ import annotations

import functools
import importlib
from types import ModuleType
from typing import Any

import torch

from .kernels import cpu_threshold_drop
from .kernels.threshold_mask import attention_and_keep, channel_mean_attention, keep_mask_from_attention

__all__ = ["ThresholdDropFunction", "fused_backend", "fused_threshold_drop", "threshold_drop_with_maps"]


@functools.cache
def _triton_kernels() -> ModuleType | None:
    """The Triton kernel module, imported on first use; None when Triton is not installed."""
    module = importlib.import_module(".kernels.triton_threshold_drop", __package__)
    return module if module.available() else None


def fused_backend(x: torch.Tensor, inplace: bool) -> str | None:
    """``"triton"``, ``"cpu"`` or None (use the reference operators) for input ``x``."""
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


class ThresholdDropFunction(torch.autograd.Function):
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
                x, functools.partial(attention_and_keep, alpha=alpha, drop_ratio=drop_ratio), inplace=inplace
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


@torch.jit.unused
def fused_threshold_drop(
    x: torch.Tensor,
    alpha: float | None,
    drop_ratio: float | None,
    inplace: bool = False,
    backend: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(out, attention, keep)`` through the fused path; ``backend`` overrides the automatic choice.

    Arguments are assumed validated. Falls back to the reference operators where no fused backend applies.
    Eager mode only (TorchScript replaces the call by a raise).
    """
    if backend is None:
        backend = fused_backend(x, inplace)
    if inplace:
        _check_inplace_allowed(x)
    if backend is None:
        attention, keep = attention_and_keep(x, alpha, drop_ratio)
        return (x.mul_(keep) if inplace else x * keep), attention, keep
    out, attention, keep = ThresholdDropFunction.apply(x, alpha, drop_ratio, inplace, backend)
    # With autograd off, apply() returns an alias of a dirtied input; hand back the input itself.
    return (x if inplace else out), attention, keep


def threshold_drop_with_maps(
    x: torch.Tensor, alpha: float | None, drop_ratio: float | None, inplace: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(out, attention, keep)`` of the training-mode drop, by the fastest path that applies.

    Arguments are assumed validated: ``x`` a floating (N, C, H, W) map and exactly one of ``alpha`` and
    ``drop_ratio`` set. TorchScript and ``torch.compile`` run the reference operators, eager mode
    :func:`fused_threshold_drop`; every path gives the same bits.
    """
    if torch.jit.is_scripting() or torch.compiler.is_compiling():
        attention, keep = attention_and_keep(x, alpha, drop_ratio)
        return (x.mul_(keep) if inplace else x * keep), attention, keep
    return fused_threshold_drop(x, alpha, drop_ratio, inplace)
