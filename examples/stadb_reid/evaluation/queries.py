"""Which queries an evaluation can score."""

import numpy as np
import numpy.typing as npt

__all__ = ["has_match_in_other_camera"]


def has_match_in_other_camera(
    q_pids: npt.ArrayLike, q_camids: npt.ArrayLike, g_pids: npt.ArrayLike, g_camids: npt.ArrayLike
) -> npt.NDArray[np.bool_]:
    """The queries that the Market-1501 and CUHK03 protocols count: a gallery match in another camera.

    Gallery images of the query's own identity and camera are junk under both protocols, so a query
    without any other match has no defined rank and is left out of CMC, mAP and mINP.

    Examples:
        >>> has_match_in_other_camera([1, 1, 2], [0, 1, 0], [1, 2], [0, 0])
        array([False,  True, False])
    """
    cameras: dict[int, set[int]] = {}
    for pid, camid in zip(np.asarray(g_pids).tolist(), np.asarray(g_camids).tolist(), strict=True):
        cameras.setdefault(pid, set()).add(camid)
    return np.array(
        [
            bool(cameras.get(pid, set()) - {camid})
            for pid, camid in zip(np.asarray(q_pids).tolist(), np.asarray(q_camids).tolist(), strict=True)
        ],
        dtype=bool,
    )
