"""Ranked retrieval results (the paper's Figure 4): each query with its top gallery matches.

Rankings follow the Market-1501 protocol of :mod:`stadb_reid.evaluation.rank`: the gallery is sorted by
ascending distance (ties broken by gallery index) after removing the entries with the query's identity
**and** camera, and a match is correct when it has the query's identity. In the figure the query is
framed in :data:`QUERY_COLOR`, correct matches in :data:`CORRECT_COLOR` and wrong ones in
:data:`WRONG_COLOR`, each captioned with its rank and distance.

Examples:
    >>> import numpy as np
    >>> distances = np.array([[0.3, 0.1, 0.2, 0.4]])
    >>> [m.gallery_index for m in top_matches(distances, [5], [5, 5, 7, 5], [0], [0, 1, 1, 2], top_k=3)[0]]
    [1, 2, 3]
    >>> select_queries([3, 3, 4, 4, 5], 3, seed=0).tolist()
    [0, 2, 4]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from matplotlib.figure import Figure

from stadb_layers.checks import check_positive_int

from ._canvas import agg_figure, save_png

__all__ = [
    "CORRECT_COLOR",
    "QUERY_COLOR",
    "WRONG_COLOR",
    "RankedMatch",
    "plot_retrieval",
    "retrieval_figure",
    "select_queries",
    "top_matches",
]

CORRECT_COLOR = "#00b400"
"""Frame of a correct match (same identity as the query)."""
WRONG_COLOR = "#e00000"
"""Frame of a wrong match."""
QUERY_COLOR = "#7f7f7f"
"""Neutral frame of the query image."""
FRAME_WIDTH = 4.0
"""Frame line width in points."""


@dataclass(frozen=True)
class RankedMatch:
    """One entry of a query's ranked gallery.

    Attributes:
        gallery_index: Index into the gallery.
        rank: 1-based rank among the gallery entries that are not junk for this query.
        distance: Query-gallery distance.
        correct: Whether the entry has the query's identity.
    """

    gallery_index: int
    rank: int
    distance: float
    correct: bool


def _as_array(x: Any, name: str) -> np.ndarray[Any, Any]:
    array = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {array.shape}")
    return array


def top_matches(
    distances: npt.ArrayLike | torch.Tensor,
    q_pids: npt.ArrayLike,
    g_pids: npt.ArrayLike,
    q_camids: npt.ArrayLike,
    g_camids: npt.ArrayLike,
    *,
    top_k: int = 10,
) -> list[list[RankedMatch]]:
    """The ``top_k`` gallery entries of every query, junk excluded, as ranked by the evaluation.

    Args:
        distances: ``(num_query, num_gallery)`` distances, smaller is more similar.
        q_pids: ``(num_query,)`` query identities.
        g_pids: ``(num_gallery,)`` gallery identities.
        q_camids: ``(num_query,)`` query cameras.
        g_camids: ``(num_gallery,)`` gallery cameras.
        top_k: Matches per query (fewer when the gallery without junk is shorter).

    Returns:
        For each query, its matches in rank order.

    Raises:
        ValueError: On shapes that do not fit together or a ``top_k`` below 1.
    """
    matrix = (
        distances.detach().cpu().numpy() if isinstance(distances, torch.Tensor) else np.asarray(distances)
    )
    if matrix.ndim != 2:
        raise ValueError(f"distances must be a 2-D (num_query, num_gallery) matrix, got shape {matrix.shape}")
    query_pids, query_cams = _as_array(q_pids, "q_pids"), _as_array(q_camids, "q_camids")
    gallery_pids, gallery_cams = _as_array(g_pids, "g_pids"), _as_array(g_camids, "g_camids")
    if not len(query_pids) == len(query_cams) == matrix.shape[0]:
        raise ValueError(f"q_pids and q_camids must have one entry per distances row ({matrix.shape[0]})")
    if not len(gallery_pids) == len(gallery_cams) == matrix.shape[1]:
        raise ValueError(f"g_pids and g_camids must have one entry per distances column ({matrix.shape[1]})")
    check_positive_int(top_k, "top_k")
    rankings = []
    for row, pid, camid in zip(matrix, query_pids, query_cams, strict=True):
        order = np.argsort(row, kind="stable")
        junk = (gallery_pids[order] == pid) & (gallery_cams[order] == camid)
        kept = order[~junk][:top_k]
        rankings.append(
            [
                RankedMatch(int(index), rank, float(row[index]), bool(gallery_pids[index] == pid))
                for rank, index in enumerate(kept, start=1)
            ]
        )
    return rankings


def select_queries(
    q_pids: npt.ArrayLike, num_queries: int, *, seed: int = 0, eligible: npt.ArrayLike | None = None
) -> npt.NDArray[np.int64]:
    """Pick query indices at random (seeded), one per identity before any identity repeats.

    The eligible indices are shuffled with ``numpy.random.default_rng(seed)``; the first index of each
    identity in that order is taken, then, if more are needed, the remaining ones in that order.

    Args:
        q_pids: ``(num_query,)`` query identities.
        num_queries: How many to pick (all eligible ones if fewer).
        seed: Seed of the shuffle.
        eligible: Boolean ``(num_query,)`` mask of the queries that may be picked; default all.

    Returns:
        The picked indices, sorted ascending.

    Raises:
        ValueError: If ``num_queries`` is below 1 or ``eligible`` has the wrong shape.
    """
    pids = _as_array(q_pids, "q_pids")
    check_positive_int(num_queries, "num_queries")
    allowed = np.ones(len(pids), dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool)
    if allowed.shape != pids.shape:
        raise ValueError(f"eligible must be a boolean mask of shape {pids.shape}, got {allowed.shape}")
    order = np.random.default_rng(seed).permutation(np.flatnonzero(allowed))
    _, first = np.unique(pids[order], return_index=True)
    one_per_identity = order[np.sort(first)]
    rest = np.setdiff1d(order, one_per_identity, assume_unique=True)
    picked = np.concatenate([one_per_identity, rest])[:num_queries]
    return np.sort(picked).astype(np.int64)


def _frame(axes: Any, color: str) -> None:
    for spine in axes.spines.values():
        spine.set_visible(True)
        spine.set_color(color)
        spine.set_linewidth(FRAME_WIDTH)


def retrieval_figure(
    query_images: Sequence[npt.ArrayLike],
    matches: Sequence[Sequence[RankedMatch]],
    gallery_images: Sequence[Sequence[npt.ArrayLike]],
    *,
    query_captions: Sequence[str] | None = None,
) -> Figure:
    """Draw one row per query: the query, a gap, then its ranked matches, framed by correctness.

    Axes are laid out row by row, ``1 + top_k`` per query (query first); rows with fewer matches leave
    their last axes empty and hidden.

    Args:
        query_images: One ``(H, W, 3)`` RGB image per query (uint8, or float in ``[0, 1]``).
        matches: Each query's :class:`RankedMatch` list, in rank order (see :func:`top_matches`).
        gallery_images: For each query, the images of its matches, in the same order.
        query_captions: One caption per query (e.g. identity and camera); default ``"query i"``.

    Returns:
        The figure, attached to an Agg canvas.

    Raises:
        ValueError: If the numbers of queries, matches, images and captions differ.
    """
    count = len(query_images)
    if count == 0:
        raise ValueError("query_images must hold at least one image")
    if len(matches) != count or len(gallery_images) != count:
        raise ValueError(
            f"matches and gallery_images must have one entry per query ({count}), "
            f"got {len(matches)} and {len(gallery_images)}"
        )
    for index, (ranked, images) in enumerate(zip(matches, gallery_images, strict=True)):
        if len(ranked) != len(images):
            raise ValueError(f"query {index}: {len(ranked)} matches but {len(images)} gallery images")
    captions = list(query_captions) if query_captions is not None else [f"query {i}" for i in range(count)]
    if len(captions) != count:
        raise ValueError(f"query_captions must have one entry per query ({count}), got {len(captions)}")

    top_k = max(1, max(len(ranked) for ranked in matches))
    height, width = np.asarray(query_images[0]).shape[:2]
    panel_width = 1.05
    panel_height = panel_width * height / width
    figure = agg_figure(
        0.4 + panel_width * (top_k + 1.3), 0.8 + (panel_height + 0.45) * count, constrained=False
    )
    grid = figure.add_gridspec(
        count, top_k + 2, width_ratios=[1.0, 0.3] + [1.0] * top_k, wspace=0.12, hspace=0.45
    )
    for row in range(count):
        query_axes = figure.add_subplot(grid[row, 0])
        query_axes.imshow(np.asarray(query_images[row]))
        query_axes.set_title(captions[row], fontsize=8)
        _frame(query_axes, QUERY_COLOR)
        for column in range(top_k):
            axes = figure.add_subplot(grid[row, column + 2])
            if column < len(matches[row]):
                match = matches[row][column]
                axes.imshow(np.asarray(gallery_images[row][column]))
                axes.set_title(f"#{match.rank}  d={match.distance:.2f}", fontsize=7)
                _frame(axes, CORRECT_COLOR if match.correct else WRONG_COLOR)
            else:
                axes.set_visible(False)
        for axes in figure.axes[-(top_k + 1) :]:
            axes.set_xticks([])
            axes.set_yticks([])
    inches = figure.get_figheight()
    figure.suptitle(
        "Ranked retrieval: query (grey frame), then its top matches framed green (same identity) "
        "or red (another identity), captioned with rank and distance",
        fontsize=9,
        y=1.0 - 0.12 / inches,
        va="top",
    )
    # Leave room above the first row for the title and the captions.
    figure.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=1.0 - 0.75 / inches)
    return figure


def plot_retrieval(
    query_images: Sequence[npt.ArrayLike],
    matches: Sequence[Sequence[RankedMatch]],
    gallery_images: Sequence[Sequence[npt.ArrayLike]],
    path: str | Path,
    *,
    query_captions: Sequence[str] | None = None,
) -> Path:
    """Write the figure of :func:`retrieval_figure` to a PNG file.

    Args:
        query_images: One ``(H, W, 3)`` RGB image per query.
        matches: Each query's ranked matches.
        gallery_images: The images of the matches, per query.
        path: Output file; its folder is created if needed.
        query_captions: One caption per query.

    Returns:
        The path written.

    Raises:
        ValueError: If the numbers of queries, matches, images and captions differ.
    """
    return save_png(
        retrieval_figure(query_images, matches, gallery_images, query_captions=query_captions), path
    )
