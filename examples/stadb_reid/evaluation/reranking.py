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

from stadb_layers.checks import check_in_interval, check_positive_int

from ._inputs import ArrayLike, FloatArray, IntArray, to_numpy
from ._kreciprocal import encode, jaccard_blocks

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
    k1, k2 = check_positive_int(k1, "k1"), check_positive_int(k2, "k2")
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

    # Nearest neighbours of every pool sample, in stable order.
    width = min(max(k1 + 1, k2), n)
    knn = np.empty((n, width), dtype=np.int64)
    step = max(1, 2**24 // n)
    for s in range(0, n, step):
        knn[s : s + step] = _stable_smallest(pool.rows(s, min(s + step, n)), width)

    v = encode(knn, k1, k2, pool.pairs)
    jaccard = np.empty((nq, ng), dtype=np.float64)
    for first, block in jaccard_blocks(v, nq):
        jaccard[first : first + len(block)] = block

    original = pool.q_g * pool.scale[:nq, None]
    return ((1.0 - lambda_value) * jaccard + lambda_value * original).astype(np.float32)
