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

The other cost is the operating system's. A buffer over glibc's largest mmap threshold (32 MiB) is fresh
``mmap`` memory: each 4 KiB page faults on its first write and is zeroed by the kernel, one more write
of the whole buffer before the operator writes it, which alone halves the throughput of the eager form.
Smaller buffers come from the heap, but inside a training step the heap grows and shrinks around them,
and about every other step their pages fault too. Two remedies:

* **Recycling** (:class:`BufferPool`, buffers of :data:`POOL_MIN_BYTES` or more): the output and the
  input gradient come from a pool that keeps the storages of the last :data:`POOL_CAPACITY` buffers it
  handed out and reuses one once no tensor refers to it any more (ATen's storage use count is 1: the
  pool's own reference), as PyTorch's CUDA caching allocator does. In a training loop the forward
  output and the input gradient of one step are free again by the next step, so after the first step
  nothing faults. The price is that up to :data:`POOL_CAPACITY` idle buffers stay allocated between
  steps; :func:`release_buffers` frees them, and ``use_buffer_pool = False`` turns recycling off.
* **Huge pages** (buffers of :data:`HUGE_PAGE_MIN_BYTES` or more): a newly allocated buffer is advised
  ``MADV_HUGEPAGE`` before it is written, which turns 8192 page faults per 32 MiB into 16 (Linux with
  transparent huge pages in ``madvise`` mode only; a no-op elsewhere). The advice changes no data and
  covers only the buffer's own pages, which are fresh ``mmap`` memory at this size.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys
import threading
from collections.abc import Callable

import torch

__all__ = [
    "BufferPool",
    "backward",
    "empty_for_streaming_write",
    "forward",
    "release_buffers",
    "samples_per_chunk",
]

#: Input bytes per forward chunk and per thread (a chunk stays well inside a shared L3). Large enough that the
#: per-chunk cost (a few ATen calls and parallel regions, tens of microseconds) stays small, small enough
#: that the chunk is still cached when it is read the second time and that the float32 copy the mean of
#: a 16-bit chunk makes stays far below the 32 MiB above which allocations page-fault. Measured on the
#: 2-core machine of ``benchmarks/RESULTS.md``: for float32, 2-16 MiB chunks and the whole batch run
#: alike (the channel mean is compute-bound there); for bfloat16, 2-4 MiB chunks run 3-4x faster than
#: the whole batch.
CHUNK_BYTES = 2 * 1024 * 1024

#: glibc's largest dynamic mmap threshold on 64-bit (``DEFAULT_MMAP_THRESHOLD_MAX``): bigger allocations
#: always get fresh, not-yet-faulted ``mmap`` pages, which are worth advising to be huge pages.
HUGE_PAGE_MIN_BYTES = 32 * 1024 * 1024

#: Smallest buffer the pool recycles; below it an allocation costs less than its bookkeeping.
POOL_MIN_BYTES = 1024 * 1024

#: Buffers the pool remembers: one forward output and one input gradient per training step.
POOL_CAPACITY = 2

_HUGE_PAGE_BYTES = 2 * 1024 * 1024
_MADV_HUGEPAGE = 14

#: Set to False to disable the huge page advice (for example to compare timings).
use_huge_page_advice = True

#: Set to False to allocate every large buffer afresh instead of recycling idle ones.
use_buffer_pool = True

_storage_use_count: Callable[[int], int] | None = getattr(torch._C, "_storage_Use_Count", None)

DecideFn = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@functools.cache
def _madvise() -> Callable[[int, int, int], int] | None:
    """``libc.madvise`` when transparent huge pages are in ``madvise`` mode on Linux, else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as mode_file:
            if "[madvise]" not in mode_file.read():
                return None  # "always" needs no advice, "never" ignores it
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    madvise = libc.madvise
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    return madvise


def _advise_huge_pages(tensor: torch.Tensor) -> None:
    """Ask for transparent huge pages on the whole 2 MiB pages inside ``tensor``'s storage (best effort)."""
    nbytes = tensor.untyped_storage().nbytes()
    if not use_huge_page_advice or tensor.device.type != "cpu" or nbytes < HUGE_PAGE_MIN_BYTES:
        return
    madvise = _madvise()
    if madvise is None:
        return
    start = tensor.untyped_storage().data_ptr()
    first = -(-start // _HUGE_PAGE_BYTES) * _HUGE_PAGE_BYTES
    last = (start + nbytes) // _HUGE_PAGE_BYTES * _HUGE_PAGE_BYTES
    if last > first:
        madvise(first, last - first, _MADV_HUGEPAGE)  # failure only means 4 KiB pages, as before


def _fresh_like(like: torch.Tensor) -> torch.Tensor:
    out = torch.empty_like(like, memory_format=torch.preserve_format)
    _advise_huge_pages(out)
    return out


class BufferPool:
    """Recycles the storages of CPU buffers once no tensor uses them any more.

    The pool holds one reference to each of the last ``capacity`` storages it allocated. A storage whose
    ATen use count is 1 is referenced by the pool alone (no tensor, view, saved tensor or Python storage
    object uses it), so it can back a new tensor: its old contents are garbage that the caller
    overwrites, exactly as with :func:`torch.empty`. Thread-safe.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._storages: list[torch.UntypedStorage] = []
        self._lock = threading.Lock()

    def empty_like(self, like: torch.Tensor) -> torch.Tensor:
        """Uninitialised tensor with ``like``'s shape, dtype and (dense) layout, recycled if possible."""
        nbytes = like.numel() * like.element_size()
        if (
            not use_buffer_pool
            or _storage_use_count is None
            or like.device.type != "cpu"
            or nbytes < POOL_MIN_BYTES
            or self.capacity < 1
        ):
            return _fresh_like(like)
        layout = torch.empty_like(like, device="meta", memory_format=torch.preserve_format)
        with self._lock:
            for index, storage in enumerate(self._storages):
                if (
                    storage.nbytes() == nbytes
                    and _storage_use_count(storage._cdata) == 1
                    and not storage.is_shared()  # moved to shared memory: another process may read it
                ):
                    self._storages.append(self._storages.pop(index))  # most recently used last
                    out = torch.empty(0, dtype=like.dtype, device=like.device)
                    return out.set_(storage, 0, layout.shape, layout.stride())
            out = _fresh_like(like)
            self._storages.append(out.untyped_storage())
            del self._storages[: -self.capacity]  # forgotten storages live on in their tensors, if any
            return out

    def clear(self) -> None:
        """Drop the pool's references; idle buffers are freed, busy ones live on in their tensors."""
        with self._lock:
            self._storages.clear()

    def __len__(self) -> int:
        return len(self._storages)


_pool = BufferPool(POOL_CAPACITY)


def release_buffers() -> None:
    """Free the idle buffers kept for recycling (like ``torch.cuda.empty_cache`` for this layer)."""
    _pool.clear()


def empty_for_streaming_write(like: torch.Tensor) -> torch.Tensor:
    """Uninitialised tensor like ``like`` (same layout where ``like`` is dense) for a full overwrite.

    Large CPU buffers are recycled from the pool, or else freshly allocated with huge pages advised.
    """
    return _pool.empty_like(like)


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
    out = x if inplace else empty_for_streaming_write(x)
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
    grad_input = empty_for_streaming_write(grad)
    torch.mul(grad, keep.to(grad.dtype), out=grad_input)
    return grad_input
