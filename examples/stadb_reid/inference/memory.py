"""Keeping freed memory in the process, so that a network's activations are not faulted in every batch.

glibc's ``malloc`` serves a large block (over its ``mmap`` threshold, 32 MiB at most) with a fresh
``mmap`` and unmaps it when it is freed, and trims the top of its heap once more than the trim
threshold is free. A network's activations are such blocks, freed and asked for again every batch,
so each batch faults every page of them in anew: on the 2-vCPU AMD EPYC of ``benchmarks/RESULTS.md``
(ResNet-50 STADB, 384 x 128, bf16) about 6,000 page faults an image, a quarter of the extractor's
time in the kernel. :func:`keep_freed_memory` turns both off for the process, so freed blocks are
reused (fp32 eager ran 1.82x and bf16 1.35x faster there): the process then holds on to its peak
memory instead of returning it between batches.

The commands that embed images (``extract``, ``index``, ``search``, ``evaluate``) call it; a
program that embeds many images with :class:`~stadb_reid.inference.ReIDExtractor` may call it too (a
process-wide setting, hence not the extractor's to make). Setting ``GLIBC_TUNABLES=glibc.malloc.mmap_max=0:``
``glibc.malloc.trim_threshold=2147483647`` before the process starts does the same.
"""

from __future__ import annotations

import ctypes
import platform

__all__ = ["keep_freed_memory"]

# mallopt's parameter numbers, from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_LARGEST_INT = 2**31 - 1


def keep_freed_memory() -> bool:
    """Make glibc's ``malloc`` keep freed memory for reuse (no ``mmap`` blocks, no trimming).

    Returns:
        Whether it is in effect: ``False`` where the C library is not glibc (nothing changes there).

    Examples:
        >>> from stadb_reid.inference import keep_freed_memory
        >>> keep_freed_memory()  # doctest: +SKIP
        True
    """
    if platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL(None).mallopt  # the C library this process runs on
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _LARGEST_INT))
