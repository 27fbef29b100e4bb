"""The canvas the generator paints on: a float image with masked painting helpers.

Examples:
    >>> canvas = _Canvas(8, 4, seed=0)
    >>> canvas.fill_rect(0, 2, 0, 8, (1.0, 0.0, 0.0))
    >>> float(canvas.img[:, :2, 0].min()), float(canvas.img[:, 2:].max())
    (1.0, 0.0)
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

__all__: list[str] = []

Array = NDArray[np.float32]


class _Canvas:
    """An ``H x W x 3`` float image in [0, 1] with masked painting helpers.

    Gaussian noise is cut from a bank twice the image size (drawn once per seed), which is much
    faster than drawing fresh noise for every image.
    """

    def __init__(self, height: int, width: int, seed: int) -> None:
        self.img: Array = np.zeros((height, width, 3), np.float32)
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        self.y: Array = ys + 0.5
        self.x: Array = xs + 0.5
        self._bank = np.random.default_rng([seed, 5]).standard_normal(
            (2 * height, 2 * width, 3), dtype=np.float32
        )

    def noise(self, rng: np.random.Generator) -> Array:
        """Standard normal noise of the image's shape."""
        height, width = self.img.shape[:2]
        dy, dx = int(rng.integers(height)), int(rng.integers(width))
        patch = self._bank[dy : dy + height, dx : dx + width]
        return patch if rng.random() < 0.5 else patch[::-1, ::-1]

    def paint(self, mask: NDArray[np.bool_], colour: Array | tuple[float, ...]) -> None:
        self.img[mask] = colour

    def fill_rect(
        self, x0: float, x1: float, y0: float, y1: float, colour: Array | tuple[float, ...]
    ) -> None:
        """Paint the pixels whose centres lie in ``[x0, x1) x [y0, y1)``."""
        height, width = self.img.shape[:2]
        c0, c1 = (min(max(math.ceil(v - 0.5), 0), width) for v in (x0, x1))
        r0, r1 = (min(max(math.ceil(v - 0.5), 0), height) for v in (y0, y1))
        self.img[r0:r1, c0:c1] = colour

    def ellipse(self, cx: float, cy: float, rx: float, ry: float) -> NDArray[np.bool_]:
        return np.asarray(((self.x - cx) / rx) ** 2 + ((self.y - cy) / ry) ** 2 <= 1.0, dtype=np.bool_)

    def slanted(self, x_top: float, x_bottom: float, half: float, y0: float, y1: float) -> NDArray[np.bool_]:
        """A vertical bar from ``y0`` to ``y1`` whose centre moves from ``x_top`` to ``x_bottom``."""
        t = np.clip((self.y - y0) / max(y1 - y0, 1e-6), 0.0, 1.0)
        centre = x_top + (x_bottom - x_top) * t
        return np.asarray((np.abs(self.x - centre) <= half) & (self.y >= y0) & (self.y < y1), dtype=np.bool_)
