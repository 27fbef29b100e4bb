"""Which queries an evaluation can score."""

import numpy as np
import numpy.typing as npt

from ._labels import LabelIndex

__all__ = ["has_match_in_other_camera"]


def has_match_in_other_camera(
    q_pids: npt.ArrayLike, q_camids: npt.ArrayLike, g_pids: npt.ArrayLike, g_camids: npt.ArrayLike
) -> npt.NDArray[np.bool_]:
    """The queries that the Market-1501 and CUHK03 protocols count: a gallery match in another camera.

    Gallery images of the query's own identity and camera are junk under both protocols, so a query
    without any other match has no defined rank and is left out of CMC, mAP and mINP. This is the
    ranking's own rule (:class:`~stadb_reid.evaluation._labels.LabelIndex`), for callers outside it.

    Examples:
        >>> has_match_in_other_camera([1, 1, 2], [0, 1, 0], [1, 2], [0, 0])
        array([False,  True, False])
    """
    labels = [np.asarray(a, dtype=np.int64).reshape(-1) for a in (q_pids, g_pids, q_camids, g_camids)]
    if len(labels[1]) == 0:
        return np.zeros(len(labels[0]), dtype=bool)
    return LabelIndex.build(*labels).num_positives > 0
