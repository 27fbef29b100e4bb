"""The mask rule of :class:`~stadb_layers.SelfThresholdDrop`, with the reference ATen operators.

:func:`channel_mean_attention` and :func:`keep_mask_from_attention` are the rule that
:func:`~stadb_layers.self_threshold_drop` states: the eager formulation runs them on the whole input,
the CPU pass (:mod:`.cpu_threshold_drop`) on chunks of samples, and the Triton pass
(:mod:`.triton_threshold_drop`) takes the attention from :func:`channel_mean_attention` and reproduces
the threshold comparison bit for bit. Written in the TorchScript subset: the scripted layer calls them.
"""

from __future__ import annotations

import math

import torch

__all__ = ["attention_and_keep", "channel_mean_attention", "keep_mask_from_attention"]


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


def attention_and_keep(
    x: torch.Tensor, alpha: float | None, drop_ratio: float | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention map and keep mask of ``x`` with the reference operators."""
    attention = channel_mean_attention(x)
    return attention, keep_mask_from_attention(attention, alpha, drop_ratio)
