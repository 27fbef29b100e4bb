"""Exact top-k search over a gallery held in chunks, in blocks so that memory stays small.

The distances are :func:`~stadb_reid.evaluation.pairwise_distance`'s (``"euclidean"`` or ``"cosine"``),
computed for ``block_rows`` gallery rows at a time; each block's ``k`` best are merged into a running
top-k. A 100,000 x 1,536 float32 gallery (614 MB) is read chunk by chunk from its memory-mapped files,
and the only other memory is ``num_queries x block_rows`` distances.

Ties are broken by gallery row, exactly: every distance becomes the 64-bit key ``float32 bits * 2**32
+ row`` (a non-negative float32 orders like its bit pattern read as an integer), so one ``topk`` of the
keys orders by distance, then by row. Cosine distances are clamped at 0 for this, which only removes
rounding below 0 (they are ``1 - cos >= 0``).

Examples:
    >>> import numpy as np
    >>> gallery = [np.array([[0.0, 1.0], [1.0, 0.0]]), np.array([[0.6, 0.8]])]
    >>> distances, rows = exact_search(np.array([[1.0, 0.0]]), gallery, 2)
    >>> rows.tolist(), distances.dtype, distances.round(4)
    ([[1, 2]], dtype('float32'), array([[0.    , 0.8944]], dtype=float32))
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch

from stadb_layers.checks import check_positive_int

from ..evaluation import pairwise_distance

__all__ = ["DEFAULT_BLOCK_ROWS", "Gallery", "SearchMetric", "exact_search", "gallery_blocks"]

SearchMetric = Literal["euclidean", "cosine"]
"""Distance of a search: Euclidean, or one minus the cosine similarity."""

Gallery = npt.NDArray[Any] | Sequence[npt.NDArray[Any]]
"""A ``(G, D)`` matrix, or ``(rows, D)`` chunks whose rows are numbered in order."""

#: Gallery rows per distance block.
DEFAULT_BLOCK_ROWS = 16384
_ROW_BITS = 32


def gallery_blocks(gallery: Gallery, block_rows: int) -> Iterator[npt.NDArray[np.float32]]:
    """Consecutive float32 blocks of ``block_rows`` rows (the last may be shorter) of a gallery.

    Small chunks are gathered into full blocks, so that the work per block, not the per-call overhead
    of many small products, sets the pace. The blocks are copies (memory-mapped chunks are read-only),
    written into one reused buffer: a block is valid until the next one is requested.

    Raises:
        ValueError: A chunk is not a matrix, or its width differs from the first chunk's.
    """
    chunks = [gallery] if isinstance(gallery, np.ndarray) else gallery
    rows = min(block_rows, sum(len(chunk) for chunk in chunks))  # a small gallery gets a small buffer
    buffer: npt.NDArray[np.float32] | None = None
    filled = 0
    for chunk in chunks:
        if chunk.ndim != 2 or (buffer is not None and chunk.shape[1] != buffer.shape[1]):
            width = "?" if buffer is None else buffer.shape[1]
            raise ValueError(f"gallery chunks must be (rows, {width}) matrices, got shape {chunk.shape}")
        if buffer is None:
            buffer = np.empty((rows, chunk.shape[1]), dtype=np.float32)
        start = 0
        while start < chunk.shape[0]:
            take = min(rows - filled, chunk.shape[0] - start)
            buffer[filled : filled + take] = chunk[start : start + take]
            filled, start = filled + take, start + take
            if filled == rows:
                yield buffer
                filled = 0
    if buffer is not None and filled:
        yield buffer[:filled]


def exact_search(
    queries: npt.ArrayLike,
    gallery: Gallery,
    k: int,
    *,
    metric: SearchMetric = "euclidean",
    block_rows: int = DEFAULT_BLOCK_ROWS,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """The ``k`` nearest gallery rows of each query, nearest first.

    Args:
        queries: ``(Q, D)`` query embeddings.
        gallery: ``(G, D)`` gallery embeddings, or a list of ``(rows, D)`` chunks (e.g. the
            memory-mapped chunks of :meth:`~stadb_reid.search.GalleryIndex.embeddings`) whose rows
            are numbered in order.
        k: Neighbours per query; fewer when the gallery is smaller.
        metric: ``"euclidean"`` or ``"cosine"`` (``1 - cos``).
        block_rows: Gallery rows per distance block.

    Returns:
        ``(distances, rows)``: ``(Q, min(k, G))`` float32 distances and int64 gallery rows, each row
        sorted by distance, ties by gallery row.

    Raises:
        ValueError: A bad ``k``/``block_rows``/``metric``, an empty gallery, or mismatched dimensions.
    """
    check_positive_int(k, "k")
    check_positive_int(block_rows, "block_rows")
    if metric not in ("euclidean", "cosine"):
        raise ValueError(f"metric must be 'euclidean' or 'cosine', got {metric!r}")
    q = torch.from_numpy(np.array(queries, dtype=np.float32, ndmin=2))
    best = torch.full((q.shape[0], 0), 0, dtype=torch.int64)
    offset = 0
    with torch.no_grad():
        for block in gallery_blocks(gallery, block_rows):
            distances = pairwise_distance(q, block, metric).clamp_min_(0.0)
            keys = distances.view(torch.int32).to(torch.int64) << _ROW_BITS
            keys += torch.arange(offset, offset + block.shape[0])
            if keys.shape[1] > k:
                keys = keys.topk(k, dim=1, largest=False, sorted=False).values
            merged = torch.cat([best, keys], dim=1)
            best = merged.topk(min(k, merged.shape[1]), dim=1, largest=False, sorted=True).values
            offset += block.shape[0]
    if offset == 0:
        raise ValueError("the gallery is empty")
    rows = (best & (2**_ROW_BITS - 1)).numpy()
    found = (best >> _ROW_BITS).to(torch.int32).view(torch.float32).numpy()
    return found, rows
