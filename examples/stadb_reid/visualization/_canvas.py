"""Creating and saving the figures: matplotlib's object-oriented API on an Agg canvas, no pyplot.

Examples:
    >>> figure = agg_figure(4.0, 3.0)
    >>> type(figure.canvas).__name__, float(figure.get_figwidth())
    ('FigureCanvasAgg', 4.0)
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["PNG_DPI", "agg_figure", "save_png"]

PNG_DPI = 110
"""Resolution of the PNG files, in dots per inch."""


def agg_figure(width: float, height: float, *, constrained: bool = True) -> Figure:
    """A new figure of ``width`` x ``height`` inches, attached to an Agg canvas (no window, no pyplot).

    Args:
        width: Figure width in inches.
        height: Figure height in inches.
        constrained: Use matplotlib's constrained layout; otherwise the caller places the axes.

    Returns:
        The empty figure.
    """
    figure = Figure(figsize=(width, height), layout="constrained" if constrained else None)
    FigureCanvasAgg(figure)
    return figure


def save_png(figure: Figure, path: str | Path) -> Path:
    """Write ``figure`` to a PNG file at :data:`PNG_DPI`, creating its folder if needed.

    Args:
        figure: The figure to write.
        path: Output file.

    Returns:
        The path written, as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=PNG_DPI)
    return path
