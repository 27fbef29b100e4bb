"""Searching an index: the nearest gallery images of each query, optionally re-ranked.

With ``rerank=True`` the k-reciprocal re-ranking of
:func:`~stadb_reid.evaluation.k_reciprocal_rerank_features` (k1 = 20, k2 = 6, lambda = 0.3) runs on a
shortlist: the union of the ``rerank_pool`` nearest gallery images of every query. Its cost then
depends on the number of queries, not on the size of the gallery; when the gallery has no more than
``rerank_pool`` images the whole gallery is re-ranked, exactly as in evaluation. As in evaluation,
the queries searched together are part of each other's neighbourhoods.

Examples:
    >>> import numpy as np
    >>> d, rows = nearest(np.eye(2), [np.eye(2)[::-1]], 1)
    >>> rows.tolist()
    [[1], [0]]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from stadb_layers.checks import check_positive_int

from ..evaluation import k_reciprocal_rerank_features
from ..printable import printable
from .exact import Gallery, SearchMetric, exact_search
from .faiss_backend import faiss_search
from .index import GalleryIndex
from .manifest import parse_labels

__all__ = [
    "DEFAULT_RERANK_POOL",
    "Backend",
    "Match",
    "QueryResult",
    "format_results",
    "gather_rows",
    "nearest",
    "rerank_nearest",
    "rerank_rows",
    "results_to_json",
    "search_index",
]

Backend = Literal["exact", "faiss"]
"""Search implementation: ``"exact"`` (torch, blocked) or ``"faiss"`` (a flat faiss index)."""

#: Nearest gallery images per query that the re-ranking reorders.
DEFAULT_RERANK_POOL = 100


@dataclass(frozen=True)
class Match:
    """One gallery image found for a query: its rank (1 = nearest), index row, path, distance, labels."""

    rank: int
    row: int
    path: str
    distance: float
    pid: int | None
    camid: int | None


@dataclass(frozen=True)
class QueryResult:
    """A query image, the labels parsed from its name (if any) and its matches, nearest first."""

    path: str
    pid: int | None
    camid: int | None
    matches: tuple[Match, ...]


def nearest(
    queries: npt.ArrayLike,
    gallery: Gallery,
    k: int,
    *,
    metric: SearchMetric = "euclidean",
    backend: Backend = "exact",
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """``(distances, rows)`` of the ``k`` nearest gallery rows of each query, with ``backend``."""
    if backend == "exact":
        return exact_search(queries, gallery, k, metric=metric)
    if backend == "faiss":
        return faiss_search(queries, gallery, k, metric=metric)
    raise ValueError(f"backend must be 'exact' or 'faiss', got {backend!r}")


def gather_rows(gallery: Gallery, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
    """Gallery ``rows`` (any order, repeats allowed) as one float32 matrix, reading only their chunks.

    The rows are sorted once; a chunk's rows are then consecutive, found by one ``searchsorted`` of
    the chunk starts, and copied by one indexing call per touched chunk: the work is one small call
    per touched chunk, not a pass over all ``rows`` per chunk.

    Raises:
        IndexError: A row is outside the gallery.
    """
    chunks = [gallery] if isinstance(gallery, np.ndarray) else gallery
    starts = np.cumsum([0, *(len(chunk) for chunk in chunks)])
    # Sorted rows (np.unique's) need no sorting: each chunk's rows then fill a slice of the output.
    order = None if np.all(rows[:-1] <= rows[1:]) else np.argsort(rows, kind="stable")
    ordered = rows if order is None else rows[order]
    if len(rows) and (ordered[0] < 0 or ordered[-1] >= starts[-1]):
        raise IndexError(f"gallery rows must lie in [0, {starts[-1]}), got {ordered[0]}..{ordered[-1]}")
    bounds = np.searchsorted(ordered, starts)  # chunk c holds ordered[bounds[c]:bounds[c + 1]]
    touched = np.flatnonzero(bounds[1:] > bounds[:-1])
    local = ordered - np.repeat(starts[touched], bounds[touched + 1] - bounds[touched])
    out = np.empty((len(rows), chunks[0].shape[1]), dtype=np.float32)
    edges = bounds.tolist()
    for c in touched.tolist():
        lo, hi = edges[c], edges[c + 1]
        out[slice(lo, hi) if order is None else order[lo:hi]] = np.asarray(chunks[c])[local[lo:hi]]
    return out


def rerank_nearest(
    queries: npt.ArrayLike,
    gallery: Gallery,
    k: int,
    *,
    metric: SearchMetric = "euclidean",
    backend: Backend = "exact",
    pool: int = DEFAULT_RERANK_POOL,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Like :func:`nearest`, but ordered by the k-reciprocal re-ranked distance of a shortlist.

    Args:
        queries: ``(Q, D)`` query embeddings.
        gallery: The gallery, as for :func:`nearest`.
        k: Neighbours per query.
        metric: Distance of the search and of the re-ranking.
        backend: Finds the shortlist.
        pool: Nearest images per query put on the shortlist (at least ``k`` are).

    Returns:
        ``(distances, rows)``: re-ranked distances (ties by gallery row) and gallery rows.
    """
    check_positive_int(pool, "pool")
    q = np.array(queries, dtype=np.float32, ndmin=2)
    _, candidates = nearest(q, gallery, max(k, pool), metric=metric, backend=backend)
    return rerank_rows(q, gallery, candidates, k, metric=metric)


def rerank_rows(
    queries: npt.NDArray[np.float32],
    gallery: Gallery,
    candidates: npt.NDArray[np.int64],
    k: int,
    *,
    metric: SearchMetric = "euclidean",
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """The ``k`` best of the union of ``candidates`` (gallery rows; ``-1`` ignored) by re-ranked distance."""
    shortlist = np.unique(candidates[candidates >= 0])
    distances = k_reciprocal_rerank_features(queries, gather_rows(gallery, shortlist), metric=metric)
    order = np.argsort(distances, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(distances, order, axis=1), shortlist[order]


def search_index(
    index: GalleryIndex,
    queries: npt.ArrayLike,
    query_paths: Sequence[str | Path],
    *,
    top_k: int = 10,
    metric: SearchMetric = "euclidean",
    backend: Backend = "exact",
    rerank: bool = False,
    rerank_pool: int = DEFAULT_RERANK_POOL,
) -> list[QueryResult]:
    """The ``top_k`` matches of each query embedding in ``index``.

    Args:
        index: A finished :class:`~stadb_reid.search.GalleryIndex`.
        queries: ``(Q, D)`` embeddings of the queries, by the index's model.
        query_paths: The ``Q`` query images (their names may carry labels).
        top_k: Matches per query.
        metric: ``"euclidean"`` or ``"cosine"``.
        backend: ``"exact"`` or ``"faiss"``.
        rerank: Order the matches by k-reciprocal re-ranking (see the module docstring).
        rerank_pool: Shortlist length per query for the re-ranking.

    Returns:
        One :class:`QueryResult` per query, in order.

    Raises:
        GalleryIndexError: The index is unfinished or damaged.
        ConfigError: ``backend="faiss"`` without faiss installed.
    """
    check_positive_int(top_k, "top_k")
    q = np.array(queries, dtype=np.float32, ndmin=2)
    if len(query_paths) != q.shape[0]:
        raise ValueError(f"got {q.shape[0]} query embeddings for {len(query_paths)} query paths")
    chunks = index.embeddings()
    if rerank:
        distances, rows = rerank_nearest(q, chunks, top_k, metric=metric, backend=backend, pool=rerank_pool)
    else:
        distances, rows = nearest(q, chunks, top_k, metric=metric, backend=backend)
    results = []
    for path, found, where in zip(query_paths, distances, rows, strict=True):
        records = [index.records[row] for row in where]
        matches = tuple(
            Match(rank, int(row), record.path, float(distance), record.pid, record.camid)
            for rank, (row, distance, record) in enumerate(zip(where, found, records, strict=True), start=1)
        )
        results.append(QueryResult(str(path), *parse_labels(path), matches))
    return results


def results_to_json(results: Sequence[QueryResult], **settings: Any) -> dict[str, Any]:
    """The JSON object of a search: ``settings`` (index, model, metric...) and ``queries``."""
    return {**settings, "queries": [asdict(result) for result in results]}


def _labels(pid: int | None, camid: int | None) -> str:
    return "" if pid is None or camid is None else f"  (id {pid}, camera {camid + 1})"


def format_results(results: Sequence[QueryResult]) -> str:
    """The ranked matches as text, one line per match; control characters in paths are escaped.

    Examples:
        >>> m = Match(1, 7, "/g/0002_c2s1_000001_01.jpg", 0.25, 2, 1)
        >>> print(format_results([QueryResult("q.jpg", None, None, (m,))]))
        q.jpg
           1.  0.2500  /g/0002_c2s1_000001_01.jpg  (id 2, camera 2)
    """
    lines = []
    for result in results:
        lines.append(f"{printable(result.path)}{_labels(result.pid, result.camid)}")
        lines += [
            f"  {m.rank:>2}.  {m.distance:.4f}  {printable(m.path)}{_labels(m.pid, m.camid)}"
            for m in result.matches
        ]
    return "\n".join(lines)
