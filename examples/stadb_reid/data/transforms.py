"""Image transforms of the re-ID trainer (``torchvision.transforms.v2``).

Training: resize to ``height x width``, random horizontal flip, zero padding and a random crop
back to ``height x width``, conversion to a float tensor in [0, 1], ImageNet normalisation, then
:class:`Cutout` (off by default) and random erasing, both after normalisation (filled pixels are 0,
the ImageNet mean colour). The reference code's person pipeline is ``padding=0, erasing_prob=0,
cutout_prob=0.5`` with a 64-pixel Cutout at 384 x 128, which ``cutout_size=None`` scales with the
image (:func:`cutout_side`). Test: resize, conversion and normalisation only.

Both take a PIL image (or a uint8 ``(3, H, W)`` tensor) and return a ``float32`` tensor of shape
``(3, height, width)``.

Examples:
    >>> from PIL import Image
    >>> image = Image.new("RGB", (64, 128), (124, 116, 104))  # about the ImageNet mean
    >>> x = build_test_transform(96, 32)(image)
    >>> tuple(x.shape), x.dtype, bool(x.abs().max() < 0.05)
    ((3, 96, 32), torch.float32, True)
    >>> tuple(build_train_transform(96, 32)(image).shape)
    (3, 96, 32)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import torch
from torch import Tensor
from torchvision.transforms import v2

from stadb_layers.checks import check_in_interval, check_int, check_positive_int, check_probability

from ..config.schema import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "Cutout",
    "build_test_transform",
    "build_train_transform",
    "cutout_side",
]

Transform = Callable[[Any], Tensor]


def _check_size(height: int, width: int) -> None:
    check_positive_int(height, "height")
    check_positive_int(width, "width")


def _check_prob(value: float, name: str) -> None:
    check_in_interval(value, name, 0, 1, low_closed=True, high_closed=True)


class Cutout(v2.Transform):  # type: ignore[misc]  # torchvision has no type hints: its classes are Any
    """With probability ``p``, fill one ``size x size`` square of the image with ``value``.

    The reference code's ``Cutout`` (``utils/random_erasing.py`` of STADB_ReID), not DeVries and
    Taylor's: the square is never clipped at the border. Its top-left corner is uniform over the
    ``(H - size + 1) x (W - size + 1)`` positions that keep it inside the image, so exactly
    ``size**2`` pixels of every channel are filled; an image with ``size >= H`` or ``size >= W`` is
    left unchanged, as in the reference. The reference applies it to the normalised tensor with
    value 0 (the ImageNet mean colour), and so does :func:`build_train_transform`.

    It draws from torch's global generator (the coin, then the row, then the column), so seeding
    torch fixes it. Like ``v2.RandomErasing``, it fills images and videos (tensors, ``tv_tensors``,
    PIL images) and passes boxes, masks and labels through unchanged.

    Args:
        p: Probability of filling a square.
        size: Side of the square in pixels.
        value: Fill value of every channel.

    Raises:
        ValueError: ``p`` is outside [0, 1] or ``size`` is not a positive integer.

    Examples:
        >>> _ = torch.manual_seed(0)
        >>> out = Cutout(p=1.0, size=2)(torch.ones(3, 4, 5))
        >>> int((out == 0).sum()), tuple(out.shape)  # a 2 x 2 square in each of 3 channels
        (12, (3, 4, 5))
    """

    def __init__(self, p: float = 0.5, size: int = 64, value: float = 0.0) -> None:
        super().__init__()
        self.p = check_probability(p, "p")
        self.size = check_positive_int(size, "size")
        self.value = float(value)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        """Draw the square's top-left corner, or ``None`` for no square."""
        height, width = v2.functional.get_size(flat_inputs[0])
        if torch.rand(1).item() >= self.p or not (self.size < height and self.size < width):
            return {"corner": None}
        top = int(torch.randint(0, height - self.size + 1, (1,)).item())
        left = int(torch.randint(0, width - self.size + 1, (1,)).item())
        return {"corner": (top, left)}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        """Fill the drawn square of ``inpt`` (a copy; the input is left alone)."""
        if params["corner"] is None:
            return inpt
        top, left = params["corner"]
        fill = torch.tensor(self.value)
        return self._call_kernel(v2.functional.erase, inpt, top, left, self.size, self.size, fill)


def _to_normalised_tensor() -> list[v2.Transform]:
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]


def cutout_side(height: int, size: int | None = None) -> int:
    """The Cutout square's side: ``size`` pixels, or by default 1/6 of ``height`` (rounded).

    The reference code cuts 64 pixels out of its 384 x 128 images; the default keeps that share of
    the image at any input size.

    Raises:
        ValueError: ``size`` is given and is not a positive integer.

    Examples:
        >>> cutout_side(384), cutout_side(64), cutout_side(128), cutout_side(64, 10)
        (64, 11, 21, 10)
    """
    if size is None:
        return max(1, round(height / 6))
    return check_positive_int(size, "cutout_size")


def build_train_transform(
    height: int = 384,
    width: int = 128,
    *,
    flip_prob: float = 0.5,
    padding: int = 10,
    erasing_prob: float = 0.5,
    cutout_prob: float = 0.0,
    cutout_size: int | None = 64,
) -> Transform:
    """Return the training augmentation.

    Args:
        height: Output height.
        width: Output width.
        flip_prob: Probability of a horizontal flip (0 disables it).
        padding: Zero padding on every side before the random crop (0 disables both).
        erasing_prob: Probability of random erasing (area 2-40 %, aspect 0.3-3.3; 0 disables it).
        cutout_prob: Probability of :class:`Cutout` (0 disables it).
        cutout_size: Side of the Cutout square (a square that does not fit is never cut); None:
            :func:`cutout_side` of ``height``.

    Returns:
        A callable mapping a PIL image to a normalised ``(3, height, width)`` float tensor.

    Raises:
        ValueError: A size (``cutout_size`` included) is not a positive integer, ``padding`` is
            negative or a probability is outside [0, 1].
    """
    _check_size(height, width)
    _check_prob(flip_prob, "flip_prob")
    _check_prob(erasing_prob, "erasing_prob")
    _check_prob(cutout_prob, "cutout_prob")
    check_int(padding, "padding", 0)
    cutout_size = cutout_side(height, cutout_size)
    steps: list[v2.Transform] = [v2.Resize((height, width), antialias=True)]
    if flip_prob > 0:
        steps.append(v2.RandomHorizontalFlip(flip_prob))
    if padding > 0:
        steps += [v2.Pad(padding, fill=0), v2.RandomCrop((height, width))]
    steps += _to_normalised_tensor()
    if cutout_prob > 0:
        steps.append(Cutout(cutout_prob, cutout_size))
    if erasing_prob > 0:
        steps.append(v2.RandomErasing(p=erasing_prob, scale=(0.02, 0.4), ratio=(0.3, 3.3), value=0))
    return cast(Transform, v2.Compose(steps))


def build_test_transform(height: int = 384, width: int = 128) -> Transform:
    """Return the evaluation transform: resize, convert to float and normalise.

    Args:
        height: Output height.
        width: Output width.

    Returns:
        A callable mapping a PIL image to a normalised ``(3, height, width)`` float tensor.
    """
    _check_size(height, width)
    return cast(Transform, v2.Compose([v2.Resize((height, width), antialias=True), *_to_normalised_tensor()]))
