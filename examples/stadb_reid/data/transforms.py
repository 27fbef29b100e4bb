"""Image transforms of the re-ID trainer (``torchvision.transforms.v2``).

Training: resize to ``height x width``, random horizontal flip, zero padding and a random crop
back to ``height x width``, conversion to a float tensor in [0, 1], ImageNet normalisation, and
random erasing applied after normalisation (erased pixels are 0, the ImageNet mean colour).
Test: resize, conversion and normalisation only.

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

from stadb_layers._validation import check_in_interval, check_int, check_positive_int

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "build_test_transform", "build_train_transform"]

#: ImageNet channel means (RGB, [0, 1] scale).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
#: ImageNet channel standard deviations.
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

Transform = Callable[[Any], Tensor]


def _check_size(height: int, width: int) -> None:
    check_positive_int(height, "height")
    check_positive_int(width, "width")


def _check_prob(value: float, name: str) -> None:
    check_in_interval(value, name, 0, 1, low_closed=True, high_closed=True)


def _to_normalised_tensor() -> list[v2.Transform]:
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]


def build_train_transform(
    height: int = 384,
    width: int = 128,
    *,
    flip_prob: float = 0.5,
    padding: int = 10,
    erasing_prob: float = 0.5,
) -> Transform:
    """Return the training augmentation.

    Args:
        height: Output height.
        width: Output width.
        flip_prob: Probability of a horizontal flip (0 disables it).
        padding: Zero padding on every side before the random crop (0 disables both).
        erasing_prob: Probability of random erasing (area 2-40 %, aspect 0.3-3.3; 0 disables it).

    Returns:
        A callable mapping a PIL image to a normalised ``(3, height, width)`` float tensor.

    Raises:
        ValueError: A size is not a positive integer, ``padding`` is negative or a
            probability is outside [0, 1].
    """
    _check_size(height, width)
    _check_prob(flip_prob, "flip_prob")
    _check_prob(erasing_prob, "erasing_prob")
    check_int(padding, "padding", 0)
    steps: list[v2.Transform] = [v2.Resize((height, width), antialias=True)]
    if flip_prob > 0:
        steps.append(v2.RandomHorizontalFlip(flip_prob))
    if padding > 0:
        steps += [v2.Pad(padding, fill=0), v2.RandomCrop((height, width))]
    steps += _to_normalised_tensor()
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
