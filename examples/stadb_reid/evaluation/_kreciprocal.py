r"""The sparse steps of k-reciprocal re-ranking, once the neighbour lists of the pool are known.

Steps 1 to 5 of :mod:`~stadb_reid.evaluation.rerank_features` (which lists them), for
:func:`~stadb_reid.evaluation.rerank_features.k_reciprocal_rerank_features`. Everything here is
:math:`O(N k)` memory except one ``(rows, num_gallery)`` float64 block of Jaccard distances at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ._inputs import FloatArray, IntArray

__all__ = ["SparseEncoding", "encode", "jaccard_blocks"]

PairDistances = Callable[[IntArray, IntArray], FloatArray]
"""``f(i, j)``: row-normalised distances ``d(i[k], j[k])`` of pool samples, float64."""


@dataclass
class SparseEncoding:
    """The encodings :math:`V` of the pool in CSR form (``indptr``, ``cols``, ``vals``) and their row sums."""

    indptr: IntArray
    rows: IntArray
    cols: IntArray
    vals: FloatArray
    row_total: FloatArray


def _reciprocal(knn: IntArray, k: int) -> tuple[IntArray, npt.NDArray[np.bool_]]:
    """``R(i, k)`` as the first ``k + 1`` neighbours of each row and a mask of the reciprocal ones."""
    width = min(k + 1, knn.shape[1])
    forward = knn[:, :width]
    n = knn.shape[0]
    mask = np.empty(forward.shape, dtype=bool)
    step = max(1, 2**22 // (width * width))
    for s in range(0, n, step):
        back = knn[forward[s : s + step], :width]  # (rows, width, width)
        mask[s : s + step] = (back == np.arange(s, min(s + step, n))[:, None, None]).any(axis=2)
    return forward, mask


def _csr_rows(indptr: IntArray, rows: IntArray) -> tuple[IntArray, IntArray]:
    """Entry positions of the given CSR rows (concatenated) and the per-row counts."""
    counts = indptr[rows + 1] - indptr[rows]
    total = int(counts.sum())
    offsets = np.cumsum(counts) - counts
    pos = np.repeat(indptr[rows] - offsets, counts) + np.arange(total, dtype=np.int64)
    return pos, counts


def _slices(counts: IntArray, limit: int) -> list[tuple[int, int]]:
    """Consecutive ``[a, b)`` ranges of ``counts`` summing to about ``limit`` (at least one item each)."""
    out = []
    cum = np.cumsum(counts)
    a, done = 0, 0
    while a < len(counts):
        b = max(a + 1, int(np.searchsorted(cum, done + limit, side="right")))
        out.append((a, b))
        done = int(cum[b - 1])
        a = b
    return out


def _indptr(rows: IntArray, n: int) -> IntArray:
    return np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))]).astype(np.int64)


def encode(knn: IntArray, k1: int, k2: int, pair_distances: PairDistances) -> SparseEncoding:
    r"""Expanded k-reciprocal sets, Gaussian encoding and local query expansion (steps 1 to 4).

    Args:
        knn: ``(N, width)`` nearest neighbours of every pool sample in stable order,
            ``width = min(max(k1 + 1, k2), N)``.
        k1: Size of the k-reciprocal neighbourhood.
        k2: Neighbours averaged by the local query expansion (1: none).
        pair_distances: Row-normalised distances of given pairs.

    Returns:
        The sparse encoding.
    """
    n = knn.shape[0]
    fwd, fwd_mask = _reciprocal(knn, k1)
    half, half_mask = _reciprocal(knn, round(k1 / 2))  # half to even, as np.around
    half_size = half_mask.sum(axis=1)

    # Expansion R*(i): add R(j, k1/2) for the j in R(i, k1) sharing more than 2/3 of it with R(i, k1).
    members = [np.where(fwd_mask, fwd, n)]
    step = max(1, 2**22 // (fwd.shape[1] ** 2 * half.shape[1]))
    accepted = np.empty(fwd.shape, dtype=bool)
    for s in range(0, n, step):
        r_i = np.where(fwd_mask[s : s + step], fwd[s : s + step], -1)
        cand = fwd[s : s + step]
        cand_half = np.where(half_mask[cand], half[cand], -2)
        shared = (cand_half[:, :, :, None] == r_i[:, None, None, :]).any(axis=3).sum(axis=2)
        accepted[s : s + step] = fwd_mask[s : s + step] & (3 * shared > 2 * half_size[cand])
    members.append(np.where((accepted[:, :, None] & half_mask[fwd]), half[fwd], n).reshape(n, -1))
    cand_all = np.sort(np.concatenate(members, axis=1), axis=1)
    del members
    keep = cand_all < n
    keep[:, 1:] &= cand_all[:, 1:] != cand_all[:, :-1]
    rows_v = np.nonzero(keep)[0]
    cols_v = cand_all[keep]
    del cand_all, keep

    # Gaussian-kernel encoding (rows sum to one).
    weight = np.exp(-pair_distances(rows_v, cols_v))
    row_sum = np.bincount(rows_v, weights=weight, minlength=n)
    vals_v = weight / np.where(row_sum > 0, row_sum, 1.0)[rows_v]
    indptr = _indptr(rows_v, n)

    # Local query expansion: V_i <- mean of V_j over the k2 nearest j (i included).
    if k2 > 1:
        new_rows, new_cols, new_vals = [], [], []
        step = max(1, 2**20 // max(1, k2 * int(np.diff(indptr).max(initial=1))))
        for s in range(0, n, step):
            e = min(s + step, n)
            nbrs = knn[s:e, :k2]
            pos, counts = _csr_rows(indptr, nbrs.ravel())
            owner = np.repeat(np.repeat(np.arange(s, e), nbrs.shape[1]), counts)
            key = owner * n + cols_v[pos]
            uniq, inverse = np.unique(key, return_inverse=True)
            summed = np.bincount(inverse, weights=vals_v[pos], minlength=len(uniq))
            new_rows.append(uniq // n)
            new_cols.append(uniq % n)
            new_vals.append(summed / nbrs.shape[1])
        rows_v = np.concatenate(new_rows)
        cols_v = np.concatenate(new_cols)
        vals_v = np.concatenate(new_vals)
        indptr = _indptr(rows_v, n)
    row_total: FloatArray = np.bincount(rows_v, weights=vals_v, minlength=n).astype(np.float64, copy=False)
    return SparseEncoding(indptr, rows_v, cols_v, vals_v, row_total)


def jaccard_blocks(v: SparseEncoding, num_query: int) -> Iterator[tuple[int, FloatArray]]:
    r"""Yield ``(start, d_J)``: Jaccard distances of consecutive blocks of probes to the whole gallery.

    :math:`d_J(p, g) = 1 - \sum_l \min(V_{pl}, V_{gl}) / \sum_l \max(V_{pl}, V_{gl})`, with
    :math:`\sum \max = |V_p| + |V_g| - \sum \min`; only the (probe, gallery) pairs that share a
    non-zero column are visited.

    Args:
        v: The encoding of the pool (probes first).
        num_query: Number of probes.

    Yields:
        The first probe of the block and its ``(rows, num_gallery)`` float64 Jaccard distances.
    """
    nq = num_query
    n = len(v.row_total)
    ng = n - nq
    gallery_entry = v.rows >= nq
    by_col = np.argsort(v.cols[gallery_entry], kind="stable")
    g_rows = v.rows[gallery_entry][by_col] - nq
    g_vals = v.vals[gallery_entry][by_col]
    col_ptr = _indptr(v.cols[gallery_entry], n)
    col_len = np.diff(col_ptr)
    step = max(1, 2**21 // max(1, ng))
    for s in range(0, nq, step):
        e = min(s + step, nq)
        pos, counts = _csr_rows(v.indptr, np.arange(s, e))
        p_local = np.repeat(np.arange(e - s), counts)
        p_cols, p_vals = v.cols[pos], v.vals[pos]
        shared = np.zeros((e - s) * ng, dtype=np.float64)
        for a, b in _slices(col_len[p_cols], 2**23):
            gpos, gcounts = _csr_rows(col_ptr, p_cols[a:b])
            mins = np.minimum(np.repeat(p_vals[a:b], gcounts), g_vals[gpos])
            shared += np.bincount(
                np.repeat(p_local[a:b], gcounts) * ng + g_rows[gpos], weights=mins, minlength=len(shared)
            )
        block = shared.reshape(e - s, ng)
        union = v.row_total[s:e, None] + v.row_total[None, nq:] - block
        yield s, 1.0 - np.divide(block, union, out=np.zeros_like(block), where=union > 0)
