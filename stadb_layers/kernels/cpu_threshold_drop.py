"""CPU passes of :class:`~stadb_layers.SelfThresholdDrop`.

The eager formulation ``x.mean(1)`` -> ``amax`` -> compare -> ``x * keep`` streams the whole input from
memory twice, allocates input-sized temporaries (for 16-bit inputs ``mean(dtype=float32)`` first
materialises a float32 copy of the whole input) and writes a freshly allocated output. Here the batch is
cut into chunks of about :data:`CHUNK_BYTES` per thread (a (2048, 24, 8) float32 sample is 1.5 MiB),
each reduced and then masked right away: the second read of the chunk comes from cache and every
temporary is chunk-sized. Every step is a stock ATen operator on the chunk, so both cores work on each
step through ATen's intra-op parallelism, and the attention and mask are computed by exactly the
operators of the eager reference: bit-identical results, because a sample's reduction order does not
depend on how many samples share the call. (On the 2-core machine of ``benchmarks/RESULTS.md`` the
float32 channel mean is compute-bound, so chunking gains float32 little; it makes bfloat16 several
times faster.)

Output and input gradient are plain ``torch.empty_like`` buffers. A buffer pool that recycled them
(fresh buffers page-fault) and ``MADV_HUGEPAGE`` advice for buffers over 32 MiB were measured in a
STADB training step and removed: together they saved about 0.1-0.2 % of the step, far below the 5 %
that would have paid for their code (``benchmarks/RESULTS.md``, issue 25).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["backward", "forward", "samples_per_chunk"]

#: Input bytes per forward chunk and per thread (a chunk stays well inside a shared L3). Large enough that the
#: per-chunk cost (a few ATen calls and parallel regions, tens of microseconds) stays small, small enough
#: that the chunk is still cached when it is read the second time and that the float32 copy the mean of
#: a 16-bit chunk makes stays far below the 32 MiB above which allocations page-fault. Measured on the
#: 2-core machine of ``benchmarks/RESULTS.md``: for float32, 2-16 MiB chunks and the whole batch run
#: alike (the channel mean is compute-bound there); for bfloat16, 2-4 MiB chunks run 3-4x faster than
#: the whole batch.
CHUNK_BYTES = 2 * 1024 * 1024

DecideFn = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def samples_per_chunk(x: torch.Tensor) -> int:
    """Samples per forward chunk: about :data:`CHUNK_BYTES` of ``x`` per ATen thread, at least one.

    A map with a single position (``H * W == 1``) is processed in one chunk: a one-sample chunk would
    reduce to a single output element, which ATen splits across threads in a different order than the
    whole batch, and such maps are tiny anyway.
    """
    n, c, h, w = x.shape
    if h * w == 1:
        return max(n, 1)
    sample_bytes = max(c * h * w * x.element_size(), 1)
    return max(1, min(n, CHUNK_BYTES * torch.get_num_threads() // sample_bytes))


def forward(
    x: torch.Tensor, decide: DecideFn, *, inplace: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Masked output, attention and boolean keep mask, chunk by chunk over the batch.

    Args:
        x: (N, C, H, W) CPU feature map, any strides.
        decide: Maps a chunk ``x[i:j]`` to its ``(attention, keep)`` maps, both (j - i, 1, H, W). It must
            treat samples independently (the eager reference does).
        inplace: Multiply ``x`` itself instead of writing a new tensor.

    Returns:
        ``(out, attention, keep)``; ``out`` is ``x`` when ``inplace``.
    """
    n = x.shape[0]
    out = x if inplace else torch.empty_like(x)
    step = samples_per_chunk(x)
    if step >= n:
        attention, keep = decide(x)
        if inplace:
            x.mul_(keep.to(x.dtype))
        else:
            torch.mul(x, keep.to(x.dtype), out=out)
        return out, attention, keep
    attention_chunks: list[torch.Tensor] = []
    keep_chunks: list[torch.Tensor] = []
    for start in range(0, n, step):
        chunk = x[start : start + step]
        chunk_attention, chunk_keep = decide(chunk)
        attention_chunks.append(chunk_attention)
        keep_chunks.append(chunk_keep)
        # A same-dtype multiplier takes ATen's vectorised path; bool would be cast element by element.
        multiplier = chunk_keep.to(x.dtype)
        if inplace:
            chunk.mul_(multiplier)
        else:
            torch.mul(chunk, multiplier, out=out[start : start + step])
    return out, torch.cat(attention_chunks), torch.cat(keep_chunks)


def backward(grad: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``grad * keep`` into a new tensor: one streaming pass, the (N, 1, H, W) mask broadcast over C."""
    grad_input = torch.empty_like(grad)
    torch.mul(grad, keep.to(grad.dtype), out=grad_input)
    return grad_input
