r"""k-reciprocal re-ranking, straight from features, at any dataset size.

Zhong, Zheng, Cao & Li, "Re-ranking Person Re-identification with k-reciprocal Encoding", CVPR 2017.

All :math:`N = Q + G` probe and gallery samples form one pool with distances :math:`d` (each row
divided by its maximum, as in the authors' code, so that :math:`\lambda` does not depend on the scale of
the distances). With :math:`N(i, k)` the :math:`k + 1` nearest samples of :math:`i` (:math:`i` itself
included when it is its own nearest; ties broken by pool index, probes first):

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

:func:`k_reciprocal_rerank_features` never holds an :math:`N \times N` matrix:

1. **Neighbour lists.** The pool distances are computed in tiles of ``chunk_size x chunk_size``, one
   matrix product each, on the device of the features (CPU or CUDA). Only the tiles on and above the
   diagonal are computed; each updates a running top-:math:`K` of its rows and, transposed, of its
   columns (:math:`K = \max(k_1 + 1, k_2)`). The top-:math:`K` is exact and stable: every distance is
   turned into the 64-bit key ``(monotone int32 of the float32 bits) * 2**32 + pool index``, so that
   ``topk`` of the keys orders by distance, then by pool index (probes first), the documented tie rule.
   The row maxima (the normalisation :math:`d(i, \cdot) / \max_j d(i, j)`) are collected on the way,
   and the query-gallery tiles are written into the output, which holds the original distances until
   the last step.
2. **Encodings** (:mod:`._kreciprocal`). The k-reciprocal sets, their expansion, the Gaussian encoding
   :math:`V` and the local query expansion only need the neighbour lists and the distances of the
   :math:`O(N k_1)` pairs in the sets, computed from the features; :math:`V` stays sparse (CSR, on the
   CPU).
3. **Jaccard distances**, in blocks of probes, visiting only the (probe, gallery) pairs that share a
   non-zero column of :math:`V`, then :math:`d^* = (1 - \lambda) d_J + \lambda d`, block by block.

Memory: the features, the ``(Q, G)`` float32 result (3.8 GB at MSMT17 scale, 11,659 x 82,161), the
sparse encodings (a few hundred bytes per sample) and one tile or block at a time. Work: :math:`N^2 D`
multiply-adds for the neighbour lists (half the products of the full matrix), then
:math:`O(Q G)` for the final combination.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from stadb_layers.checks import check_in_interval, check_positive_int

from ._inputs import FloatArray, IntArray
from ._kreciprocal import encode, jaccard_blocks
from .distance import Metric, _block_distances, _check_pair, _row_sq_norms

__all__ = ["DEFAULT_RERANK_CHUNK_SIZE", "k_reciprocal_rerank_features"]

DEFAULT_RERANK_CHUNK_SIZE = 2048
"""Pool samples per side of a distance tile."""

_METRICS = ("euclidean", "sqeuclidean", "cosine")
_EMPTY = torch.iinfo(torch.int64).max


class _Pool:
    """The probe + gallery features, with the norms that the distance formulas need."""

    def __init__(self, q: Tensor, g: Tensor, metric: str) -> None:
        self.q, self.g, self.metric = q, g, metric
        self.num_query = q.shape[0]
        self.size = q.shape[0] + g.shape[0]
        self.sq = torch.cat([_row_sq_norms(q), _row_sq_norms(g)])
        self.inv = self.sq.sqrt().clamp_min(1e-12).reciprocal()

    def rows(self, start: int, stop: int) -> Tensor:
        """Features of pool samples ``start:stop`` (a view when they are all probes or all gallery)."""
        nq = self.num_query
        if stop <= nq:
            return self.q[start:stop]
        if start >= nq:
            return self.g[start - nq : stop - nq]
        return torch.cat([self.q[start:], self.g[: stop - nq]])

    def gather(self, idx: Tensor) -> Tensor:
        out = torch.empty(len(idx), self.q.shape[1], dtype=self.q.dtype, device=self.q.device)
        probe = idx < self.num_query
        out[probe] = self.q[idx[probe]]
        out[~probe] = self.g[idx[~probe] - self.num_query]
        return out

    def tile(self, a: tuple[int, int], b: tuple[int, int]) -> Tensor:
        """Distances of pool samples ``a[0]:a[1]`` (rows) to ``b[0]:b[1]``, as :func:`pairwise_distance`."""
        rows, cols = slice(*a), slice(*b)
        sq_norms, inv_norms = (self.sq[rows], self.sq[cols]), (self.inv[rows], self.inv[cols])
        return _block_distances(self.rows(*a), self.rows(*b), sq_norms, inv_norms, self.metric)

    def pairs(self, i: Tensor, j: Tensor) -> Tensor:
        """Distances ``d(i[k], j[k])``, same formulas as :meth:`tile`."""
        dot = (self.gather(i) * self.gather(j)).sum(1)
        if self.metric == "cosine":
            return 1.0 - dot * self.inv[i] * self.inv[j]
        d = (self.sq[j] - 2.0 * dot + self.sq[i]).clamp_min(0.0)
        return d.sqrt() if self.metric == "euclidean" else d


def _monotone_bits(d: Tensor) -> Tensor:
    """int32 with the order of the float32 ``d`` (-0.0 and +0.0 equal)."""
    bits = d.view(torch.int32)
    negative = bits < 0
    if bool(negative.any()):
        bits = torch.where(negative, (bits ^ 0x7FFFFFFF) + 1, bits)
    return bits


def _smallest_keys(bits: Tensor, k: int, first_index: int) -> Tensor:
    """Keys of the ``k`` smallest entries of each row of a tile (all of them if it has ``k`` columns or less).

    ``topk`` of ``k + 1`` values settles every row whose ``k``-th and ``(k + 1)``-th values differ; the
    rows with a tie across that boundary are redone with the exact keys of the whole row.
    """
    cols = bits.shape[1]
    if cols <= k:
        return (
            bits.to(torch.int64)
            .mul_(2**32)
            .add_(torch.arange(first_index, first_index + cols, device=bits.device))
        )
    vals, pos = bits.topk(k + 1, dim=1, largest=False, sorted=True)
    keys = vals[:, :k].to(torch.int64).mul_(2**32).add_(pos[:, :k] + first_index)
    tied = (vals[:, k - 1] == vals[:, k]).nonzero().squeeze(1)
    if len(tied):
        idx = torch.arange(first_index, first_index + cols, device=bits.device)
        exact = bits[tied].to(torch.int64).mul_(2**32).add_(idx)
        keys[tied] = exact.topk(k, dim=1, largest=False, sorted=False).values
    return keys


def _merge(state: Tensor, d: Tensor, first_index: int, row_max: Tensor) -> None:
    """Fold the tile ``d`` (rows of ``state``, columns from pool index ``first_index``) into the state."""
    torch.maximum(row_max, d.amax(1), out=row_max)
    keys = _smallest_keys(_monotone_bits(d), state.shape[1], first_index)
    merged = torch.cat([state, keys], dim=1)
    state.copy_(merged.topk(state.shape[1], dim=1, largest=False, sorted=False).values)


def _neighbours(
    pool: _Pool, width: int, chunk_size: int, out: npt.NDArray[np.float32], progress: bool
) -> tuple[IntArray, npt.NDArray[np.float32]]:
    """Stable ``width`` nearest neighbours and row maxima of the pool; fills ``out`` with the Q x G tiles."""
    nq, n, device = pool.num_query, pool.size, pool.q.device
    edges = [(s, min(s + chunk_size, nq)) for s in range(0, nq, chunk_size)]
    edges += [(s, min(s + chunk_size, n)) for s in range(nq, n, chunk_size)]
    state = torch.full((n, width), _EMPTY, dtype=torch.int64, device=device)
    row_max = torch.full((n,), -torch.inf, dtype=torch.float32, device=device)
    tiles: Any = [(a, b) for i, a in enumerate(edges) for b in edges[i:]]
    if progress:
        tqdm = importlib.import_module("tqdm.auto").tqdm
        tiles = tqdm(tiles, desc="re-rank: neighbours", unit="tile")
    for a, b in tiles:
        d = pool.tile(a, b)
        _merge(state[a[0] : a[1]], d, b[0], row_max[a[0] : a[1]])
        if a != b:
            _merge(state[b[0] : b[1]], d.T.contiguous(), a[0], row_max[b[0] : b[1]])
        if a[0] < nq <= b[0]:
            out[a[0] : a[1], b[0] - nq : b[1] - nq] = d.cpu().numpy()
    keys = state.sort(dim=1).values
    knn = (keys & 0xFFFFFFFF).cpu().numpy()
    return knn, row_max.cpu().numpy()


def k_reciprocal_rerank_features(
    query_features: Tensor | npt.ArrayLike,
    gallery_features: Tensor | npt.ArrayLike,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    metric: Metric = "sqeuclidean",
    *,
    chunk_size: int = DEFAULT_RERANK_CHUNK_SIZE,
    progress: bool = False,
) -> npt.NDArray[np.float32]:
    r"""Re-ranked query-gallery distances by k-reciprocal encoding, computed from features.

    :math:`d^* = (1 - \lambda)\, d_J + \lambda\, d`, with :math:`d_J` the Jaccard distance between the
    Gaussian-weighted expanded k-reciprocal neighbour sets and :math:`d` the original distance divided
    by its row maximum over the probe + gallery pool; neighbour ties are broken by pool index (probes
    first). No :math:`N \times N` matrix is built (see the module docstring), so it runs at MSMT17
    scale in about 5 GB: the ``(Q, G)`` result plus the features.

    Args:
        query_features: ``(Q, dim)`` features, numpy array or tensor; the distance tiles and neighbour
            lists are computed on its device (CPU or CUDA) in float32.
        gallery_features: ``(G, dim)`` features.
        k1: Size of the k-reciprocal neighbourhood (paper: 20).
        k2: Neighbours averaged by the local query expansion; 1 disables it (paper: 6).
        lambda_value: Weight of the original distance, in ``[0, 1]`` (paper: 0.3).
        metric: ``"sqeuclidean"`` (the authors' choice), ``"euclidean"`` or ``"cosine"``, with the
            formulas of :func:`~stadb_reid.evaluation.distance.pairwise_distance`.
        chunk_size: Pool samples per side of a distance tile (memory ``~ 20 * chunk_size**2`` bytes).
        progress: Show tqdm progress bars for the neighbour and Jaccard passes.

    Returns:
        ``(Q, G)`` float32 re-ranked distances (a numpy array in host memory).

    Raises:
        ValueError: On malformed or non-finite features, an unknown metric or bad hyper-parameters.

    Examples:
        >>> import numpy as np
        >>> from stadb_reid.evaluation import pairwise_distance
        >>> rng = np.random.default_rng(0)
        >>> q, g = rng.normal(size=(3, 4)), rng.normal(size=(9, 4))
        >>> out = k_reciprocal_rerank_features(q, g, k1=4, k2=2)
        >>> out.shape, out.dtype, bool(np.isfinite(out).all())
        ((3, 9), dtype('float32'), True)
        >>> d = pairwise_distance(q, np.concatenate([q, g]), "sqeuclidean").numpy()  # lambda = 1: d / row max
        >>> scaled = d[:, 3:] / d.max(1, keepdims=True)
        >>> bool(np.allclose(k_reciprocal_rerank_features(q, g, lambda_value=1.0), scaled))
        True
    """
    k1, k2 = check_positive_int(k1, "k1"), check_positive_int(k2, "k2")
    lam = check_in_interval(lambda_value, "lambda_value", 0, 1, low_closed=True, high_closed=True)
    if metric not in _METRICS:
        raise ValueError(f"metric must be one of {_METRICS}, got {metric!r}")
    check_positive_int(chunk_size, "chunk_size")
    q, g = _check_pair(query_features, gallery_features)
    if q.shape[0] == 0 or g.shape[0] == 0:
        raise ValueError(
            f"query_features and gallery_features must not be empty, got {q.shape[0]} and {g.shape[0]} rows"
        )
    for x, name in ((q, "query_features"), (g, "gallery_features")):
        if not all(bool(torch.isfinite(x[s : s + 4096]).all()) for s in range(0, len(x), 4096)):
            raise ValueError(f"{name} must be finite")
    nq, ng = q.shape[0], g.shape[0]
    out = np.empty((nq, ng), dtype=np.float32)
    with torch.no_grad():
        pool = _Pool(q, g, metric)
        width = min(max(k1 + 1, k2), pool.size)
        knn, row_max = _neighbours(pool, width, chunk_size, out, progress)
        scale = 1.0 / np.where(row_max > 0, row_max, np.float32(1.0))  # float32

        def pair_distances(i: IntArray, j: IntArray) -> FloatArray:
            d = np.empty(len(i), dtype=np.float32)
            for s in range(0, len(i), 2**14):
                ii = torch.from_numpy(i[s : s + 2**14]).to(q.device)
                jj = torch.from_numpy(j[s : s + 2**14]).to(q.device)
                d[s : s + 2**14] = pool.pairs(ii, jj).cpu().numpy()
            scaled: FloatArray = d.astype(np.float64) * scale[i]
            return scaled

        encoding = encode(knn, k1, k2, pair_distances)
    blocks: Any = jaccard_blocks(encoding, nq)
    if progress:
        tqdm = importlib.import_module("tqdm.auto").tqdm
        blocks = tqdm(blocks, total=-(-nq // max(1, 2**21 // ng)), desc="re-rank: Jaccard", unit="block")
    for s, jaccard in blocks:
        e = s + jaccard.shape[0]
        original = out[s:e] * scale[s:e, None]  # float32
        out[s:e] = (1.0 - lam) * jaccard + lam * original
    return out
