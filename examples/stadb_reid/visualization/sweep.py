"""A sweep's summary figure: rank-1 and mAP per setting, every seed a dot, the mean a bar with ± 1 std.

Where the paper prints a figure for a setting (:mod:`stadb_reid.commands.sweep.paper_figures`), a red
line marks it on the setting's bar.

Examples:
    >>> seeds = {0: {"rank1": 10.0, "mAP": 8.0}, 1: {"rank1": 12.0, "mAP": 9.0}}
    >>> figure = sweep_summary_figure({"global": seeds})
    >>> [axes.get_title() for axes in figure.axes]
    ['rank-1 (%)', 'mAP (%)']
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from statistics import fmean, stdev

from matplotlib.figure import Figure

from ._canvas import agg_figure, save_png

__all__ = ["plot_sweep_summary", "sweep_summary_figure"]

_PANELS = (("rank1", "rank-1 (%)"), ("mAP", "mAP (%)"))


def sweep_summary_figure(
    per_setting: Mapping[str, Mapping[int, Mapping[str, float]]],
    title: str = "",
    paper: Mapping[str, Mapping[str, float | None]] | None = None,
) -> Figure:
    """The figure for ``per_setting[name][seed][metric]``, with ``paper[name][metric]`` marked (percent)."""
    if not per_setting:
        raise ValueError("per_setting must hold at least one setting, got none")
    names = list(per_setting)
    figure = agg_figure(4.0 + 0.9 * len(names), 3.6)
    for index, (metric, label) in enumerate(_PANELS):
        axes = figure.add_subplot(1, len(_PANELS), index + 1)
        for position, name in enumerate(names):
            values = [
                seed_metrics[metric] for seed_metrics in per_setting[name].values() if metric in seed_metrics
            ]
            if not values:
                continue
            spread = stdev(values) if len(values) > 1 else 0.0
            axes.bar(position, fmean(values), yerr=spread, color="#9ecae1", edgecolor="#3182bd", capsize=4)
            axes.plot([position] * len(values), values, "o", color="#08519c", markersize=4)
            reference = (paper or {}).get(name, {}).get(metric)
            if reference is not None:
                axes.hlines(reference, position - 0.4, position + 0.4, color="#cb181d", linewidth=2)
        axes.set_xticks(range(len(names)), names, rotation=30, ha="right")
        axes.set_title(label)
        axes.grid(axis="y", alpha=0.3)
    if paper:
        figure.axes[0].plot([], [], color="#cb181d", linewidth=2, label="paper")
        figure.axes[0].legend(loc="lower right", fontsize="small")
    if title:
        figure.suptitle(title)
    return figure


def plot_sweep_summary(
    per_setting: Mapping[str, Mapping[int, Mapping[str, float]]],
    path: Path,
    title: str = "",
    paper: Mapping[str, Mapping[str, float | None]] | None = None,
) -> Path:
    """Draw :func:`sweep_summary_figure` and save it as a PNG at ``path``."""
    return save_png(sweep_summary_figure(per_setting, title, paper), path)
