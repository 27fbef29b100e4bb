r"""Attention maps of the second head, drawn over the input images (the paper's Figure 3).

For an image batch the maps are computed, in eval mode, on the output :math:`F` of the second head's
extra Bottleneck, i.e. the input of its regulariser (the SelfThresholdDrop / CBAM branch selector):

* the channel-mean attention :math:`A = \frac{1}{C}\sum_c F_c`, the map SelfThresholdDrop thresholds;
* the keep mask :math:`M = [A < \alpha \max A]` of the model's SelfThresholdDrop (the positions a
  training step on the drop branch would erase are those with :math:`M = 0`);
* CBAM's spatial attention :math:`M_s \in (0, 1)`, the output of ``cbam.spatial_gate.gate`` when the
  model's CBAM runs on :math:`F`.

Variants without a second head (``global``) use the backbone output for :math:`A`; maps a variant has
no module for (no SelfThresholdDrop, no CBAM) are left out and named in the figure's title.

The maps are upsampled to the image size (bilinear for the attention maps, nearest for the keep mask,
so every feature cell covers the image block it was computed from) and overlaid on the de-normalised
input.
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
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import ListedColormap, Normalize
from matplotlib.figure import Figure
from torch import Tensor, nn

from stadb_layers import CBAM, SelfThresholdDrop, self_threshold_drop

from ..data import IMAGENET_MEAN, IMAGENET_STD
from ..model import STADBNet

__all__ = ["AttentionMaps", "attention_figure", "compute_attention_maps", "denormalize", "plot_attention"]

HEATMAP_COLORMAP = "turbo"
"""Colormap of the attention overlays (perceptually ordered, blue = low, red = high)."""
HEATMAP_OPACITY = 0.6
"""Opacity of a heatmap drawn over the image."""
DROPPED_COLOR = "#ff00ff"
"""Colour of the positions the keep mask erases (magenta: absent from the images and the colormap)."""


@dataclass(frozen=True)
class AttentionMaps:
    """The maps of :func:`compute_attention_maps`, at feature-map resolution, on the CPU.

    Attributes:
        attention: ``(N, 1, h, w)`` float32 channel-mean attention.
        keep_mask: ``(N, 1, h, w)`` boolean keep mask of the model's SelfThresholdDrop (``True`` = kept),
            or ``None`` when the model has none.
        spatial_attention: ``(N, 1, h, w)`` float32 CBAM spatial attention, or ``None`` without CBAM.
        source: Which feature map the maps were computed on: ``"branch"`` (the second head's
            Bottleneck output) or ``"backbone"`` (variants without a second head).
        alpha: Threshold of the keep mask as a fraction of the peak attention; ``None`` without a
            SelfThresholdDrop or in its ``drop_ratio`` mode.
        drop_ratio: Fraction of positions the keep mask drops in ``drop_ratio`` mode, else ``None``.
        absent: One line per map the model cannot provide, saying why.
    """

    attention: Tensor
    keep_mask: Tensor | None
    spatial_attention: Tensor | None
    source: str
    alpha: float | None
    drop_ratio: float | None
    absent: tuple[str, ...]


def _find(module: nn.Module, kind: type[nn.Module]) -> nn.Module | None:
    return next((m for m in module.modules() if isinstance(m, kind)), None)


def compute_attention_maps(model: STADBNet, images: Tensor) -> AttentionMaps:
    """Compute the channel-mean attention, keep mask and CBAM spatial attention of an image batch.

    The model runs in eval mode under :func:`torch.inference_mode` (its previous mode is restored). The
    keep mask uses the ``alpha`` (or ``drop_ratio``) of the model's own SelfThresholdDrop, through the
    reference function :func:`stadb_layers.self_threshold_drop`. The CBAM spatial map is captured with a
    forward hook on ``spatial_gate.gate`` while the model's CBAM runs on the Bottleneck output.

    Args:
        model: A :class:`~stadb_reid.model.STADBNet` (any variant).
        images: ``(N, 3, H, W)`` normalised images on the model's device.

    Returns:
        The :class:`AttentionMaps`, on the CPU.

    Raises:
        ValueError: If ``images`` is not a 4-D batch of 3-channel images.
    """
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be an (N, 3, H, W) batch, got shape {tuple(images.shape)}")
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            return _maps_in_eval_mode(model, images)
    finally:
        model.train(was_training)


def _maps_in_eval_mode(model: STADBNet, images: Tensor) -> AttentionMaps:
    feature_map: Tensor = model.backbone(images)
    absent: list[str] = []
    if model.branch is None:
        absent += ["keep mask (no second head)", "CBAM spatial attention (no second head)"]
        return AttentionMaps(_channel_mean(feature_map), None, None, "backbone", None, None, tuple(absent))
    feature_map = model.branch[0](feature_map)
    regulariser = model.branch[1]

    keep_mask = alpha = drop_ratio = None
    drop = _find(regulariser, SelfThresholdDrop)
    if isinstance(drop, SelfThresholdDrop):
        alpha, drop_ratio = drop.alpha, drop.drop_ratio
        _, keep = self_threshold_drop(feature_map, alpha=alpha, drop_ratio=drop_ratio)
        keep_mask = keep.cpu()
    else:
        absent.append(f"keep mask (no SelfThresholdDrop in variant {model.variant.value})")

    spatial_attention = None
    cbam = _find(regulariser, CBAM)
    if isinstance(cbam, CBAM):
        captured: list[Tensor] = []
        handle = cbam.spatial_gate.gate.register_forward_hook(
            lambda _module, _inputs, output: captured.append(output)
        )
        try:
            cbam(feature_map)
        finally:
            handle.remove()
        spatial_attention = captured[-1].float().cpu()
    else:
        absent.append(f"CBAM spatial attention (no CBAM in variant {model.variant.value})")
    return AttentionMaps(
        _channel_mean(feature_map), keep_mask, spatial_attention, "branch", alpha, drop_ratio, tuple(absent)
    )


def _channel_mean(feature_map: Tensor) -> Tensor:
    return feature_map.float().mean(dim=1, keepdim=True).cpu()


def denormalize(images: Tensor) -> npt.NDArray[np.float32]:
    """Undo the ImageNet normalisation of the test transform, for display.

    Args:
        images: ``(N, 3, H, W)`` images normalised with :data:`~stadb_reid.data.IMAGENET_MEAN` and
            :data:`~stadb_reid.data.IMAGENET_STD`.

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
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be an (N, 3, H, W) batch, got shape {tuple(images.shape)}")
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


def _upsample(maps: Tensor, size: tuple[int, int], mode: str) -> npt.NDArray[np.float32]:
    """``(N, 1, h, w)`` -> ``(N, H, W)``; bilinear with ``align_corners=False`` keeps cell centres aligned."""
    if mode == "nearest":
        resized = F.interpolate(maps.float(), size=size, mode="nearest")
    else:
        resized = F.interpolate(maps.float(), size=size, mode=mode, align_corners=False)
    array: npt.NDArray[np.float32] = resized[:, 0].numpy()
    return array


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

    size = (height, width)
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
            _Row(
                f"keep mask, {rule}\n(magenta = dropped)",
                np.ma.masked_array(~keep, keep),
                dropped_share,
            )
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

    panel_width = 1.35
    panel_height = panel_width * height / width
    figure = Figure(
        figsize=(1.6 + panel_width * count, 0.9 + (panel_height + 0.4) * len(rows)), layout="constrained"
    )
    FigureCanvasAgg(figure)
    grid = figure.subplots(len(rows), count, squeeze=False)
    heatmap_colormap = colormaps[HEATMAP_COLORMAP]
    for row_index, row in enumerate(rows):
        for column in range(count):
            axes = grid[row_index, column]
            axes.imshow(rgb[column], interpolation="nearest")
            if isinstance(row.overlay, np.ma.MaskedArray):
                axes.imshow(
                    row.overlay[column], cmap=ListedColormap([DROPPED_COLOR]), vmin=0, vmax=1, alpha=0.75
                )
            elif row.overlay is not None:
                axes.imshow(
                    row.overlay[column],
                    cmap=heatmap_colormap,
                    vmin=0.0,
                    vmax=1.0,
                    alpha=HEATMAP_OPACITY,
                )
            axes.set_xticks([])
            axes.set_yticks([])
            axes.set_xlabel(row.notes[column], fontsize=7)
            if row_index == 0:
                axes.set_title(captions[column], fontsize=8)
            if column == 0:
                axes.set_ylabel(row.label, fontsize=8)
        if row.overlay is not None and not isinstance(row.overlay, np.ma.MaskedArray):
            # An opaque colour bar: the overlay's transparency would only wash out its colours.
            scale = ScalarMappable(Normalize(0.0, 1.0), heatmap_colormap)
            colorbar = figure.colorbar(scale, ax=grid[row_index, :].tolist(), fraction=0.03, pad=0.01)
            if row_index == 1 and maps.alpha is not None:
                colorbar.ax.axhline(maps.alpha, color="black", linewidth=2)
                colorbar.set_label(f"line: drop threshold alpha={maps.alpha}", fontsize=7)
    title = "Attention of the second head" if maps.source == "branch" else "Attention of the backbone"
    # One line per absent map, wrapped to the figure's width (about 11 characters per inch at 9 pt).
    characters = max(30, int(11 * figure.get_figwidth()))
    for line in maps.absent:
        title += "\n" + textwrap.fill(f"absent: {line}", characters)
    figure.suptitle(title, fontsize=9)
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    attention_figure(images, maps, captions=captions).savefig(path, dpi=110)
    return path
