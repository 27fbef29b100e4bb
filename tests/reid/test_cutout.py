"""Tests of Cutout (the STADB authors' augmentation), the training transform with it, its config keys."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2

from stadb_reid.config import load_config
from stadb_reid.config.schema import IMAGENET_MEAN, IMAGENET_STD
from stadb_reid.data import build_train_transform
from stadb_reid.data.transforms import Cutout
from stadb_reid.engine.preflight import validate_config
from stadb_reid.errors import ConfigError


def reference_cutout(image: torch.Tensor, top: int, left: int, size: int) -> torch.Tensor:
    """The reference's fill for a given corner: the whole ``size x size`` square, every channel, to 0."""
    out = image.clone()
    out[:, top : top + size, left : left + size] = 0.0
    return out


def corner_of(out: torch.Tensor) -> tuple[int, int]:
    rows, cols = torch.nonzero(out[0] == 0, as_tuple=True)
    return int(rows.min()), int(cols.min())


@settings(max_examples=200, deadline=None)
@given(
    height=st.integers(1, 12),
    width=st.integers(1, 12),
    size=st.integers(1, 12),
    channels=st.sampled_from([1, 3]),
    seed=st.integers(0, 2**32 - 1),
)
def test_square_is_whole_inside_and_the_rest_untouched(
    height: int, width: int, size: int, channels: int, seed: int
) -> None:
    torch.manual_seed(seed)
    image = torch.rand(channels, height, width) + 1.0  # no pixel is 0 before the cut
    before = image.clone()
    out = Cutout(p=1.0, size=size)(image)
    assert torch.equal(image, before), "the input is left alone"
    if size >= height or size >= width:  # the reference's square only goes where it fits strictly
        assert torch.equal(out, image)
        return
    top, left = corner_of(out)
    assert 0 <= top <= height - size and 0 <= left <= width - size
    assert int((out == 0).sum()) == channels * size * size  # never clipped at the border
    assert torch.equal(out, reference_cutout(image, top, left, size))


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), size=st.integers(1, 4))
def test_probability_zero_never_cuts(seed: int, size: int) -> None:
    torch.manual_seed(seed)
    image = torch.rand(3, 8, 6) + 1.0
    assert torch.equal(Cutout(p=0.0, size=size)(image), image)


def test_probability_and_corners_are_uniform() -> None:
    torch.manual_seed(0)
    cutout, image = Cutout(p=0.3, size=2), torch.ones(1, 5, 4)
    corners: Counter[tuple[int, int]] = Counter()
    draws = 3000
    for _ in range(draws):
        out = cutout(image)
        if not torch.equal(out, image):
            corners[corner_of(out)] += 1
    assert abs(sum(corners.values()) / draws - 0.3) < 0.03
    # (5 - 2 + 1) x (4 - 2 + 1) = 12 corners, each about 900 / 12 = 75 times.
    assert set(corners) == {(r, c) for r in range(4) for c in range(3)}
    assert all(45 < n < 110 for n in corners.values())


def test_seeded_torch_fixes_the_square() -> None:
    image = torch.rand(3, 20, 10) + 1.0
    outs = []
    for _ in range(2):
        torch.manual_seed(7)
        outs.append(Cutout(p=0.5, size=4)(image))
    assert torch.equal(outs[0], outs[1])


def test_v2_inputs() -> None:
    torch.manual_seed(0)
    cutout = Cutout(p=1.0, size=2, value=-1.0)
    image = tv_tensors.Image(torch.ones(3, 6, 5))
    mask = tv_tensors.Mask(torch.ones(6, 5))
    out_image, out_mask, label = cutout(image, mask, 3)
    assert isinstance(out_image, tv_tensors.Image) and int((out_image == -1).sum()) == 12
    assert torch.equal(out_mask, mask) and label == 3  # masks and labels pass through
    pil = Cutout(p=1.0, size=2)(Image.new("RGB", (5, 6), (255, 255, 255)))
    assert isinstance(pil, Image.Image) and pil.size == (5, 6)
    pixels = v2.functional.pil_to_tensor(pil)
    assert int((pixels == 0).all(0).sum()) == 4  # a 2 x 2 black square
    assert "size=2" in repr(cutout)


def test_training_transform_cuts_after_normalising() -> None:
    white = Image.new("RGB", (40, 80), (255, 255, 255))
    transform = build_train_transform(
        32, 16, flip_prob=0.0, padding=0, erasing_prob=0.0, cutout_prob=1.0, cutout_size=8
    )
    assert any(isinstance(step, Cutout) for step in transform.transforms)  # type: ignore[attr-defined]
    torch.manual_seed(0)
    x = transform(white)
    # Filled with 0 after normalising: the ImageNet mean colour, not black.
    assert int((x == 0).all(0).sum()) == 64
    white_normalised = torch.tensor([(1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)])
    kept = x[:, (x != 0).all(0)]
    torch.testing.assert_close(kept, white_normalised[:, None].expand_as(kept))
    default = build_train_transform(32, 16)
    assert not any(isinstance(step, Cutout) for step in default.transforms)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"p": 1.5}, "p must lie in [0.0, 1.0], got 1.5"),
        ({"p": -0.1}, "p must lie in"),
        ({"size": 0}, "size must be a positive integer"),
        ({"size": 2.5}, "size must be"),
    ],
)
def test_cutout_refuses_bad_values(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        Cutout(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cutout_prob": 2.0}, "cutout_prob"),
        ({"cutout_size": 0}, "cutout_size"),
        ({"padding": -1}, "padding"),
    ],
)
def test_transform_refuses_bad_values(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_train_transform(**kwargs)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"data.padding": -1}, "data.padding must be"),
        ({"data.erasing_prob": 1.5}, "data.erasing_prob must lie in [0.0, 1.0], got 1.5"),
        ({"data.cutout_prob": -0.5}, "data.cutout_prob must lie in"),
        ({"data.cutout_size": 0}, "data.cutout_size must be"),
    ],
)
def test_config_refuses_bad_values(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate_config(load_config(["market1501"], overrides))


def test_config_defaults_and_the_reference_pipeline() -> None:
    data = load_config().data
    assert (data.padding, data.erasing_prob, data.cutout_prob, data.cutout_size) == (10, 0.5, 0.0, 64)
    reference = {
        "data.padding": 0,
        "data.erasing_prob": 0.0,
        "data.cutout_prob": 0.5,
        "data.epoch": "identities",
    }
    validate_config(load_config(["market1501"], reference))
    # A square as wide as the image is fine while Cutout is off.
    validate_config(load_config(["market1501"], {"data.cutout_size": 128}))
