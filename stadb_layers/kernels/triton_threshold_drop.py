"""Triton pass of :class:`~stadb_layers.SelfThresholdDrop` for CUDA tensors.

Design
------
A mask that depends on the whole sample cannot be applied in the same sweep that computes it, unless the
sample stays on chip between the two: a (2048, 24, 8) float32 sample is 1.5 MiB, several times an SM's
shared memory, and spreading it over a cluster of programs would need a grid-wide barrier, which Triton
does not offer safely (and which the CPU interpreter used by CI would deadlock on). One program per
sample instead would launch only N programs: 64 on a 132-SM H100, half the chip idle. So the layer runs
two passes, each with thousands of programs:

1. **Attention** (one read of ``x``): the channel mean, computed by the same ATen reduction as the eager
   reference, in float32 for 16-bit inputs. Doing it with PyTorch's operator rather than a Triton
   reduction makes the fp32 mask bit-identical to the reference by construction: a different summation
   order would change the last bit of some means and could flip a comparison at an exact tie.
2. **Threshold and apply** (:func:`threshold_and_apply`, one read of ``x``, one write of ``out``): a 2-D
   grid of (channel block, sample) programs. Each program reduces its sample's (H*W)-element attention
   row to the per-sample max (redundantly across a sample's programs: 768 bytes from L2, nothing next to
   the tile it streams), forms ``threshold = alpha * max`` in float32 exactly like
   ``alpha * attention.amax()``, and multiplies its (BLOCK_C, H*W) tile by ``attention < threshold``.
   The first channel block of each sample also writes the boolean keep mask. ``drop_ratio`` mode needs a
   per-sample k-th largest value instead; it is found with ``torch.topk`` on the small (N, H*W) map
   and the mask goes to :func:`apply_keep`.

The backward is :func:`apply_keep` on the gradient: ``grad * keep``, one read and one write.

Expected bandwidth (not measured: no GPU was available while this was written). The backward moves
what a device-to-device copy moves (read ``grad``, write the input gradient), so it should run near
copy bandwidth. The forward, in place or not, moves 3 bytes per 2 of a copy: ``x`` is read twice. To
win some of that back the apply pass walks the samples in reverse: the samples the attention pass read
last are still in L2 (50 MiB on an H100). An input that fits in L2 (``(32, 1024, 24, 8)`` float32 is
24 MiB, the bfloat16 shapes of the benchmark are 12-48 MiB) should then run near copy bandwidth; a
96 MiB float32 input should reach about 70-80 % of it, so below the 80 % target. Reaching it there would
take a single pass that keeps each sample on chip (a grid-wide barrier, see above).

Tiles use the tensor's own strides (contiguous and channels-last are both coalesced: Triton specialises
unit strides), 64-bit offsets, and multiply by a 0/1 factor, so NaN and signed zeros come out as in
``x * keep``. Triton is imported here at module level; the layer imports this module only when it
needs it, so the library itself imports without Triton.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised only where Triton is missing
    triton = None

__all__ = ["apply_keep", "available", "supports", "threshold_and_apply"]

#: Input dtypes the kernels are written for; other dtypes take the eager path.
SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

#: Elements per (BLOCK_C, BLOCK_HW) tile: 16 KiB of float32, enough loads in flight per program.
_TILE_ELEMENTS = 4096
_MAX_BLOCK_HW = 128
_MAX_SAMPLES_PER_LAUNCH = 65535


def available() -> bool:
    """Whether Triton could be imported."""
    return triton is not None


def supports(x: torch.Tensor) -> bool:
    """Whether the kernels handle ``x``'s dtype (float32, float16 or bfloat16)."""
    return x.dtype in SUPPORTED_DTYPES


if triton is not None:

    @triton.jit
    def _threshold_apply_kernel(  # type: ignore[no-untyped-def]
        x_ptr,
        out_ptr,
        attention_ptr,
        keep_ptr,
        num_samples,
        num_channels,
        num_positions,
        width,
        stride_xn,
        stride_xc,
        stride_xh,
        stride_xw,
        stride_on,
        stride_oc,
        stride_oh,
        stride_ow,
        alpha,
        KEEP_GIVEN: tl.constexpr,  # noqa: N803
        FLAT_POSITIONS: tl.constexpr,  # noqa: N803
        BLOCK_C: tl.constexpr,  # noqa: N803
        BLOCK_HW: tl.constexpr,  # noqa: N803
    ):
        """``out[n, c] = x[n, c] * keep[n]`` for one (channel block, sample) tile.

        With ``KEEP_GIVEN`` the keep mask is read from ``keep_ptr`` (uint8, (N, H*W)). Otherwise it is
        ``attention[n] < alpha * max(attention[n])`` (float32 attention, (N, H*W)), except that a row
        with a NaN or without a positive maximum is kept whole (the rule of
        ``keep_mask_from_attention``); the first channel block stores it to ``keep_ptr``. With
        ``FLAT_POSITIONS`` the (H, W) plane of ``x`` and ``out`` is one strided axis of step
        ``stride_xw`` / ``stride_ow`` (contiguous and channels-last tensors), which lets Triton vectorise
        the accesses; otherwise positions are split into (h, w).
        """
        channel_block = tl.program_id(0)
        # Reverse sample order: the attention pass read the last samples last, so they are still in L2.
        sample = (num_samples - 1 - tl.program_id(1)).to(tl.int64)
        channels = channel_block * BLOCK_C + tl.arange(0, BLOCK_C)
        channel_mask = channels < num_channels
        x_base = x_ptr + sample * stride_xn + channels.to(tl.int64)[:, None] * stride_xc
        out_base = out_ptr + sample * stride_on + channels.to(tl.int64)[:, None] * stride_oc
        row = sample * num_positions

        if not KEEP_GIVEN:
            row_max = tl.full((BLOCK_HW,), float("-inf"), tl.float32)
            nan_count = tl.zeros((BLOCK_HW,), tl.int32)
            for start in range(0, num_positions, BLOCK_HW):
                positions = start + tl.arange(0, BLOCK_HW)
                values = tl.load(
                    attention_ptr + row + positions, mask=positions < num_positions, other=float("-inf")
                )
                row_max = tl.maximum(row_max, values)
                nan_count += (values != values).to(tl.int32)
            peak = tl.max(row_max, axis=0)
            # A NaN threshold keeps the whole row below, since ``x >= NaN`` is false. tl.maximum may skip
            # NaN, hence the count.
            threshold = tl.where(peak > 0, peak * alpha, float("nan"))
            threshold = tl.where(tl.sum(nan_count, axis=0) > 0, float("nan"), threshold)

        for start in range(0, num_positions, BLOCK_HW):
            positions = start + tl.arange(0, BLOCK_HW)
            position_mask = positions < num_positions
            if KEEP_GIVEN:
                keep = tl.load(keep_ptr + row + positions, mask=position_mask, other=0) != 0
            else:
                attention = tl.load(attention_ptr + row + positions, mask=position_mask, other=0.0)
                keep = ~(attention >= threshold)  # in an erasable row (no NaN): attention < threshold
                if channel_block == 0:
                    tl.store(keep_ptr + row + positions, keep.to(tl.uint8), mask=position_mask)
            if FLAT_POSITIONS:
                flat = positions.to(tl.int64)[None, :]
                x_ptrs = x_base + flat * stride_xw
                out_ptrs = out_base + flat * stride_ow
            else:
                h = (positions // width).to(tl.int64)[None, :]
                w = (positions % width).to(tl.int64)[None, :]
                x_ptrs = x_base + h * stride_xh + w * stride_xw
                out_ptrs = out_base + h * stride_oh + w * stride_ow
            tile_mask = channel_mask[:, None] & position_mask[None, :]
            values = tl.load(x_ptrs, mask=tile_mask, other=0.0)
            # 0/1 factor in float32 (exact for every supported dtype, NaN * 0 stays NaN).
            product = values.to(tl.float32) * keep.to(tl.float32)[None, :]
            tl.store(out_ptrs, product.to(out_ptr.dtype.element_ty), mask=tile_mask)


def _blocks(num_channels: int, num_positions: int) -> tuple[int, int]:
    """(BLOCK_C, BLOCK_HW): powers of two, a tile of about :data:`_TILE_ELEMENTS` elements.

    BLOCK_HW is the power of two up to :data:`_MAX_BLOCK_HW` that pads H*W least (192 -> 64, not 128).
    """
    assert triton is not None
    largest = min(triton.next_power_of_2(num_positions), _MAX_BLOCK_HW)
    candidates = [largest >> shift for shift in range(largest.bit_length()) if largest >> shift >= 16]
    block_hw = min(candidates or [largest], key=lambda b: (triton.cdiv(num_positions, b) * b, -b))
    block_c = min(triton.next_power_of_2(num_channels), max(1, _TILE_ELEMENTS // block_hw))
    return block_c, block_hw


def _position_stride(t: torch.Tensor) -> int | None:
    """Stride of the flattened (H, W) plane of ``t`` when it is one strided axis, else None."""
    _, _, h, w = t.shape
    stride_h, stride_w = t.stride(2), t.stride(3)
    if w == 1:
        return stride_h
    if h == 1 or stride_h == w * stride_w:
        return stride_w
    return None


def _launch(
    x: torch.Tensor,
    out: torch.Tensor,
    attention: torch.Tensor,
    keep: torch.Tensor,
    alpha: float,
    keep_given: bool,
) -> None:
    if triton is None:
        raise RuntimeError("Triton is not installed")
    n, c, h, w = x.shape
    if out.shape != x.shape:
        raise ValueError(f"out has shape {tuple(out.shape)}, expected {tuple(x.shape)}")
    if n == 0 or c == 0 or h * w == 0:
        return
    block_c, block_hw = _blocks(c, h * w)
    x_step, out_step = _position_stride(x), _position_stride(out)
    flat = x_step is not None and out_step is not None
    x_strides = [x.stride(0), x.stride(1), x.stride(2), x_step if flat else x.stride(3)]
    out_strides = [out.stride(0), out.stride(1), out.stride(2), out_step if flat else out.stride(3)]
    kernel: Any = _threshold_apply_kernel
    device = torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext()
    with device:
        # Grid axis 1 holds at most 65535 samples per launch.
        for first in range(0, n, _MAX_SAMPLES_PER_LAUNCH):
            last = min(first + _MAX_SAMPLES_PER_LAUNCH, n)
            kernel[(triton.cdiv(c, block_c), last - first)](
                x[first:last],
                out[first:last],
                attention[first:last],
                keep[first:last],
                last - first,
                c,
                h * w,
                w,
                *x_strides,
                *out_strides,
                alpha,
                KEEP_GIVEN=keep_given,
                FLAT_POSITIONS=flat,
                BLOCK_C=block_c,
                BLOCK_HW=block_hw,
            )


def _flat_rows(t: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) map as a contiguous (N, H*W) tensor (a view when already laid out that way)."""
    return t.reshape(t.shape[0], -1).contiguous()


def threshold_and_apply(
    x: torch.Tensor, attention: torch.Tensor, alpha: float, out: torch.Tensor
) -> torch.Tensor:
    """Fused alpha-mode threshold and mask: writes ``x * keep`` to ``out`` and returns ``keep``.

    Args:
        x: (N, C, H, W) float32/float16/bfloat16 tensor, any strides.
        attention: (N, 1, H, W) float32 channel-mean attention of ``x``.
        alpha: Fraction of the per-sample peak attention at which positions are dropped.
        out: Output tensor shaped like ``x``; may be ``x`` itself (in place).

    Returns:
        The boolean keep mask, (N, 1, H, W): ``attention < alpha * attention.amax((2, 3))``, all True for
        a sample whose attention has a NaN or a peak ``<= 0``.
    """
    if attention.dtype != torch.float32:
        raise ValueError(f"attention must be float32, got {attention.dtype}")
    n, _, h, w = x.shape
    keep = torch.empty((n, 1, h, w), dtype=torch.bool, device=x.device)
    _launch(x, out, _flat_rows(attention), keep.view(torch.uint8), float(alpha), keep_given=False)
    return keep


def apply_keep(x: torch.Tensor, keep: torch.Tensor, out: torch.Tensor) -> None:
    """``out = x * keep`` with a (N, 1, H, W) boolean ``keep`` broadcast over channels.

    Used for the ``drop_ratio`` forward and for every backward (``grad * keep``). ``out`` may be ``x``.
    """
    if keep.dtype != torch.bool:
        raise ValueError(f"keep must be a bool tensor, got {keep.dtype}")
    flat_keep = _flat_rows(keep).view(torch.uint8)
    _launch(x, out, flat_keep, flat_keep, 1.0, keep_given=True)
