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

The Market-1501 kernel never sorts a full gallery row (only the entries that can precede a correct
match are counted); work is done in chunks of queries, which bounds memory and lets
:func:`~stadb_reid.evaluation.distance.evaluate_from_features` stream distances. The result type,
:class:`~stadb_reid.evaluation.metrics.RankMetrics`, and :data:`EvaluationProtocol` are defined in
:mod:`stadb_reid.evaluation.metrics` and re-exported here.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ._inputs import ArrayLike, check_chunking, check_distmat
from ._ranker import DEFAULT_CHUNK_SIZE, RankEvaluator, evaluate_chunks
from .metrics import EvaluationProtocol, RankMetrics

__all__ = ["EvaluationProtocol", "RankMetrics", "evaluate_rank", "rank_metrics"]


def rank_metrics(
    distmat: ArrayLike,
    q_pids: ArrayLike,
    g_pids: ArrayLike,
    q_camids: ArrayLike,
    g_camids: ArrayLike,
    max_rank: int = 50,
    *,
    protocol: EvaluationProtocol = "market1501",
    num_repeats: int = 10,
    seed: int | None = 0,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    num_workers: int = 1,
    ap_at: int = 0,
) -> RankMetrics:
    r"""CMC, mAP and mINP of a query-gallery distance matrix.

    For a valid query with correct matches at ranks :math:`r_1 < \dots < r_P` (same identity, other
    camera; the gallery entries with the query's identity and camera are removed first):
    :math:`\mathrm{AP} = \frac{1}{P}\sum_k k / r_k`, :math:`\mathrm{INP} = P / r_P` and the CMC counts
    the query as found at every rank :math:`n \ge r_1`. Ties are broken by gallery index (stable sort);
    see the module docstring for the exact numerics.

    With ``ap_at = N > 0``, also the mAP truncated at rank ``N`` as the STADB authors' evaluator
    computes it: :math:`\mathrm{AP@N} = \frac{1}{P}\sum_{k:\, r_k \le N} k / r_k`, the hits beyond rank
    ``N`` (of the gallery without junk) dropped but the denominator still all ``P`` correct matches;
    it equals the AP when ``N`` is at least the gallery size.

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
        ap_at: Rank at which to truncate the AP as well; 0 computes the full AP only.

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
        >>> rank_metrics(distmat, [1, 2], [1, 2, 3, 1], [0, 0], [1, 1, 1, 0], max_rank=4, ap_at=1).mean_ap_at
        0.5
    """
    check_chunking(chunk_size, num_workers)
    d = check_distmat(distmat)
    labels = (q_pids, g_pids, q_camids, g_camids)
    ev = RankEvaluator(*labels, d.shape[0], d.shape[1], max_rank, protocol, num_repeats, seed, ap_at=ap_at)
    return evaluate_chunks(ev, d, chunk_size, num_workers)


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
