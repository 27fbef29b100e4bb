"""CUHK03 single-gallery-shot CMC kernel (as in torchreid's ``eval_cuhk03``).

Each of ``num_repeats`` times, one gallery image per identity is drawn at random and the query's first
hit is ranked in that reduced gallery. AP and INP are those of the Market-1501 kernel.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._inputs import FloatArray, IntArray
from ._labels import LabelIndex

__all__ = ["single_gallery_shot_histogram"]


def single_gallery_shot_histogram(
    index: LabelIndex, queries: IntArray, dist: np.ndarray[Any, Any], draws: FloatArray, max_rank: int
) -> IntArray:
    """Histogram (length ``max_rank + 1``, last bin = beyond) of single-gallery-shot first-hit ranks.

    For each repeat, identity ``h`` with ``n_h`` candidate images contributes its
    ``floor(u * n_h)``-th image in ranking order (a uniform draw); the query's own identity
    contributes one of its correct matches the same way. The rank of that match among the drawn
    images is one plus the number of other identities whose drawn image precedes it.

    Args:
        index: The evaluation's labels.
        queries: Valid query indices.
        dist: Their ``(len(queries), num_gallery)`` distance rows.
        draws: ``(len(queries), num_repeats, num_identities)`` uniform numbers in ``[0, 1)``.
        max_rank: Length of the CMC curve.

    Returns:
        ``hist[r]``: how many (query, repeat) trials found their match at rank ``r + 1``.

    Examples:
        >>> index = LabelIndex.build(*(np.array(a) for a in ([1], [1, 2, 1], [0], [1, 1, 1])))
        >>> draws = np.zeros((1, 2, 2))  # two repeats, each drawing the nearest image of every identity
        >>> single_gallery_shot_histogram(index, np.array([0]), np.array([[0.3, 0.1, 0.2]]), draws, 2)
        array([0, 2, 0])
    """
    order = np.argsort(dist, axis=1, kind="stable")
    codes = index.g_code[order]
    hist = np.zeros(max_rank + 1, dtype=np.int64)
    counts = index.id_count
    for b, q in enumerate(queries):
        hq = index.q_code[q]
        positions = np.flatnonzero((codes[b] == hq) & (index.g_camids[order[b]] != index.q_camids[q]))
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
            hist[min(int(np.count_nonzero(ahead)), max_rank)] += 1
    return hist
