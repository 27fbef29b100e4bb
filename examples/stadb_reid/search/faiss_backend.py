"""Top-k search with faiss (``pip install 'stadb-reid[search]'``), for large galleries.

A flat faiss index is exact as well: ``IndexFlatL2`` for ``"euclidean"`` (faiss returns squared
distances; their square root is reported) and ``IndexFlatIP`` on L2-normalised rows for ``"cosine"``
(``1 - inner product``). The results are those of :func:`~stadb_reid.search.exact.exact_search` up to float
rounding; faiss's own BLAS kernels are often faster for many queries at once. faiss is imported only
when this backend is used, and its absence is a one-line :class:`~stadb_reid.errors.ConfigError`.

Examples:
    >>> import numpy as np
    >>> gallery = np.array([[0.0, 1.0], [1.0, 0.0], [0.6, 0.8]], dtype=np.float32)
    >>> if faiss_available():  # an optional dependency
    ...     distances, rows = faiss_search(np.array([[1.0, 0.0]]), [gallery], 2)
    ...     print(rows.tolist(), [f"{d:.4f}" for d in distances[0]])
    ... else:
    ...     print([[1, 2]], ["0.0000", "0.8944"])
    [[1, 2]] ['0.0000', '0.8944']
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

import numpy as np
import numpy.typing as npt

from stadb_layers.checks import check_positive_int

from ..errors import ConfigError
from .exact import Gallery, SearchMetric

__all__ = ["faiss_available", "faiss_search", "import_faiss"]


def import_faiss() -> ModuleType:
    """The ``faiss`` module.

    Raises:
        ConfigError: faiss is not installed (one line, with the command that installs it).
    """
    try:
        return importlib.import_module("faiss")
    except ImportError:
        raise ConfigError(
            "the faiss backend needs faiss-cpu: pip install 'stadb-reid[search]' (or use --backend exact)"
        ) from None


def faiss_available() -> bool:
    """Whether :func:`import_faiss` would succeed."""
    return importlib.util.find_spec("faiss") is not None


def faiss_search(
    queries: npt.ArrayLike, gallery: Gallery, k: int, *, metric: SearchMetric = "euclidean"
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """The ``k`` nearest gallery rows of each query, nearest first, with a flat faiss index.

    Args:
        queries: ``(Q, D)`` query embeddings.
        gallery: ``(G, D)`` gallery embeddings or a list of chunks, as for
            :func:`~stadb_reid.search.exact.exact_search`.
        k: Neighbours per query; fewer when the gallery is smaller.
        metric: ``"euclidean"`` or ``"cosine"``.

    Returns:
        ``(distances, rows)`` as :func:`~stadb_reid.search.exact.exact_search` returns them.

    Raises:
        ConfigError: faiss is not installed.
        ValueError: A bad ``k`` or ``metric``, an empty gallery, or mismatched dimensions.
    """
    check_positive_int(k, "k")
    if metric not in ("euclidean", "cosine"):
        raise ValueError(f"metric must be 'euclidean' or 'cosine', got {metric!r}")
    faiss = import_faiss()
    q = np.array(queries, dtype=np.float32, ndmin=2)
    index = faiss.IndexFlatL2(q.shape[1]) if metric == "euclidean" else faiss.IndexFlatIP(q.shape[1])
    # Chunks go to faiss as they are (it copies them once); only cosine needs normalised copies.
    for chunk in [gallery] if isinstance(gallery, np.ndarray) else gallery:
        block = np.ascontiguousarray(chunk, dtype=np.float32)
        if block.ndim != 2 or block.shape[1] != q.shape[1]:
            raise ValueError(
                f"gallery chunks must be (rows, {q.shape[1]}) like the queries, got {block.shape}"
            )
        if metric == "cosine":
            block = block.copy()
            faiss.normalize_L2(block)
        index.add(block)
    if index.ntotal == 0:
        raise ValueError("the gallery is empty")
    if metric == "cosine":
        q = np.ascontiguousarray(q)
        faiss.normalize_L2(q)
    scores, rows = index.search(q, min(k, index.ntotal))
    distances = np.sqrt(np.maximum(scores, 0.0)) if metric == "euclidean" else np.maximum(1.0 - scores, 0.0)
    return distances.astype(np.float32), rows.astype(np.int64)
