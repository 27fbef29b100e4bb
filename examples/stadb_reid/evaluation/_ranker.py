"""Incremental ranking evaluator: feed distance rows chunk by chunk, then aggregate the metrics.

:class:`RankEvaluator` checks the labels once, hands each chunk of valid queries to the protocol's
kernel (:mod:`._market`, :mod:`._cuhk03`) and aggregates the chunks into
:class:`~stadb_reid.evaluation.metrics.RankMetrics`. :func:`evaluate_chunks` runs it over a full
distance matrix, optionally with threads; :func:`~stadb_reid.evaluation.distance.evaluate_from_features`
feeds it distance blocks as they are computed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from stadb_layers.checks import check_non_negative_int, check_positive_int

from ._cuhk03 import single_gallery_shot_histogram
from ._inputs import ArrayLike, FloatArray, IntArray, check_labels, check_max_rank
from ._labels import LabelIndex
from ._market import MarketChunk, market_chunk
from .metrics import EvaluationProtocol, RankMetrics

__all__ = ["DEFAULT_CHUNK_SIZE", "ChunkResult", "RankEvaluator", "evaluate_chunks"]

DEFAULT_CHUNK_SIZE = 256
"""Queries processed together by the ranking kernel."""


@dataclass
class ChunkResult:
    """What one chunk of valid queries contributes: Market-1501 values and, for CUHK03, a rank histogram."""

    market: MarketChunk
    sgs_rank_hist: IntArray | None = None


class RankEvaluator:
    """Incremental evaluator: feed distance rows of the valid queries chunk by chunk, then finish.

    ``ap_at > 0`` adds the AP truncated at that rank (counted in the gallery without junk, divided by
    every correct match; see :mod:`._market`) to the result, next to the full AP.

    Examples:
        >>> ev = RankEvaluator([1], [1, 2], [0], [1, 1], 1, 2, 2, "market1501", 10, 0)
        >>> for queries in ev.chunks(256):
        ...     ev.add(queries, ev.process(queries, np.array([[0.5, 0.1]])[queries], ev.draw(len(queries))))
        >>> ev.finish().cmc.tolist()
        [0.0, 1.0]
    """

    def __init__(
        self,
        q_pids: ArrayLike,
        g_pids: ArrayLike,
        q_camids: ArrayLike,
        g_camids: ArrayLike,
        num_query: int,
        num_gallery: int,
        max_rank: int,
        protocol: EvaluationProtocol,
        num_repeats: int,
        seed: int | None,
        *,
        ap_at: int = 0,
    ) -> None:
        if protocol not in ("market1501", "cuhk03"):
            raise ValueError(f"protocol must be 'market1501' or 'cuhk03', got {protocol!r}")
        self.num_repeats = check_positive_int(num_repeats, "num_repeats")
        self.ap_at = check_non_negative_int(ap_at, "ap_at")
        labels = (
            check_labels(q_pids, "q_pids", num_query, "query"),
            check_labels(g_pids, "g_pids", num_gallery, "gallery entry"),
            check_labels(q_camids, "q_camids", num_query, "query"),
            check_labels(g_camids, "g_camids", num_gallery, "gallery entry"),
        )
        self.num_query = num_query
        self.num_gallery = num_gallery
        self.max_rank = check_max_rank(max_rank, num_gallery)
        self.index = LabelIndex.build(*labels)
        self.protocol: EvaluationProtocol = protocol
        self._rng = np.random.default_rng(seed) if protocol == "cuhk03" else None
        self._results: list[tuple[IntArray, ChunkResult]] = []

    @property
    def valid(self) -> IntArray:
        """Indices of the queries with a correct match in another camera, ascending."""
        return self.index.valid

    def chunks(self, chunk_size: int) -> Iterator[IntArray]:
        """The valid queries, in order, in chunks of at most ``chunk_size``."""
        for start in range(0, len(self.valid), chunk_size):
            yield self.valid[start : start + chunk_size]

    def draw(self, num_rows: int) -> FloatArray | None:
        """Random numbers for the next ``num_rows`` valid queries (CUHK03 protocol only), in order."""
        if self._rng is None:
            return None
        return self._rng.random((num_rows, self.num_repeats, len(self.index.id_values)))

    def process(
        self, queries: IntArray, dist: np.ndarray[Any, Any], draws: FloatArray | None = None
    ) -> ChunkResult:
        """Evaluate valid ``queries`` given their distance rows ``dist`` ``(len(queries), num_gallery)``."""
        if dist.dtype.kind == "f" and np.isnan(dist).any():
            raise ValueError("distmat must not contain NaN")
        result = ChunkResult(market_chunk(self.index, queries, dist, self.ap_at))
        if self.protocol == "cuhk03":
            if draws is None:
                raise RuntimeError("the CUHK03 protocol needs draws from RankEvaluator.draw")
            result.sgs_rank_hist = single_gallery_shot_histogram(
                self.index, queries, dist, draws, self.max_rank
            )
        return result

    def add(self, queries: IntArray, result: ChunkResult) -> None:
        """Record the result of :meth:`process` for ``queries``."""
        self._results.append((queries, result))

    def finish(self) -> RankMetrics:
        """Aggregate every recorded chunk into :class:`~stadb_reid.evaluation.metrics.RankMetrics`."""
        num_valid = len(self.valid)
        if num_valid == 0:
            raise ValueError(
                "no query has a valid match: every query identity is absent from the gallery "
                "or only seen there by the query's own camera"
            )
        ap = np.full(self.num_query, np.nan)
        inp = np.full(self.num_query, np.nan)
        ap_at = np.full(self.num_query, np.nan) if self.ap_at else None
        hist = np.zeros(self.max_rank + 1, dtype=np.int64)
        seen = 0
        for queries, res in self._results:
            ap[queries] = res.market.average_precision
            inp[queries] = res.market.inverse_negative_penalty
            if ap_at is not None and res.market.average_precision_at is not None:
                ap_at[queries] = res.market.average_precision_at
            seen += len(queries)
            if res.sgs_rank_hist is not None:
                hist += res.sgs_rank_hist
            else:
                first = np.minimum(res.market.first_rank, self.max_rank + 1) - 1
                hist += np.bincount(first, minlength=self.max_rank + 1)
        if seen != num_valid:
            raise RuntimeError(f"evaluated {seen} queries, expected {num_valid}")
        trials = num_valid * (self.num_repeats if self.protocol == "cuhk03" else 1)
        cmc = (np.cumsum(hist[: self.max_rank]) / trials).astype(np.float32)
        return RankMetrics(
            cmc=cmc,
            mean_ap=math.fsum(ap[self.valid]) / num_valid,
            mean_inp=math.fsum(inp[self.valid]) / num_valid,
            num_valid_queries=num_valid,
            num_queries=self.num_query,
            average_precision=ap,
            inverse_negative_penalty=inp,
            protocol=self.protocol,
            ap_at=self.ap_at,
            mean_ap_at=None if ap_at is None else math.fsum(ap_at[self.valid]) / num_valid,
            average_precision_at=ap_at,
        )


def evaluate_chunks(
    evaluator: RankEvaluator, distmat: np.ndarray[Any, Any], chunk_size: int, num_workers: int
) -> RankMetrics:
    """Evaluate every valid query of a full ``distmat``, ``chunk_size`` queries a task, on ``num_workers``.

    The random draws are taken in query order before any work starts and the chunks are recorded in
    order, so the result does not depend on ``num_workers``.

    Args:
        evaluator: A fresh evaluator for ``distmat``'s labels.
        distmat: The checked ``(num_query, num_gallery)`` distances.
        chunk_size: Queries per task.
        num_workers: Threads; 1 runs in the calling thread.

    Returns:
        The metrics.
    """
    jobs = [(queries, evaluator.draw(len(queries))) for queries in evaluator.chunks(chunk_size)]
    if num_workers == 1 or len(jobs) <= 1:
        for queries, draws in jobs:
            evaluator.add(queries, evaluator.process(queries, distmat[queries], draws))
    else:
        with ThreadPoolExecutor(max_workers=num_workers) as pool:
            futures = [pool.submit(lambda q, u: evaluator.process(q, distmat[q], u), q, u) for q, u in jobs]
            for (queries, _), fut in zip(jobs, futures, strict=True):
                evaluator.add(queries, fut.result())
    return evaluator.finish()
