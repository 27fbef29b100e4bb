r"""Market-1501 chunk kernel: the ranks of every correct match, without sorting whole gallery rows.

Per query only the ranks of its few correct matches are needed. An entry can precede a match only if it
is not farther than the farthest match, so the entries beyond it are discarded with one comparison and
the rest are counted with a sort of the (usually short) surviving lists. Ties are broken by gallery
index, as a stable sort would; junk entries ranked before a match are then subtracted.

With ``ap_at = N > 0`` the kernel also returns the AP truncated at rank ``N`` (the STADB authors'
``eval_func_gpu``): only the hits within the first ``N`` non-junk entries count, but the sum is still
divided by *all* ``P`` correct matches, :math:`\mathrm{AP@N} = \frac{1}{P} \sum_{k:\, r_k \le N} k / r_k`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._inputs import FloatArray, IntArray
from ._labels import LabelIndex

__all__ = ["MarketChunk", "market_chunk"]


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
class MarketChunk:
    """Market-1501 values of a chunk of valid queries.

    Attributes:
        first_rank: 1-based rank of each query's first correct match (junk removed).
        average_precision: AP of each query, float64.
        inverse_negative_penalty: INP of each query, float64.
        average_precision_at: AP truncated at rank ``ap_at`` of each query, float64; ``None`` when
            ``ap_at`` is 0.
    """

    first_rank: IntArray
    average_precision: FloatArray
    inverse_negative_penalty: FloatArray
    average_precision_at: FloatArray | None = None


def market_chunk(
    index: LabelIndex, queries: IntArray, dist: np.ndarray[Any, Any], ap_at: int = 0
) -> MarketChunk:
    r"""Rank every correct match of the valid ``queries`` given their ``(len(queries), num_gallery)`` rows.

    Args:
        index: The evaluation's labels.
        queries: Valid query indices (each has at least one correct match).
        dist: Their distance rows, float32 or float64, without NaN.
        ap_at: If positive, also the AP truncated at this rank,
            :math:`\frac{1}{P}\sum_{k:\, r_k \le N} k / r_k` (``P`` counts every correct match).

    Returns:
        First-hit ranks, AP (summed left to right in float64, divided by the match count), INP and,
        with ``ap_at``, the truncated AP (summed the same way, so it equals the AP bit for bit when no
        hit lies beyond rank ``ap_at``).

    Examples:
        >>> index = LabelIndex.build(*(np.array(a) for a in ([1], [1, 2, 1], [0], [1, 1, 1])))
        >>> c = market_chunk(index, np.array([0]), np.array([[0.3, 0.1, 0.2]]))
        >>> c.first_rank.tolist(), c.average_precision.tolist(), c.inverse_negative_penalty.tolist()
        ([2], [0.5833333333333333], [0.6666666666666666])
        >>> market_chunk(index, np.array([0]), np.array([[0.3, 0.1, 0.2]]), ap_at=2).average_precision_at
        array([0.25])
    """
    num_rows = len(queries)
    # All (query, gallery) pairs with the same identity, by row then gallery index.
    lengths = index.q_group_len[queries]
    rows = np.repeat(np.arange(num_rows, dtype=np.int64), lengths)
    cols = index.g_order[_ranges(index.q_group_start[queries], lengths)]
    is_junk = index.g_camids[cols] == index.q_camids[queries][rows]
    pos_rows, pos_cols = rows[~is_junk], cols[~is_junk]
    junk_rows, junk_cols = rows[is_junk], cols[is_junk]
    n_pos = index.num_positives[queries]
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
    ap_trunc = None
    if ap_at > 0:
        # Ranks ascend within a row, so the hits beyond the cut are a row's trailing entries: zeroing
        # them leaves the left-to-right partial sums of the kept hits unchanged.
        beyond = ranks > ap_at
        precision[pos_rows[beyond], k[beyond] - 1] = 0.0
        ap_trunc = np.cumsum(precision, axis=1)[:, -1] / n_pos
    return MarketChunk(
        first_rank=ranks[pos_start],
        average_precision=ap,
        inverse_negative_penalty=inp,
        average_precision_at=ap_trunc,
    )
