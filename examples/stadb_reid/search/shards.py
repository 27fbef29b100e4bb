"""Searching several gallery indexes at once (sites, disks) as if they were one.

The shards are numbered in the order given; row ``r`` of shard ``s`` is row ``offset[s] + r`` of the
combined gallery, ``offset`` counting the rows of the shards before it. That is the row order of one
index built from the shards' images in that order, and the results are that index's:

* ``exact`` and ``faiss`` search the shards' chunks as one list of chunks, so the ranking (distance,
  then combined row) is one index's by construction;
* ``ann`` asks each shard's persisted ANN index (:mod:`~stadb_reid.search.ann`) for a shortlist of
  ``max(k, shortlist)`` rows, computes the exact distance of every shortlisted row from the float32
  chunks, and keeps the ``k`` best of the union, ties by combined row: the top-k one index would
  return whenever each shard's true top-k is on its shortlist (for ``flat`` always).

``rerank`` re-ranks the ``rerank_pool`` nearest rows of each query
(:func:`~stadb_reid.search.query.rerank_rows`), found as above: with ``ann``, the nearest of the union
of the shards' shortlists.

Examples:
    >>> import numpy as np
    >>> distances, rows = refine(np.array([[1.0, 0.0]]), [np.eye(2)], np.array([[1, 0, -1]]), 2)
    >>> rows.tolist(), [f"{d:.4f}" for d in distances[0]]
    ([[0, 1]], ['0.0000', '1.4142'])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import torch

from stadb_layers.checks import check_positive_int

from ..errors import GalleryIndexError
from .ann import AnnIndex, has_ann
from .exact import Gallery, SearchMetric
from .index import GalleryIndex
from .manifest import ImageRecord, parse_labels
from .query import DEFAULT_RERANK_POOL, Match, QueryResult, gather_rows, nearest, rerank_nearest, rerank_rows

__all__ = ["DEFAULT_SHORTLIST", "SearchBackend", "Shards", "refine", "search_shards"]

SearchBackend = Literal["exact", "faiss", "ann"]
"""``exact`` (torch), ``faiss`` (a flat index built per call) or ``ann`` (the persisted ANN indexes)."""

#: Rows per query and shard that the ANN index proposes for exact re-scoring (at least ``top_k``).
#: On a million rows (``benchmarks/ann.py``) 30 gave the recall@10 of 100 at 1.8 times the throughput.
DEFAULT_SHORTLIST = 30


@dataclass
class Shards:
    """Finished gallery indexes of one model, searched together; see the module docstring.

    Use :meth:`open`. ``anns[s]`` is shard ``s``'s memory-mapped ANN index, or ``None``.
    """

    indexes: list[GalleryIndex]
    anns: list[AnnIndex | None]

    @classmethod
    def open(cls, folders: Sequence[Path], *, ann: bool | None = None) -> Shards:
        """Open and check the index folders; memory-map their ANN indexes.

        Args:
            folders: Index folders, in row order.
            ann: Require an ANN index in every folder (``True``), ignore them (``False``), or use them
                when every folder has one (``None``).

        Raises:
            GalleryIndexError: A folder is missing, unfinished or damaged; the folders disagree on
                the model, embedding size or ``flip``; the same folder is named twice; ``ann`` is
                ``True`` and a folder has no ANN index, or an ANN index does not match its gallery.
        """
        if not folders:
            raise ValueError("give at least one index folder")
        indexes = [GalleryIndex.open(folder) for folder in folders]
        seen: set[Path] = set()
        first = indexes[0]
        for index in indexes:
            index.embeddings()  # refuses an unfinished or damaged index
            if index.folder.resolve() in seen:
                raise GalleryIndexError(f"gallery index {index.folder} is given twice", index.folder)
            seen.add(index.folder.resolve())
            other, mine = index.manifest, first.manifest
            if (other.fingerprint, other.embedding_dim, other.flip) != (
                mine.fingerprint,
                mine.embedding_dim,
                mine.flip,
            ):
                raise GalleryIndexError(
                    f"gallery indexes {first.folder} and {index.folder} were built with different models "
                    f"or settings (model {mine.fingerprint} vs {other.fingerprint}, flip {mine.flip} vs "
                    f"{other.flip}): they cannot be searched together",
                    index.folder,
                )
        use_ann = all(has_ann(index.folder) for index in indexes) if ann is None else ann
        anns = [AnnIndex.open(index) if use_ann else None for index in indexes]
        return cls(indexes, anns)

    @cached_property
    def records(self) -> list[ImageRecord]:
        """The images of every shard, in combined row order."""
        return [record for index in self.indexes for record in index.records]

    def __len__(self) -> int:
        return sum(len(index) for index in self.indexes)

    @property
    def backend(self) -> SearchBackend:
        """``ann`` when every shard has an opened ANN index, else ``exact``."""
        return "ann" if all(a is not None for a in self.anns) else "exact"

    @cached_property
    def chunks(self) -> list[npt.NDArray[np.float32]]:
        """Every shard's memory-mapped chunks, in combined row order."""
        return [chunk for index in self.indexes for chunk in index.embeddings()]

    def candidates(self, queries: npt.NDArray[np.float32], n: int) -> npt.NDArray[np.int64]:
        """``(Q, shards x min(n, rows))`` combined rows the ANN indexes propose (``-1``: none)."""
        found, offset = [], 0
        for index, ann in zip(self.indexes, self.anns, strict=True):
            if ann is None:
                raise GalleryIndexError(
                    f"{index.folder} has no ANN index: build one with --ann", index.folder
                )
            rows = ann.search(queries, n)
            found.append(np.where(rows >= 0, rows + offset, -1))
            offset += len(index)
        return np.concatenate(found, axis=1)


def refine(
    queries: npt.NDArray[np.float32],
    gallery: Gallery,
    candidates: npt.NDArray[np.int64],
    k: int,
    *,
    metric: SearchMetric = "euclidean",
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """The ``k`` nearest of each query's ``candidates`` (``-1`` ignored) by exact distance, ties by row.

    The candidates' rows are copied straight from their chunks into one ``(Q, C, D)`` array (one
    indexing call per touched chunk). The distances follow
    :func:`~stadb_reid.evaluation.pairwise_distance`'s formula, the one exact search ranks by, so a
    near-duplicate wins or loses a near-tie as it would there.
    """
    q = np.array(queries, dtype=np.float32, ndmin=2)
    valid = candidates >= 0
    top = min(k, int(valid.sum(axis=1).min()))
    if not valid.any():
        return np.empty((len(q), 0), dtype=np.float32), np.empty((len(q), 0), dtype=np.int64)
    vectors = gather_rows(gallery, np.where(valid, candidates, candidates[valid][0]).ravel())
    distances = _candidate_distances(q, vectors.reshape(*candidates.shape, -1), metric)
    distances[~valid] = np.inf
    order = np.lexsort((candidates, distances), axis=1)[:, :top]
    return np.take_along_axis(distances, order, axis=1), np.take_along_axis(candidates, order, axis=1)


def _candidate_distances(
    queries: npt.NDArray[np.float32], vectors: npt.NDArray[np.float32], metric: SearchMetric
) -> npt.NDArray[np.float32]:
    r"""``(Q, C)`` float32 distances of query ``i`` to ``vectors[i, c]``.

    The formula, order of operations and square root (:func:`_torch_sqrt`) of
    :func:`~stadb_reid.evaluation.pairwise_distance`, cosine distances clamped at 0 as
    :func:`~stadb_reid.search.exact.exact_search` does:
    :math:`\sqrt{\max(0, (\lVert g\rVert^2 - 2 q^\top g) + \lVert q\rVert^2)}` or
    :math:`\max(0, 1 - (q^\top g \cdot \lVert q\rVert^{-1}) \cdot \lVert g\rVert^{-1})`, with only the dot
    products a query needs (``einsum``, not a ``Q x QC`` product). An ``einsum`` sum does not depend
    on where its pair sits in the batch, so equal rows get equal distances (ties stay ties), and a
    row's Euclidean distance to itself is 0.
    """
    dots = np.einsum("qcd,qd->qc", vectors, queries)
    g_sq = np.einsum("qcd,qcd->qc", vectors, vectors)
    q_sq = np.einsum("qd,qd->q", queries, queries)[:, None]
    if metric == "euclidean":
        distances = g_sq + np.float32(-2.0) * dots
        distances += q_sq
        return _torch_sqrt(np.maximum(distances, np.float32(0.0), out=distances))
    if metric != "cosine":
        raise ValueError(f"metric must be 'euclidean' or 'cosine', got {metric!r}")
    distances = dots * np.reciprocal(np.maximum(_torch_sqrt(q_sq), np.float32(1e-12)))
    distances *= np.reciprocal(np.maximum(_torch_sqrt(g_sq), np.float32(1e-12)))
    cosine: npt.NDArray[np.float32] = np.maximum(np.float32(1.0) - distances, np.float32(0.0))
    return cosine


def _torch_sqrt(values: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """The square roots of ``values``, in place, by torch: exact search's, not numpy's.

    Torch's float32 ``sqrt`` (MKL's) is not always the correctly rounded one numpy computes; with it,
    the only difference from exact search's distances is the order in which a dot product is summed
    (none for small integer-valued embeddings, as in the tests).
    """
    torch.from_numpy(values).sqrt_()
    return values


def search_shards(
    shards: Shards,
    queries: npt.ArrayLike,
    query_paths: Sequence[str | Path],
    *,
    top_k: int = 10,
    metric: SearchMetric = "euclidean",
    backend: SearchBackend = "exact",
    rerank: bool = False,
    rerank_pool: int = DEFAULT_RERANK_POOL,
    shortlist: int = DEFAULT_SHORTLIST,
) -> list[QueryResult]:
    """The ``top_k`` matches of each query embedding in the combined gallery of ``shards``.

    Args:
        shards: The opened index folders.
        queries: ``(Q, D)`` embeddings of the queries, by the shards' model.
        query_paths: The ``Q`` query images (their names may carry labels).
        top_k: Matches per query.
        metric: ``"euclidean"`` or ``"cosine"``.
        backend: ``"exact"``, ``"faiss"`` or ``"ann"`` (every shard needs an ANN index).
        rerank: Order the matches by k-reciprocal re-ranking of the shortlist.
        rerank_pool: Shortlist length per query for the re-ranking (exact and faiss backends).
        shortlist: Rows per query and shard the ANN indexes propose (ann backend).

    Returns:
        One :class:`~stadb_reid.search.QueryResult` per query; a match's ``row`` is its combined row.
    """
    check_positive_int(top_k, "top_k")
    check_positive_int(shortlist, "shortlist")
    q = np.array(queries, dtype=np.float32, ndmin=2)
    if len(query_paths) != q.shape[0]:
        raise ValueError(f"got {q.shape[0]} query embeddings for {len(query_paths)} query paths")
    chunks = shards.chunks
    if backend == "ann":
        candidates = shards.candidates(q, max(top_k, rerank_pool if rerank else shortlist))
        if rerank:  # the re-ranking sees the rerank_pool nearest of the union, as one index's would
            _, pool = refine(q, chunks, candidates, max(top_k, rerank_pool), metric=metric)
            distances, rows = rerank_rows(q, chunks, pool, top_k, metric=metric)
        else:
            distances, rows = refine(q, chunks, candidates, top_k, metric=metric)
    elif rerank:
        distances, rows = rerank_nearest(q, chunks, top_k, metric=metric, backend=backend, pool=rerank_pool)
    else:
        distances, rows = nearest(q, chunks, top_k, metric=metric, backend=backend)
    records = shards.records
    results = []
    for path, found, where in zip(query_paths, distances, rows, strict=True):
        matches = tuple(
            Match(rank, int(row), records[row].path, float(distance), records[row].pid, records[row].camid)
            for rank, (row, distance) in enumerate(zip(where, found, strict=True), start=1)
        )
        results.append(QueryResult(str(path), *parse_labels(path), matches))
    return results
