r"""Ranking metrics for person re-identification: CMC, mAP and mINP.

Every query is compared with every gallery image; the gallery is ranked by ascending distance and the
metrics are read off the ranked list, following the protocol of the Market-1501 benchmark (Zheng et al.,
ICCV 2015) as implemented by torchreid's ``evaluate_rank``:

* gallery images with the query's identity **and** camera are removed ("junk": the same person seen by
  the same camera is too easy a match);
* a query with no remaining correct match (same identity, other camera) is skipped;
* for a query with :math:`P` correct matches at ranks :math:`r_1 < \dots < r_P` (1-based, counted in
  the gallery without the junk),

  .. math::

      \mathrm{AP} = \frac{1}{P} \sum_{k=1}^{P} \frac{k}{r_k}, \qquad
      \mathrm{INP} = \frac{P}{r_P}, \qquad
      \mathrm{CMC}(n) = [\, r_1 \le n \,],

  i.e. AP is the mean precision at each hit, INP (Ye et al., "Deep Learning for Person
  Re-identification: A Survey and Outlook", TPAMI 2021) is the precision at the hardest (last) hit,
  and CMC-:math:`n` says whether the first hit is within the top :math:`n`.
  mAP, mINP and the CMC curve are their means over the valid queries.

The CUHK03 single-gallery-shot protocol (``protocol="cuhk03"``) replaces the CMC: each of
``num_repeats`` times, one gallery image per identity is drawn at random and the query's CMC is read in
that reduced gallery; AP and INP stay as above (as in torchreid's ``eval_cuhk03``).

Ties and numerics (the numbers are fully specified, so that independent implementations agree
exactly):

* Ties in distance are broken by gallery index, i.e. the ranking is the one of a *stable* sort
  (``np.argsort(distmat, axis=1, kind="stable")``). torchreid uses the default, unstable quicksort; on
  distances without ties both rankings are the same.
* AP is accumulated in float64 sequentially in rank order (``s = 0.0; for k, r: s += k / r``) and
  divided by :math:`P`; mAP and mINP are ``math.fsum`` of the per-query values divided by the number of
  valid queries. torchreid's Python evaluator sums with ``numpy.sum`` (pairwise), its Cython evaluator in
  float32; they differ from these numbers in the last bits (1e-16 and 1e-7 respectively).
* ``cmc[n - 1]`` is the float32 value of the fraction of valid queries whose first hit is within rank
  :math:`n` (identical to torchreid's float32 CMC).

The implementation never sorts a full gallery row for the Market-1501 protocol. Per query it only needs
the ranks of its few correct matches; an entry can precede a match only if it is not farther than the
farthest match, so the entries beyond it are discarded with one comparison and the rest are counted
with a sort of the (usually short) surviving lists. Work is done in chunks of queries, which bounds
memory and lets :func:`~stadb_reid.evaluation.distance.evaluate_from_features` stream distances.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch

__all__ = ["Protocol", "RankMetrics", "evaluate_rank", "rank_metrics"]

Protocol = Literal["market1501", "cuhk03"]
"""Evaluation protocol: Market-1501 (all gallery images) or CUHK03 single-gallery-shot CMC."""

ArrayLike = npt.ArrayLike | torch.Tensor
"""Anything :func:`numpy.asarray` accepts, or a :class:`torch.Tensor` on any device."""

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

DEFAULT_CHUNK_SIZE = 256
"""Queries processed together by the ranking kernel."""


@dataclass(frozen=True)
class RankMetrics:
    """Retrieval metrics of one evaluation.

    Attributes:
        cmc: ``(max_rank,)`` float32 CMC curve in fractions: ``cmc[n - 1]`` is the rank-``n`` accuracy.
        mean_ap: Mean average precision (mAP) over the valid queries, a fraction in ``[0, 1]``.
        mean_inp: Mean inverse negative penalty (mINP) over the valid queries.
        num_valid_queries: Queries with at least one correct match in another camera.
        num_queries: All queries, valid or not.
        average_precision: ``(num_queries,)`` float64 AP of every query; NaN for invalid queries.
        inverse_negative_penalty: ``(num_queries,)`` float64 INP of every query; NaN for invalid ones.
        protocol: The protocol the CMC follows, ``"market1501"`` or ``"cuhk03"``.
    """

    cmc: npt.NDArray[np.float32]
    mean_ap: float
    mean_inp: float
    num_valid_queries: int
    num_queries: int
    average_precision: FloatArray = field(repr=False)
    inverse_negative_penalty: FloatArray = field(repr=False)
    protocol: Protocol = "market1501"

    def rank(self, n: int) -> float:
        """Rank-``n`` accuracy (``cmc[n - 1]``) as a Python float.

        Args:
            n: 1-based rank, at most ``len(cmc)``.

        Returns:
            The fraction of valid queries whose first correct match is within the top ``n``.
        """
        if not 1 <= n <= len(self.cmc):
            raise ValueError(f"n must lie in [1, {len(self.cmc)}], got {n}")
        return float(self.cmc[n - 1])

    def as_dict(self, ranks: tuple[int, ...] = (1, 5, 10, 20)) -> dict[str, float]:
        """Scalar summary for logging: ``mAP``, ``mINP`` and ``rank-n`` for the ranks that exist.

        Args:
            ranks: CMC ranks to report; those beyond ``len(cmc)`` are left out.

        Returns:
            A mapping such as ``{"mAP": 0.86, "mINP": 0.6, "rank-1": 0.94, ...}``.
        """
        out = {"mAP": self.mean_ap, "mINP": self.mean_inp}
        out.update({f"rank-{n}": self.rank(n) for n in ranks if n <= len(self.cmc)})
        return out


def _to_numpy(x: ArrayLike) -> np.ndarray[Any, Any]:
    if isinstance(x, torch.Tensor):
        t = x.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        if t.dtype in (torch.float16, torch.bfloat16):
            t = t.float()
        return t.numpy()
    return np.asarray(x)


def _check_labels(x: ArrayLike, name: str, length: int, length_of: str) -> np.ndarray[Any, Any]:
    a = _to_numpy(x)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {a.shape}")
    if a.shape[0] != length:
        raise ValueError(f"{name} must have one entry per {length_of} ({length}), got {a.shape[0]}")
    if a.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integers, got dtype {a.dtype}")
    return a.astype(np.int64, copy=False)


def _check_distmat(distmat: ArrayLike) -> np.ndarray[Any, Any]:
    d = _to_numpy(distmat)
    if d.ndim != 2:
        raise ValueError(f"distmat must be a 2-D (num_query, num_gallery) matrix, got shape {d.shape}")
    if d.shape[0] == 0 or d.shape[1] == 0:
        raise ValueError(f"distmat must have at least one query and one gallery entry, got shape {d.shape}")
    if d.dtype == np.float16:
        d = d.astype(np.float32)  # exact: the ranking and every tie are preserved
    elif d.dtype.kind in "iu":
        d = d.astype(np.float64)  # exact for magnitudes below 2**53
    elif d.dtype not in (np.float32, np.float64):
        raise ValueError(f"distmat must hold real numbers (float or int), got dtype {d.dtype}")
    return d


def _check_max_rank(max_rank: int, num_gallery: int) -> int:
    if isinstance(max_rank, bool) or not isinstance(max_rank, int | np.integer) or max_rank < 1:
        raise ValueError(f"max_rank must be a positive integer, got {max_rank!r}")
    if num_gallery < max_rank:
        warnings.warn(
            f"max_rank={max_rank} exceeds the number of gallery entries ({num_gallery}); "
            f"clipping it to {num_gallery}",
            UserWarning,
            stacklevel=3,
        )
        return num_gallery
    return int(max_rank)


def _ranges(starts: IntArray, lengths: IntArray) -> IntArray:
    """Concatenation of ``arange(s, s + n)`` for every ``(s, n)``."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.cumsum(lengths) - lengths
    return np.repeat(starts - offsets, lengths) + np.arange(total, dtype=np.int64)


def _bounds_in_sorted_rows(
    table: np.ndarray[Any, Any], lengths: IntArray, rows: IntArray, values: np.ndarray[Any, Any]
) -> tuple[IntArray, IntArray]:
    """Vectorised ``searchsorted`` (left and right) of ``values[i]`` in ``table[rows[i], :lengths[i]]``.

    Every row of ``table`` is sorted ascending over its first ``lengths`` entries.
    """
    width = table.shape[1]
    lo_l = np.zeros(len(rows), dtype=np.int64)
    lo_r = np.zeros(len(rows), dtype=np.int64)
    hi_l = lengths.copy()
    hi_r = lengths.copy()
    for _ in range(int(width).bit_length() + 1):
        active_l = lo_l < hi_l
        active_r = lo_r < hi_r
        if not (active_l.any() or active_r.any()):
            break
        mid = (lo_l + hi_l) >> 1
        go = table[rows, np.minimum(mid, width - 1)] < values
        lo_l = np.where(active_l & go, mid + 1, lo_l)
        hi_l = np.where(active_l & ~go, mid, hi_l)
        mid = (lo_r + hi_r) >> 1
        go = table[rows, np.minimum(mid, width - 1)] <= values
        lo_r = np.where(active_r & go, mid + 1, lo_r)
        hi_r = np.where(active_r & ~go, mid, hi_r)
    return lo_l, lo_r


def _count_not_greater(
    dist: np.ndarray[Any, Any], thresholds: np.ndarray[Any, Any], rows: IntArray, values: np.ndarray[Any, Any]
) -> tuple[IntArray, IntArray]:
    """For each ``(rows[i], values[i])``: how many entries of ``dist[rows[i]]`` are ``<`` and ``<=`` it.

    ``values[i]`` must not exceed ``thresholds[rows[i]]``. Only the entries not above the row's threshold
    can count, so only those are sorted, in groups of rows of similar size (padded to the longest row of
    the group, which is at most twice the shortest).
    """
    num_rows, num_cols = dist.shape
    keep = dist <= thresholds[:, None]
    counts = np.count_nonzero(keep, axis=1).astype(np.int64)
    group = np.frexp(counts.astype(np.float64))[1]  # counts in [2**(g-1), 2**g)
    dense = 2 * counts > num_cols  # most of the row survives: sort it whole instead of gathering
    group[dense] = 0
    if dense.all():
        survivors = np.zeros(0, dtype=dist.dtype)
    else:
        keep[dense] = False
        survivors = dist[keep]  # row-major: the survivors of each row, row after row
    offsets = np.cumsum(np.where(dense, 0, counts)) - np.where(dense, 0, counts)
    less = np.empty(len(rows), dtype=np.int64)
    not_greater = np.empty(len(rows), dtype=np.int64)
    row_slot = np.empty(num_rows, dtype=np.int64)
    for g in np.unique(group):
        members = np.flatnonzero(group == g)
        row_slot[members] = np.arange(len(members))
        if g == 0:
            table = dist[members]
            lengths_of_rows = np.full(len(members), num_cols, dtype=np.int64)
        else:
            lengths_of_rows = counts[members]
            table = np.full((len(members), int(lengths_of_rows.max())), np.inf, dtype=dist.dtype)
            within = _ranges(np.zeros(len(members), dtype=np.int64), lengths_of_rows)
            table[np.repeat(np.arange(len(members)), lengths_of_rows), within] = survivors[
                _ranges(offsets[members], lengths_of_rows)
            ]
        table.sort(axis=1)
        sel = np.flatnonzero(group[rows] == g)
        slots = row_slot[rows[sel]]
        lo, hi = _bounds_in_sorted_rows(table, lengths_of_rows[slots], slots, values[sel])
        less[sel] = lo
        not_greater[sel] = hi
    return less, not_greater


@dataclass
class _ChunkResult:
    first_rank: IntArray
    average_precision: FloatArray
    inverse_negative_penalty: FloatArray
    sgs_rank_hist: IntArray | None = None


class _RankEvaluator:
    """Incremental evaluator: feed distance rows of the valid queries chunk by chunk, then finish."""

    def __init__(
        self,
        q_pids: ArrayLike,
        g_pids: ArrayLike,
        q_camids: ArrayLike,
        g_camids: ArrayLike,
        num_query: int,
        num_gallery: int,
        max_rank: int,
        protocol: Protocol,
        num_repeats: int,
        seed: int | None,
    ) -> None:
        if protocol not in ("market1501", "cuhk03"):
            raise ValueError(f"protocol must be 'market1501' or 'cuhk03', got {protocol!r}")
        if isinstance(num_repeats, bool) or not isinstance(num_repeats, int) or num_repeats < 1:
            raise ValueError(f"num_repeats must be a positive integer, got {num_repeats!r}")
        self.q_pids = _check_labels(q_pids, "q_pids", num_query, "query")
        self.g_pids = _check_labels(g_pids, "g_pids", num_gallery, "gallery entry")
        self.q_camids = _check_labels(q_camids, "q_camids", num_query, "query")
        self.g_camids = _check_labels(g_camids, "g_camids", num_gallery, "gallery entry")
        self.num_query = num_query
        self.num_gallery = num_gallery
        self.max_rank = _check_max_rank(max_rank, num_gallery)
        self.protocol: Protocol = protocol
        self.num_repeats = num_repeats

        # Gallery grouped by identity: g_order lists gallery indices by (pid, index).
        self.g_order = np.argsort(self.g_pids, kind="stable")
        sorted_pids = self.g_pids[self.g_order]
        self.id_values, self.id_start, self.id_count = np.unique(
            sorted_pids, return_index=True, return_counts=True
        )
        loc = np.minimum(np.searchsorted(self.id_values, self.q_pids), len(self.id_values) - 1)
        found = self.id_values[loc] == self.q_pids
        self.q_code = np.where(found, loc, -1)
        self.q_group_start = np.where(found, self.id_start[loc], 0)
        self.q_group_len = np.where(found, self.id_count[loc], 0)
        # Junk count per query: gallery entries with the query's (pid, camera).
        cams = np.unique(np.concatenate([self.q_camids, self.g_camids]))
        n_cams = len(cams)
        g_key = np.searchsorted(self.id_values, self.g_pids) * n_cams + np.searchsorted(cams, self.g_camids)
        keys, key_count = np.unique(g_key, return_counts=True)
        q_key = np.maximum(self.q_code, 0) * n_cams + np.searchsorted(cams, self.q_camids)
        kloc = np.minimum(np.searchsorted(keys, q_key), len(keys) - 1)
        junk = np.where(found & (keys[kloc] == q_key), key_count[kloc], 0)
        self.num_positives = self.q_group_len - junk
        self.valid = np.flatnonzero(self.num_positives > 0)

        self.g_code = np.searchsorted(self.id_values, self.g_pids)
        self._rng = np.random.default_rng(seed) if protocol == "cuhk03" else None

        self._results: list[tuple[IntArray, _ChunkResult]] = []

    # ------------------------------------------------------------------ chunk kernels
    def draw(self, num_rows: int) -> FloatArray | None:
        """Random numbers for the next ``num_rows`` valid queries (CUHK03 protocol only), in order."""
        if self._rng is None:
            return None
        return self._rng.random((num_rows, self.num_repeats, len(self.id_values)))

    def process(
        self, queries: IntArray, dist: np.ndarray[Any, Any], draws: FloatArray | None = None
    ) -> _ChunkResult:
        """Evaluate valid ``queries`` given their distance rows ``dist`` ``(len(queries), num_gallery)``."""
        if dist.dtype.kind == "f" and np.isnan(dist).any():
            raise ValueError("distmat must not contain NaN")
        num_rows = len(queries)
        # All (query, gallery) pairs with the same identity, by row then gallery index.
        lengths = self.q_group_len[queries]
        rows = np.repeat(np.arange(num_rows, dtype=np.int64), lengths)
        cols = self.g_order[_ranges(self.q_group_start[queries], lengths)]
        is_junk = self.g_camids[cols] == self.q_camids[queries][rows]
        pos_rows, pos_cols = rows[~is_junk], cols[~is_junk]
        junk_rows, junk_cols = rows[is_junk], cols[is_junk]
        n_pos = self.num_positives[queries]
        n_junk = lengths - n_pos

        # Positives in ranking order: by distance, ties by gallery index (lexsort is stable).
        pos_dist = dist[pos_rows, pos_cols]
        order = np.lexsort((pos_dist, pos_rows))
        pos_rows, pos_cols, pos_dist = pos_rows[order], pos_cols[order], pos_dist[order]
        pos_start = np.cumsum(n_pos) - n_pos
        thresholds = pos_dist[pos_start + n_pos - 1]

        less, not_greater = _count_not_greater(dist, thresholds, pos_rows, pos_dist)
        before = less
        for i in np.flatnonzero(not_greater - less > 1):  # tied distances: order by gallery index
            r, c = pos_rows[i], pos_cols[i]
            before[i] += np.count_nonzero(dist[r, :c] == pos_dist[i])

        # Junk entries ranked before each positive.
        if len(junk_rows):
            junk_dist = dist[junk_rows, junk_cols]
            junk_start = np.cumsum(n_junk) - n_junk
            pairs = n_junk[pos_rows]
            which_pos = np.repeat(np.arange(len(pos_rows)), pairs)
            which_junk = _ranges(junk_start[pos_rows], pairs)
            jd, t = junk_dist[which_junk], pos_dist[which_pos]
            ahead = (jd < t) | ((jd == t) & (junk_cols[which_junk] < pos_cols[which_pos]))
            before = before - np.bincount(which_pos[ahead], minlength=len(pos_rows))

        ranks = before + 1  # 1-based ranks among the non-junk gallery, ascending within each row
        k = np.arange(len(ranks), dtype=np.int64) - np.repeat(pos_start, n_pos) + 1
        precision = np.zeros((num_rows, int(n_pos.max())), dtype=np.float64)
        precision[pos_rows, k - 1] = k / ranks
        # Sequential (left-to-right) sum per row; the zero padding after the last hit is exact.
        ap = np.cumsum(precision, axis=1)[:, -1] / n_pos
        inp = n_pos / ranks[pos_start + n_pos - 1]
        result = _ChunkResult(first_rank=ranks[pos_start], average_precision=ap, inverse_negative_penalty=inp)
        if self.protocol == "cuhk03":
            if draws is None:
                raise RuntimeError("the CUHK03 protocol needs draws from _RankEvaluator.draw")
            result.sgs_rank_hist = self._single_gallery_shot(queries, dist, draws)
        return result

    def _single_gallery_shot(
        self, queries: IntArray, dist: np.ndarray[Any, Any], draws: FloatArray
    ) -> IntArray:
        """Histogram (length ``max_rank + 1``, last bin = beyond) of single-gallery-shot first-hit ranks.

        For each repeat, identity ``h`` with ``n_h`` candidate images contributes its
        ``floor(u * n_h)``-th image in ranking order (a uniform draw); the query's own identity
        contributes one of its correct matches the same way. The rank of that match among the drawn
        images is one plus the number of other identities whose drawn image precedes it.
        """
        order = np.argsort(dist, axis=1, kind="stable")
        codes = self.g_code[order]
        hist = np.zeros(self.max_rank + 1, dtype=np.int64)
        counts = self.id_count
        for b, q in enumerate(queries):
            hq = self.q_code[q]
            positions = np.flatnonzero((codes[b] == hq) & (self.g_camids[order[b]] != self.q_camids[q]))
            u = draws[b]
            pick = np.minimum((u[:, hq] * len(positions)).astype(np.int64), len(positions) - 1)
            drawn = np.minimum((u * counts).astype(np.int64), counts - 1)  # (num_repeats, num_ids)
            at = positions[pick]
            prefix = np.zeros(len(counts), dtype=np.int64)
            done = 0
            for r in np.argsort(at, kind="stable"):
                prefix += np.bincount(codes[b, done : at[r]], minlength=len(counts))
                done = at[r]
                ahead = drawn[r] < prefix
                ahead[hq] = False
                hist[min(int(np.count_nonzero(ahead)), self.max_rank)] += 1
        return hist

    def add(self, queries: IntArray, result: _ChunkResult) -> None:
        """Record the result of :meth:`process` for ``queries``."""
        self._results.append((queries, result))

    def finish(self) -> RankMetrics:
        """Aggregate every recorded chunk into :class:`RankMetrics`."""
        num_valid = len(self.valid)
        if num_valid == 0:
            raise ValueError(
                "no query has a valid match: every query identity is absent from the gallery "
                "or only seen there by the query's own camera"
            )
        ap = np.full(self.num_query, np.nan)
        inp = np.full(self.num_query, np.nan)
        hist = np.zeros(self.max_rank + 1, dtype=np.int64)
        seen = 0
        for queries, res in self._results:
            ap[queries] = res.average_precision
            inp[queries] = res.inverse_negative_penalty
            seen += len(queries)
            if self.protocol == "cuhk03":
                assert res.sgs_rank_hist is not None
                hist += res.sgs_rank_hist
            else:
                hist += np.bincount(
                    np.minimum(res.first_rank, self.max_rank + 1) - 1, minlength=self.max_rank + 1
                )
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
        )

    def chunks(self, chunk_size: int) -> Iterator[IntArray]:
        """The valid queries, in order, in chunks of at most ``chunk_size``."""
        for start in range(0, len(self.valid), chunk_size):
            yield self.valid[start : start + chunk_size]


def _check_chunking(chunk_size: int, num_workers: int) -> None:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
        raise ValueError(f"num_workers must be a positive integer, got {num_workers!r}")


def rank_metrics(
    distmat: ArrayLike,
    q_pids: ArrayLike,
    g_pids: ArrayLike,
    q_camids: ArrayLike,
    g_camids: ArrayLike,
    max_rank: int = 50,
    *,
    protocol: Protocol = "market1501",
    num_repeats: int = 10,
    seed: int | None = 0,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    num_workers: int = 1,
) -> RankMetrics:
    r"""CMC, mAP and mINP of a query-gallery distance matrix.

    For a valid query with correct matches at ranks :math:`r_1 < \dots < r_P` (same identity, other
    camera; the gallery entries with the query's identity and camera are removed first):
    :math:`\mathrm{AP} = \frac{1}{P}\sum_k k / r_k`, :math:`\mathrm{INP} = P / r_P` and the CMC counts
    the query as found at every rank :math:`n \ge r_1`. Ties are broken by gallery index (stable sort);
    see the module docstring for the exact numerics.

    Args:
        distmat: ``(num_query, num_gallery)`` distances (smaller is more similar), float or int; a
            numpy array or a tensor on any device. NaN is rejected.
        q_pids: ``(num_query,)`` integer identities of the queries.
        g_pids: ``(num_gallery,)`` integer identities of the gallery.
        q_camids: ``(num_query,)`` integer camera ids of the queries.
        g_camids: ``(num_gallery,)`` integer camera ids of the gallery.
        max_rank: Length of the CMC curve; clipped (with a warning) to ``num_gallery``.
        protocol: ``"market1501"``, or ``"cuhk03"`` for the single-gallery-shot CMC (which sorts whole
            gallery rows, so it runs at the speed of a classic evaluator; it is meant for CUHK03-sized
            galleries).
        num_repeats: Random gallery draws per query for the CUHK03 CMC.
        seed: Seed of the CUHK03 draws (:func:`numpy.random.default_rng`); the draws are taken in
            query order, ``rng.random((num_repeats, num_identities))`` per valid query.
        chunk_size: Queries processed together; bounds the temporary memory to a few times
            ``chunk_size * num_gallery`` bytes.
        num_workers: Threads evaluating chunks concurrently (the numbers do not depend on it).

    Returns:
        The :class:`RankMetrics`.

    Raises:
        ValueError: On malformed inputs (the message names the argument) or if no query has a valid
            match.

    Examples:
        >>> import numpy as np
        >>> distmat = np.array([[0.1, 0.5, 0.2, 0.9], [0.4, 0.3, 0.8, 0.1]])
        >>> m = rank_metrics(distmat, [1, 2], [1, 2, 3, 1], [0, 0], [1, 1, 1, 0], max_rank=4)
        >>> m.cmc.tolist(), m.mean_ap, m.mean_inp, m.num_valid_queries
        ([0.5, 1.0, 1.0, 1.0], 0.75, 0.75, 2)
    """
    _check_chunking(chunk_size, num_workers)
    d = _check_distmat(distmat)
    ev = _RankEvaluator(
        q_pids, g_pids, q_camids, g_camids, d.shape[0], d.shape[1], max_rank, protocol, num_repeats, seed
    )
    jobs = [(queries, ev.draw(len(queries))) for queries in ev.chunks(chunk_size)]
    if num_workers == 1 or len(jobs) <= 1:
        for queries, draws in jobs:
            ev.add(queries, ev.process(queries, d[queries], draws))
    else:
        with ThreadPoolExecutor(max_workers=num_workers) as pool:
            futures = [pool.submit(lambda q, u: ev.process(q, d[q], u), q, u) for q, u in jobs]
            for (queries, _), fut in zip(jobs, futures, strict=True):
                ev.add(queries, fut.result())
    return ev.finish()


def evaluate_rank(
    distmat: ArrayLike,
    q_pids: ArrayLike,
    g_pids: ArrayLike,
    q_camids: ArrayLike,
    g_camids: ArrayLike,
    max_rank: int = 50,
    use_metric_cuhk03: bool = False,
    use_cython: bool = True,
) -> tuple[npt.NDArray[np.float32], float]:
    r"""CMC curve and mAP, with torchreid's ``evaluate_rank`` signature.

    Market-1501 protocol: gallery entries with the query's identity and camera are removed, queries
    without a remaining correct match are skipped, and for a query with correct matches at ranks
    :math:`r_1 < \dots < r_P`, :math:`\mathrm{AP} = \frac{1}{P}\sum_{k=1}^{P} k / r_k` (the mean
    precision at each hit) and :math:`\mathrm{CMC}(n) = [r_1 \le n]`. ``use_metric_cuhk03=True``
    switches the CMC to the CUHK03 single-gallery-shot protocol (10 seeded random draws of one gallery
    image per identity). See :func:`rank_metrics` for mINP, per-query values and more options.

    Args:
        distmat: ``(num_query, num_gallery)`` distances, numpy array or tensor (any device).
        q_pids: ``(num_query,)`` query identities.
        g_pids: ``(num_gallery,)`` gallery identities.
        q_camids: ``(num_query,)`` query camera ids.
        g_camids: ``(num_gallery,)`` gallery camera ids.
        max_rank: CMC length; clipped with a warning to the gallery size, like torchreid.
        use_metric_cuhk03: Use the CUHK03 single-gallery-shot CMC.
        use_cython: Ignored; accepted so that calls written for torchreid keep working.

    Returns:
        ``(cmc, mAP)``: the float32 ``(max_rank,)`` CMC curve and the mAP, both as fractions.

    Raises:
        ValueError: On malformed inputs or if no query has a valid match.

    Examples:
        >>> import numpy as np
        >>> distmat = np.array([[0.1, 0.5, 0.2, 0.9], [0.4, 0.3, 0.8, 0.1]])
        >>> cmc, mAP = evaluate_rank(distmat, [1, 2], [1, 2, 3, 1], [0, 0], [1, 1, 1, 0], max_rank=4)
        >>> cmc.tolist(), mAP
        ([0.5, 1.0, 1.0, 1.0], 0.75)
    """
    del use_cython  # there is a single, vectorised implementation
    m = rank_metrics(
        distmat,
        q_pids,
        g_pids,
        q_camids,
        g_camids,
        max_rank,
        protocol="cuhk03" if use_metric_cuhk03 else "market1501",
    )
    return m.cmc, m.mean_ap
