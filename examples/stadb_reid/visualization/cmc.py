"""The cumulative matching characteristic (CMC) curve of an evaluation.

``CMC(n)`` is the fraction of valid queries whose first correct match is within the top ``n`` of the
ranked gallery (see :mod:`stadb_reid.evaluation.rank`); the curve is drawn in percent, with rank-1,
rank-5 and rank-10 marked and mAP in the legend.

Examples:
    >>> import numpy as np
    >>> from stadb_reid.evaluation import rank_metrics
    >>> distances = np.array([[0.1, 0.5, 0.9], [0.8, 0.2, 0.3]])
    >>> metrics = rank_metrics(distances, [1, 2], [1, 3, 2], [0, 0], [1, 1, 1], max_rank=3)
    >>> figure = cmc_figure(metrics)
    >>> figure.axes[0].lines[0].get_ydata().tolist()
    [50.0, 100.0, 100.0]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..evaluation import RankMetrics
from ._canvas import agg_figure, save_png

__all__ = ["cmc_figure", "plot_cmc"]

_MARKED_RANKS = (1, 5, 10)


def cmc_figure(metrics: RankMetrics, *, title: str = "CMC curve") -> Figure:
    """Draw the CMC curve of ``metrics`` in percent against the rank.

    The curve is the first line of the figure's only axes (its y-data is ``100 * metrics.cmc``); rank-1,
    rank-5 and rank-10 (those within the curve) are marked and labelled.

    Args:
        metrics: The result of :func:`~stadb_reid.evaluation.rank_metrics` or
            :func:`~stadb_reid.evaluation.evaluate_from_features`.
        title: Axes title.

    Returns:
        The figure, attached to an Agg canvas.

    Raises:
        TypeError: If ``metrics`` is not a :class:`~stadb_reid.evaluation.RankMetrics`.
    """
    if not isinstance(metrics, RankMetrics):
        raise TypeError(f"metrics must be a RankMetrics, got {type(metrics).__name__}")
    cmc = 100.0 * np.asarray(metrics.cmc, dtype=np.float64)
    ranks = np.arange(1, len(cmc) + 1)
    figure = agg_figure(6.0, 4.2)
    axes = figure.subplots()
    axes.plot(
        ranks,
        cmc,
        color="tab:blue",
        drawstyle="steps-post",
        label=f"rank-1 {cmc[0]:.1f}%, mAP {100 * metrics.mean_ap:.1f}%",
    )
    marked = [n for n in _MARKED_RANKS if n <= len(cmc)]
    axes.plot(marked, [cmc[n - 1] for n in marked], "o", color="tab:red")
    for n in marked:
        axes.annotate(
            f"rank-{n}: {cmc[n - 1]:.1f}%",
            (n, cmc[n - 1]),
            xytext=(6, -14),
            textcoords="offset points",
            fontsize=8,
        )
    axes.set(
        title=f"{title} ({metrics.num_valid_queries} queries, {metrics.protocol} protocol)",
        xlabel="rank",
        ylabel="matching rate (%)",
        xlim=(0.5, len(cmc) + 0.5),
        ylim=(0.0, 102.0),
    )
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    return figure


def plot_cmc(metrics: RankMetrics, path: str | Path, *, title: str = "CMC curve") -> Path:
    """Write the CMC curve of :func:`cmc_figure` to a PNG file.

    Args:
        metrics: The evaluation's :class:`~stadb_reid.evaluation.RankMetrics`.
        path: Output file; its folder is created if needed.
        title: Axes title.

    Returns:
        The path written.

    Raises:
        TypeError: If ``metrics`` is not a :class:`~stadb_reid.evaluation.RankMetrics`.
    """
    return save_png(cmc_figure(metrics, title=title), path)
