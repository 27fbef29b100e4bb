r"""k-reciprocal re-ranking of query-gallery distances.

Zhong, Zheng, Cao & Li, "Re-ranking Person Re-identification with k-reciprocal Encoding", CVPR 2017.

All :math:`N = Q + G` probe and gallery samples form one pool with distances :math:`d` (each row
divided by its maximum, as in the authors' code, so that :math:`\lambda` does not depend on the scale of
the distances). With :math:`N(i, k)` the :math:`k + 1` nearest samples of :math:`i` (:math:`i` itself
included when it is its own nearest):

1. k-reciprocal neighbours: :math:`R(i, k) = \{ j \in N(i, k) : i \in N(j, k) \}`.
2. Expansion: :math:`R^*(i) = R(i, k_1) \cup \bigcup R(j, \operatorname{round}(k_1 / 2))` over the
   :math:`j \in R(i, k_1)` with :math:`|R(j, \operatorname{round}(k_1/2)) \cap R(i, k_1)| > \frac{2}{3}
   |R(j, \operatorname{round}(k_1/2))|` (``round`` rounds half to even, like ``np.around``).
3. Gaussian-kernel encoding: :math:`V_{ij} = e^{-d(i, j)} / \sum_{l \in R^*(i)} e^{-d(i, l)}` for
   :math:`j \in R^*(i)`, else 0.
4. Local query expansion (if :math:`k_2 > 1`): :math:`V_i \leftarrow \frac{1}{k_2} \sum_{j \in N(i, k_2 -
   1)} V_j`.
5. Jaccard distance :math:`d_J(p, g) = 1 - \frac{\sum_l \min(V_{pl}, V_{gl})}{\sum_l \max(V_{pl}, V_{gl})}`
   (1 when both encodings are empty, which happens only with tiny ``k1`` and tied distances).
6. Final distance :math:`d^*(p, g) = (1 - \lambda)\, d_J(p, g) + \lambda\, d(p, g)`.

Neighbour lists follow a stable ranking (ties broken by pool index: probes first, then gallery). ``V`` is
kept sparse (each row has at most a few hundred non-zeros), and the Jaccard sums only visit the
(probe, gallery) pairs that share a non-zero column, in chunks of probes, so memory stays far below the
dense :math:`N \times N` matrices of the reference implementation.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from stadb_layers._validation import check_in_interval

from ._inputs import ArrayLike, FloatArray, IntArray, check_positive_integer, to_numpy

__all__ = ["k_reciprocal_rerank"]


def _check_square(x: np.ndarray[Any, Any], name: str, rows: int, cols: int) -> np.ndarray[Any, Any]:
    if x.ndim != 2 or x.shape != (rows, cols):
        raise ValueError(f"{name} must have shape ({rows}, {cols}), got {x.shape}")
    if x.dtype.kind not in "fiu":
        raise ValueError(f"{name} must hold real numbers, got dtype {x.dtype}")
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    for s in range(0, x.shape[0], max(1, 2**22 // max(1, cols))):
        if not np.isfinite(x[s : s + 2**22 // max(1, cols) or 1]).all():
            raise ValueError(f"{name} must be finite")
    return x


class _Pool:
    """Row-normalised distances of the probe + gallery pool, without building the N x N matrix."""

    def __init__(self, q_g: FloatArray, q_q: FloatArray, g_g: FloatArray) -> None:
        self.q_g, self.q_q, self.g_g = q_g, q_q, g_g
        self.g_q = np.ascontiguousarray(q_g.T)
        self.num_query = q_g.shape[0]
        self.size = q_g.shape[0] + q_g.shape[1]
        row_max = np.concatenate(
            [np.maximum(q_q.max(axis=1), q_g.max(axis=1)), np.maximum(q_g.max(axis=0), g_g.max(axis=1))]
        )
        self.scale = 1.0 / np.where(row_max > 0, row_max, 1.0)

    def rows(self, start: int, stop: int) -> FloatArray:
        """Normalised distances of pool rows ``start:stop`` to the whole pool."""
        nq = self.num_query
        parts = []
        if start < nq:
            s, e = start, min(stop, nq)
            parts.append(np.concatenate([self.q_q[s:e], self.q_g[s:e]], axis=1))
        if stop > nq:
            s, e = max(start, nq) - nq, stop - nq
            parts.append(np.concatenate([self.g_q[s:e], self.g_g[s:e]], axis=1))
        block = np.concatenate(parts, axis=0, dtype=np.float64) if len(parts) > 1 else parts[0]
        out: FloatArray = np.multiply(block, self.scale[start:stop, None], dtype=np.float64)
        return out

    def pairs(self, i: IntArray, j: IntArray) -> FloatArray:
        """Normalised distances ``d(i[k], j[k])``."""
        nq = self.num_query
        out = np.empty(len(i), dtype=np.float64)
        iq, jq = i < nq, j < nq
        sel = iq & jq
        out[sel] = self.q_q[i[sel], j[sel]]
        sel = iq & ~jq
        out[sel] = self.q_g[i[sel], j[sel] - nq]
        sel = ~iq & jq
        out[sel] = self.q_g[j[sel], i[sel] - nq]  # d(gallery, query) is read from q_g_dist
        sel = ~iq & ~jq
        out[sel] = self.g_g[i[sel] - nq, j[sel] - nq]
        return out * self.scale[i]


def _stable_smallest(d: FloatArray, k: int) -> IntArray:
    """Indices of the ``k`` smallest entries of each row, in stable ``argsort`` order."""
    n = d.shape[1]
    if k >= n:
        return np.argsort(d, axis=1, kind="stable")
    kth = np.partition(d, k - 1, axis=1)[:, k - 1 : k]
    below = d < kth
    tie = d == kth
    need = k - np.count_nonzero(below, axis=1)
    crowded = np.flatnonzero(np.count_nonzero(tie, axis=1) > need)  # more ties than room: first ones
    if len(crowded):
        tie[crowded] &= np.cumsum(tie[crowded], axis=1) <= need[crowded, None]
    take = below | tie
    cols = np.nonzero(take)[1].reshape(d.shape[0], k)  # ascending index within each row
    order = np.argsort(np.take_along_axis(d, cols, axis=1), axis=1, kind="stable")
    return np.take_along_axis(cols, order, axis=1)


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


def k_reciprocal_rerank(
    q_g_dist: ArrayLike,
    q_q_dist: ArrayLike,
    g_g_dist: ArrayLike,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
) -> npt.NDArray[np.float32]:
    r"""Re-ranked query-gallery distances by k-reciprocal encoding (Zhong et al., CVPR 2017).

    :math:`d^* = (1 - \lambda)\, d_J + \lambda\, d`, where :math:`d_J` is the Jaccard distance between the
    Gaussian-weighted expanded k-reciprocal neighbour sets of probe and gallery, and :math:`d` the
    original distance divided by its row maximum over the pool (see the module docstring for every
    step). The authors apply it to squared Euclidean distances (``metric="sqeuclidean"``); note that
    torchreid's ``re_ranking`` squares its input once more.

    Args:
        q_g_dist: ``(Q, G)`` query-gallery distances (non-negative).
        q_q_dist: ``(Q, Q)`` query-query distances.
        g_g_dist: ``(G, G)`` gallery-gallery distances.
        k1: Size of the k-reciprocal neighbourhood (paper: 20).
        k2: Neighbours averaged by the local query expansion; 1 disables it (paper: 6).
        lambda_value: Weight of the original distance, in ``[0, 1]`` (paper: 0.3).

    Returns:
        ``(Q, G)`` float32 re-ranked distances.

    Raises:
        ValueError: On shapes that do not fit together, non-finite distances or bad hyper-parameters.

    Examples:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=(12, 4))
        >>> d = ((x[:, None] - x[None]) ** 2).sum(-1)
        >>> out = k_reciprocal_rerank(d[:3, 3:], d[:3, :3], d[3:, 3:], k1=4, k2=2)
        >>> out.shape, out.dtype, bool(np.isfinite(out).all())
        ((3, 9), dtype('float32'), True)
        >>> scaled = d[:3, 3:] / np.maximum(d[:3, :3].max(1), d[:3, 3:].max(1))[:, None]
        >>> np.allclose(k_reciprocal_rerank(d[:3, 3:], d[:3, :3], d[3:, 3:], lambda_value=1.0), scaled)
        True
    """
    k1, k2 = check_positive_integer(k1, "k1"), check_positive_integer(k2, "k2")
    check_in_interval(lambda_value, "lambda_value", 0, 1, low_closed=True, high_closed=True)
    qg = to_numpy(q_g_dist)
    if qg.ndim != 2:
        raise ValueError(f"q_g_dist must be a 2-D (num_query, num_gallery) matrix, got shape {qg.shape}")
    nq, ng = qg.shape
    if nq == 0 or ng == 0:
        raise ValueError(f"q_g_dist must have at least one query and one gallery entry, got shape {qg.shape}")
    pool = _Pool(
        _check_square(qg, "q_g_dist", nq, ng),
        _check_square(to_numpy(q_q_dist), "q_q_dist", nq, nq),
        _check_square(to_numpy(g_g_dist), "g_g_dist", ng, ng),
    )
    n = pool.size
    k_half = round(k1 / 2)  # half to even, as np.around in the authors' code

    # Nearest neighbours of every pool sample, in stable order.
    width = min(max(k1 + 1, k2), n)
    knn = np.empty((n, width), dtype=np.int64)
    step = max(1, 2**24 // n)
    for s in range(0, n, step):
        knn[s : s + step] = _stable_smallest(pool.rows(s, min(s + step, n)), width)

    # R(i, k1) and R(j, k1 / 2), as padded neighbour lists with masks.
    fwd, fwd_mask = _reciprocal(knn, k1)
    half, half_mask = _reciprocal(knn, k_half)
    half_size = half_mask.sum(axis=1)

    # Expansion R*(i): add R(j, k1/2) for the j in R(i, k1) sharing more than 2/3 of it with R(i, k1).
    members = [np.where(fwd_mask, fwd, n)]
    step = max(1, 2**22 // (fwd.shape[1] ** 2 * half.shape[1]))
    accepted = np.empty(fwd.shape, dtype=bool)
    for s in range(0, n, step):
        r_i = np.where(fwd_mask[s : s + step], fwd[s : s + step], -1)  # (rows, w1)
        cand = fwd[s : s + step]  # candidates j, (rows, w1)
        cand_half = np.where(half_mask[cand], half[cand], -2)  # (rows, w1, wh)
        shared = (cand_half[:, :, :, None] == r_i[:, None, None, :]).any(axis=3).sum(axis=2)
        accepted[s : s + step] = fwd_mask[s : s + step] & (3 * shared > 2 * half_size[cand])
    extra = np.where((accepted[:, :, None] & half_mask[fwd]), half[fwd], n)  # (n, w1, wh)
    members.append(extra.reshape(n, -1))
    cand_all = np.sort(np.concatenate(members, axis=1), axis=1)
    keep = cand_all < n
    keep[:, 1:] &= cand_all[:, 1:] != cand_all[:, :-1]
    rows_v = np.nonzero(keep)[0]
    cols_v = cand_all[keep]

    # Gaussian-kernel encoding V (CSR, rows sum to one).
    weight = np.exp(-pool.pairs(rows_v, cols_v))
    row_sum = np.bincount(rows_v, weights=weight, minlength=n)
    vals_v = weight / np.where(row_sum > 0, row_sum, 1.0)[rows_v]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows_v, minlength=n))]).astype(np.int64)

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
        indptr = np.concatenate([[0], np.cumsum(np.bincount(rows_v, minlength=n))]).astype(np.int64)
    row_total = np.bincount(rows_v, weights=vals_v, minlength=n)

    # Jaccard distance between probes and gallery: sum of min over the shared columns.
    gallery_entry = rows_v >= nq
    by_col = np.argsort(cols_v[gallery_entry], kind="stable")
    g_rows = rows_v[gallery_entry][by_col] - nq
    g_vals = vals_v[gallery_entry][by_col]
    col_ptr = np.concatenate([[0], np.cumsum(np.bincount(cols_v[gallery_entry], minlength=n))]).astype(
        np.int64
    )
    jaccard = np.empty((nq, ng), dtype=np.float64)
    col_len = np.diff(col_ptr)
    step = max(1, 2**21 // max(1, ng))
    for s in range(0, nq, step):
        e = min(s + step, nq)
        pos, counts = _csr_rows(indptr, np.arange(s, e))
        p_local = np.repeat(np.arange(e - s), counts)
        p_cols, p_vals = cols_v[pos], vals_v[pos]
        # Expand in slices so that the (probe entry, gallery entry) pairs stay bounded in memory.
        shared = np.zeros((e - s) * ng, dtype=np.float64)
        for a, b in _slices(col_len[p_cols], 2**23):
            gpos, gcounts = _csr_rows(col_ptr, p_cols[a:b])
            mins = np.minimum(np.repeat(p_vals[a:b], gcounts), g_vals[gpos])
            shared += np.bincount(
                np.repeat(p_local[a:b], gcounts) * ng + g_rows[gpos], weights=mins, minlength=len(shared)
            )
        shared = shared.reshape(e - s, ng)
        union = row_total[s:e, None] + row_total[None, nq:] - shared
        jaccard[s:e] = 1.0 - np.divide(shared, union, out=np.zeros_like(shared), where=union > 0)

    original = pool.q_g * pool.scale[:nq, None]
    return ((1.0 - lambda_value) * jaccard + lambda_value * original).astype(np.float32)
