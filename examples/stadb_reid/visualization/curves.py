"""Training curves of a run: loss, learning rate, and rank-1 / mAP at the evaluated epochs.

The input is the ``history`` a checkpoint stores: one dict per epoch with ``"epoch"``, ``"loss"`` and
``"lr"``, plus ``"rank1"`` and ``"mAP"`` (percent) on the epochs that were evaluated.

Examples:
    >>> history = [
    ...     {"epoch": 1, "loss": 9.1, "lr": 5e-4},
    ...     {"epoch": 2, "loss": 7.4, "lr": 1e-3, "rank1": 41.0, "mAP": 30.5},
    ... ]
    >>> figure = training_curves_figure(history)
    >>> [axes.get_title() for axes in figure.axes]
    ['Training loss', 'Learning rate', 'Retrieval accuracy']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ._canvas import agg_figure, save_png

__all__ = ["plot_training_curves", "training_curves_figure"]

_REQUIRED_KEYS = ("epoch", "loss", "lr")


def _check_history(history: Sequence[Mapping[str, float]]) -> None:
    if len(history) == 0:
        raise ValueError("history must hold at least one epoch, got an empty list")
    for index, entry in enumerate(history):
        missing = [key for key in _REQUIRED_KEYS if key not in entry]
        if missing:
            raise ValueError(
                f"history[{index}] lacks {', '.join(missing)} (needs {', '.join(_REQUIRED_KEYS)})"
            )


def training_curves_figure(history: Sequence[Mapping[str, float]]) -> Figure:
    """Draw loss, learning rate and evaluation accuracy against the epoch, side by side.

    The learning rate is on a log axis (the paper's schedule spans two decades). Rank-1 and mAP are
    drawn with markers at the epochs that carry them; a history without any evaluation gets a note in
    that panel instead.

    Args:
        history: Per-epoch dicts with ``"epoch"``, ``"loss"``, ``"lr"`` and optionally ``"rank1"`` and
            ``"mAP"`` in percent, as stored in a checkpoint's ``"history"``.

    Returns:
        A figure with three axes, attached to an Agg canvas (no window is ever opened).

    Raises:
        ValueError: If ``history`` is empty or an entry lacks ``epoch``, ``loss`` or ``lr``.
    """
    _check_history(history)
    epochs = [float(entry["epoch"]) for entry in history]
    figure = agg_figure(13.0, 3.6)
    loss_axes, lr_axes, accuracy_axes = figure.subplots(1, 3)

    loss_axes.plot(epochs, [float(entry["loss"]) for entry in history], color="tab:blue", marker=".")
    loss_axes.set(title="Training loss", xlabel="epoch", ylabel="loss (sum over heads)")

    lr_axes.plot(epochs, [float(entry["lr"]) for entry in history], color="tab:orange", drawstyle="steps-mid")
    lr_axes.set(title="Learning rate", xlabel="epoch", ylabel="learning rate", yscale="log")

    evaluated = [entry for entry in history if "rank1" in entry and "mAP" in entry]
    accuracy_axes.set(title="Retrieval accuracy", xlabel="epoch", ylabel="percent")
    if evaluated:
        eval_epochs = [float(entry["epoch"]) for entry in evaluated]
        for key, label, color in (("rank1", "rank-1", "tab:green"), ("mAP", "mAP", "tab:purple")):
            values = [float(entry[key]) for entry in evaluated]
            # The last value goes in the legend: end-of-line labels collide when rank-1 and mAP are close.
            last = f"{label} (last {values[-1]:.1f})"
            accuracy_axes.plot(eval_epochs, values, marker="o", color=color, label=last)
        accuracy_axes.set_ylim(0.0, 100.0)
        accuracy_axes.legend(loc="best")
    else:
        accuracy_axes.text(
            0.5,
            0.5,
            "no evaluation in this history\n(set eval.every to evaluate during training)",
            ha="center",
            va="center",
            transform=accuracy_axes.transAxes,
            color="0.4",
        )
    for axes in (loss_axes, lr_axes, accuracy_axes):
        axes.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
    return figure


def plot_training_curves(history: Sequence[Mapping[str, float]], path: str | Path) -> Path:
    """Write the training curves of :func:`training_curves_figure` to a PNG file.

    Args:
        history: Per-epoch dicts as stored in a checkpoint's ``"history"``.
        path: Output file; its folder is created if needed.

    Returns:
        The path written.

    Raises:
        ValueError: If ``history`` is empty or an entry lacks ``epoch``, ``loss`` or ``lr``.
    """
    return save_png(training_curves_figure(history), path)
