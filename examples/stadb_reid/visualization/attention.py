r"""The attention figure of the second head, drawn over the input images (the paper's Figure 3).

The maps themselves (channel-mean attention, keep mask, CBAM spatial attention) are computed by
:func:`~stadb_reid.visualization.attention_maps.compute_attention_maps`, re-exported here with
:class:`~stadb_reid.visualization.attention_maps.AttentionMaps`.

The maps are upsampled to the image size (bilinear for the attention maps, nearest for the keep mask,
so every feature cell covers the image block it was computed from) and overlaid on the de-normalised
input; rows a variant has no map for are left out and named in the figure's title.

Examples:
    >>> import torch
    >>> from stadb_reid.model import STADBNet
    >>> images = torch.randn(2, 3, 64, 32)
    >>> figure = attention_figure(images, compute_attention_maps(STADBNet(4, backbone="resnet18"), images))
    >>> [figure.axes[row * 2].get_ylabel().splitlines()[0] for row in range(4)]
    ['input', 'channel-mean attention', 'keep mask, alpha=0.8', 'CBAM spatial attention']
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import ListedColormap, Normalize
from matplotlib.figure import Figure
from torch import Tensor

from ..config.schema import IMAGENET_MEAN, IMAGENET_STD
from ._canvas import agg_figure, save_png
from .attention_maps import AttentionMaps, check_image_batch, compute_attention_maps

__all__ = ["AttentionMaps", "attention_figure", "compute_attention_maps", "denormalize", "plot_attention"]

HEATMAP_COLORMAP = "turbo"
"""Colormap of the attention overlays (perceptually ordered, blue = low, red = high)."""
HEATMAP_OPACITY = 0.6
"""Opacity of a heatmap drawn over the image."""
DROPPED_COLOR = "#ff00ff"
"""Colour of the positions the keep mask erases (magenta: absent from the images and the colormap)."""


def denormalize(images: Tensor) -> npt.NDArray[np.float32]:
    """Undo the ImageNet normalisation of the test transform, for display.

    Args:
        images: ``(N, 3, H, W)`` images normalised with :data:`~stadb_reid.config.schema.IMAGENET_MEAN` and
            :data:`~stadb_reid.config.schema.IMAGENET_STD`.

    Returns:
        ``(N, H, W, 3)`` float32 RGB in ``[0, 1]``.

    Raises:
        ValueError: If ``images`` is not a 4-D batch of 3-channel images.

    Examples:
        >>> import torch
        >>> black = (torch.zeros(1, 3, 2, 2) - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(
        ...     IMAGENET_STD
        ... )[:, None, None]
        >>> float(abs(denormalize(black)).max()) < 1e-6
        True
    """
    check_image_batch(images)
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    rgb = (images.detach().float().cpu() * std + mean).clamp(0.0, 1.0)
    array: npt.NDArray[np.float32] = rgb.permute(0, 2, 3, 1).numpy()
    return array


@dataclass(frozen=True)
class _Row:
    """One row of the attention figure: its label, the overlay per image (None: image only), notes."""

    label: str
    overlay: npt.NDArray[np.float32] | np.ma.MaskedArray[Any, Any] | None
    notes: list[str]

    @property
    def is_heatmap(self) -> bool:
        """Whether the overlay is a heatmap on the colormap (not the keep mask, not absent)."""
        return self.overlay is not None and not isinstance(self.overlay, np.ma.MaskedArray)


def _upsample(maps: Tensor, size: tuple[int, int], mode: str) -> npt.NDArray[np.float32]:
    """``(N, 1, h, w)`` -> ``(N, H, W)``; bilinear with ``align_corners=False`` keeps cell centres aligned."""
    if mode == "nearest":
        resized = F.interpolate(maps.float(), size=size, mode="nearest")
    else:
        resized = F.interpolate(maps.float(), size=size, mode=mode, align_corners=False)
    array: npt.NDArray[np.float32] = resized[:, 0].numpy()
    return array


def _figure_rows(maps: AttentionMaps, size: tuple[int, int]) -> list[_Row]:
    """The rows of the attention figure, top to bottom, their overlays upsampled to the image ``size``."""
    count = maps.attention.shape[0]
    peak = maps.attention.amax(dim=(2, 3), keepdim=True).clamp_min(1e-12)
    rows = [
        _Row("input", None, [""] * count),
        _Row(
            "channel-mean attention\n(divided by its max)",
            _upsample(maps.attention / peak, size, "bilinear"),
            [""] * count,
        ),
    ]
    if maps.keep_mask is not None:
        keep = _upsample(maps.keep_mask, size, "nearest") > 0.5
        dropped_share = [f"{100 * (1 - float(k.mean())):.0f}% dropped" for k in keep]
        rule = f"alpha={maps.alpha}" if maps.drop_ratio is None else f"drop_ratio={maps.drop_ratio}"
        rows.append(
            _Row(f"keep mask, {rule}\n(magenta = dropped)", np.ma.masked_array(~keep, keep), dropped_share)
        )
    if maps.spatial_attention is not None:
        spatial = maps.spatial_attention
        low = spatial.amin(dim=(2, 3), keepdim=True)
        high = spatial.amax(dim=(2, 3), keepdim=True)
        ranges = [
            f"range {float(lo):.2f}-{float(hi):.2f}"
            for lo, hi in zip(low.flatten(), high.flatten(), strict=True)
        ]
        scaled = (spatial - low) / (high - low).clamp_min(1e-12)
        rows.append(
            _Row("CBAM spatial attention\n(min-max scaled)", _upsample(scaled, size, "bilinear"), ranges)
        )
    return rows


def _draw_panel(axes: Any, image: npt.NDArray[np.float32], row: _Row, column: int) -> None:
    """Draw ``image`` with the ``column``-th overlay of ``row`` (if any) and its note on ``axes``."""
    axes.imshow(image, interpolation="nearest")
    if isinstance(row.overlay, np.ma.MaskedArray):
        axes.imshow(row.overlay[column], cmap=ListedColormap([DROPPED_COLOR]), vmin=0, vmax=1, alpha=0.75)
    elif row.overlay is not None:
        axes.imshow(
            row.overlay[column], cmap=colormaps[HEATMAP_COLORMAP], vmin=0.0, vmax=1.0, alpha=HEATMAP_OPACITY
        )
    axes.set_xticks([])
    axes.set_yticks([])
    axes.set_xlabel(row.notes[column], fontsize=7)


def _figure_title(maps: AttentionMaps, figure_width: float) -> str:
    """The figure's title: what the maps were computed on, then one wrapped line per absent map."""
    title = "Attention of the second head" if maps.source == "branch" else "Attention of the backbone"
    # One line per absent map, wrapped to the figure's width (about 11 characters per inch at 9 pt).
    characters = max(30, int(11 * figure_width))
    for line in maps.absent:
        title += "\n" + textwrap.fill(f"absent: {line}", characters)
    return title


def attention_figure(images: Tensor, maps: AttentionMaps, *, captions: Sequence[str] | None = None) -> Figure:
    """Draw each image with its attention maps overlaid: one column per image, one row per map.

    Rows, top to bottom: the input; the channel-mean attention divided by its per-image maximum (so the
    drop threshold is at ``alpha`` on the colour scale, where the colour bar marks it); the input with
    the positions the keep mask erases painted over in :data:`DROPPED_COLOR` (the share erased is
    printed under the panel); CBAM's spatial attention, min-max scaled per image (its raw range is
    printed under the panel). Rows a variant lacks are left out and named in the
    title. Each overlay is the second image of its axes (``axes.images[1]``): the upsampled map (for
    the keep mask, a masked array whose mask is the upsampled keep mask, so kept cells are transparent).

    Args:
        images: ``(N, 3, H, W)`` normalised images, the ones ``maps`` was computed from.
        maps: Their :class:`AttentionMaps`.
        captions: One title per image (e.g. identity and camera); default ``"image i"``.

    Returns:
        The figure, attached to an Agg canvas.

    Raises:
        ValueError: If the number of images, maps and captions differ.
    """
    rgb = denormalize(images)
    count, height, width = rgb.shape[:3]
    if maps.attention.shape[0] != count:
        raise ValueError(f"maps holds {maps.attention.shape[0]} images, images {count}")
    captions = list(captions) if captions is not None else [f"image {i}" for i in range(count)]
    if len(captions) != count:
        raise ValueError(f"captions must have one entry per image ({count}), got {len(captions)}")

    rows = _figure_rows(maps, (height, width))
    panel_width = 1.35
    panel_height = panel_width * height / width
    figure = agg_figure(1.6 + panel_width * count, 0.9 + (panel_height + 0.4) * len(rows))
    grid = figure.subplots(len(rows), count, squeeze=False)
    for row_index, row in enumerate(rows):
        for column in range(count):
            _draw_panel(grid[row_index, column], rgb[column], row, column)
        grid[row_index, 0].set_ylabel(row.label, fontsize=8)
        if row.is_heatmap:
            # An opaque colour bar: the overlay's transparency would only wash out its colours.
            scale = ScalarMappable(Normalize(0.0, 1.0), colormaps[HEATMAP_COLORMAP])
            colorbar = figure.colorbar(scale, ax=grid[row_index, :].tolist(), fraction=0.03, pad=0.01)
            if row_index == 1 and maps.alpha is not None:
                colorbar.ax.axhline(maps.alpha, color="black", linewidth=2)
                colorbar.set_label(f"line: drop threshold alpha={maps.alpha}", fontsize=7)
    for column, caption in enumerate(captions):
        grid[0, column].set_title(caption, fontsize=8)
    figure.suptitle(_figure_title(maps, figure.get_figwidth()), fontsize=9)
    return figure


def plot_attention(
    images: Tensor, maps: AttentionMaps, path: str | Path, *, captions: Sequence[str] | None = None
) -> Path:
    """Write the figure of :func:`attention_figure` to a PNG file.

    Args:
        images: ``(N, 3, H, W)`` normalised images.
        maps: Their :class:`AttentionMaps`.
        path: Output file; its folder is created if needed.
        captions: One title per image.

    Returns:
        The path written.

    Raises:
        ValueError: If the number of images, maps and captions differ.
    """
    return save_png(attention_figure(images, maps, captions=captions), path)
