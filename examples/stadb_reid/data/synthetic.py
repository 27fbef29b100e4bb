"""Procedural synthetic person re-ID dataset, written in the Market-1501 layout.

The built-in dataset lets the trainer, its tests and the demo run offline. Each identity is a
cartoon pedestrian whose look is fixed by a handful of attributes:

* upper clothing: main and secondary colour, pattern (plain, horizontal or vertical stripes,
  checks, a chest logo that only shows from the front, colour block), stripe period, sleeves;
* lower clothing: trousers, shorts or skirt, colour, pattern (plain, side stripes, checks);
* skin tone, hair colour and length, shoe colour, a backpack or handbag, body build.

Colours come from a small palette (12 colours), so identities share colours and patterns and
differ only in their combination; no two identities have the same clothing combination.

Every camera has its own look, drawn once from the seed: colour cast, brightness and gamma,
a lighting ramp, blur, resolution loss, noise, JPEG quality, background (wall, floor, clutter),
typical person scale and horizontal position, the mix of front/back/side views, and how often
something occludes the person. Each image adds its own pose (stride, arm swing, mirror
image), jitter of scale and position, background clutter and occluders (poles, cars, another
person's clothes, in palette colours). Colour alone does not survive the camera casts, and the
background is shared by all identities seen by a camera, so a network has to learn which cues
identify a person. With the defaults, an untrained (randomly initialised) ResNet-50 and raw
pixels are at chance level (rank-1 2-3 % for 50 test identities), while a ResNet-18 trained
from scratch for 8 epochs on CPU reaches about 60 %.

The output is ``bounding_box_train/``, ``query/`` and ``bounding_box_test/`` with Market-1501
names ``PPPP_cCs1_FFFFFF_00.jpg`` (``PPPP`` from 0001; ``0000`` are distractor persons in the
gallery), plus ``synthetic.json`` holding the generator parameters and the list of files written.
For each test identity, the first image of every camera is a query and the others are gallery
images.

Examples:
    >>> import shutil, tempfile
    >>> from stadb_reid.data import build_dataset
    >>> root = Path(tempfile.mkdtemp()) / "synthetic"
    >>> ds = build_dataset("synthetic", root, num_train_identities=4, num_test_identities=2,
    ...                    num_cameras=2, images_per_identity_per_camera=2, num_distractors=1)
    >>> len(ds.train), len(ds.query), len(ds.gallery), ds.num_train_pids, ds.num_train_cams
    (16, 4, 5, 4, 2)
    >>> generate_synthetic_reid(root, num_train_identities=4, num_test_identities=2, num_cameras=2,
    ...                         images_per_identity_per_camera=2, num_distractors=1) == root  # reused
    True
    >>> shutil.rmtree(root.parent)
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageFilter

from stadb_reid.data._generated_files import (
    ForeignPathError,
    make_temp_dir,
    remove_generated,
    remove_stale_temp_dirs,
    walk_generated,
)
from stadb_reid.errors import StaleDatasetError

__all__ = ["METADATA_FILE", "StaleDatasetError", "generate_synthetic_reid", "render_person"]

#: Name of the metadata file written next to the split folders.
METADATA_FILE = "synthetic.json"
_GENERATOR = "stadb_reid.data.synthetic"
# Bump whenever the drawing changes, so folders written by an older generator are regenerated.
_FORMAT_VERSION = 1
_SPLIT_DIRS = ("bounding_box_train", "query", "bounding_box_test")

Array = NDArray[np.float32]


# ---------------------------------------------------------------------------------------- palette
_PALETTE = np.array(
    [
        (0.08, 0.08, 0.09),  # black
        (0.90, 0.90, 0.88),  # white
        (0.50, 0.50, 0.52),  # grey
        (0.75, 0.12, 0.13),  # red
        (0.16, 0.30, 0.72),  # blue
        (0.12, 0.14, 0.32),  # navy
        (0.16, 0.52, 0.22),  # green
        (0.88, 0.78, 0.16),  # yellow
        (0.45, 0.28, 0.15),  # brown
        (0.88, 0.50, 0.64),  # pink
        (0.78, 0.70, 0.54),  # beige
        (0.46, 0.22, 0.55),  # purple
    ],
    dtype=np.float32,
)
_SKIN = np.array([(0.96, 0.80, 0.69), (0.87, 0.67, 0.52), (0.68, 0.48, 0.34), (0.42, 0.29, 0.20)], np.float32)
_HAIR = np.array([(0.07, 0.06, 0.05), (0.30, 0.18, 0.09), (0.80, 0.66, 0.38), (0.55, 0.55, 0.55)], np.float32)
_UPPER_PATTERNS = ("plain", "hstripes", "vstripes", "checks", "logo", "block")
_LOWER_TYPES = ("trousers", "shorts", "skirt")
_LOWER_PATTERNS = ("plain", "side_stripes", "checks")
_BAGS = ("none", "backpack", "handbag")
_VIEWS = ("front", "back", "side")


@dataclass(frozen=True)
class _Identity:
    upper: int
    upper2: int
    upper_pattern: str
    period: float  # stripe/check period as a fraction of the person height
    long_sleeves: bool
    lower: int
    lower2: int
    lower_type: str
    lower_pattern: str
    skin: int
    hair: int
    long_hair: bool
    shoes: int
    bag: str
    bag_colour: int
    bag_side: int  # -1 left, +1 right (in a front view)
    build: float
    height: float
    tint: tuple[float, float, float]  # small per-identity colour jitter

    def signature(self) -> tuple[int, int, str, int, int, str, str]:
        """The clothing combination that must be unique per identity."""
        return (
            self.upper,
            self.upper2,
            self.upper_pattern,
            self.lower,
            self.lower2,
            self.lower_type,
            self.lower_pattern,
        )


@dataclass(frozen=True)
class _Camera:
    gain: tuple[float, float, float]
    brightness: float
    gamma: float
    ramp: float  # left-to-right lighting gradient
    blur: float  # Gaussian blur sigma at 128-pixel height
    lowres: float  # down-scaling factor before upsampling back (1 = none)
    noise: float
    jpeg_quality: int
    wall: tuple[float, float, float]
    floor: tuple[float, float, float]
    horizon: float
    scale: float  # person height / image height
    offset: float  # horizontal person offset / image width
    view_probs: tuple[float, float, float]
    occlusion: float
    clutter: float  # scales the number of background objects


def _pick_other(rng: np.random.Generator, n: int, exclude: int) -> int:
    value = int(rng.integers(n - 1))
    return value + (value >= exclude)


def _random_identity(rng: np.random.Generator) -> _Identity:
    n = len(_PALETTE)
    upper = int(rng.integers(n))
    lower = int(rng.integers(n))
    return _Identity(
        upper=upper,
        upper2=_pick_other(rng, n, upper),
        upper_pattern=str(rng.choice(_UPPER_PATTERNS)),
        period=float(rng.choice([0.035, 0.05, 0.07])),
        long_sleeves=bool(rng.random() < 0.6),
        lower=lower,
        lower2=_pick_other(rng, n, lower),
        lower_type=str(rng.choice(_LOWER_TYPES, p=[0.6, 0.2, 0.2])),
        lower_pattern=str(rng.choice(_LOWER_PATTERNS, p=[0.6, 0.2, 0.2])),
        skin=int(rng.integers(len(_SKIN))),
        hair=int(rng.integers(len(_HAIR))),
        long_hair=bool(rng.random() < 0.35),
        shoes=int(rng.choice([0, 1, 2, 8])),
        bag=str(rng.choice(_BAGS, p=[0.5, 0.3, 0.2])),
        bag_colour=int(rng.integers(n)),
        bag_side=int(rng.choice([-1, 1])),
        build=float(rng.uniform(0.85, 1.15)),
        height=float(rng.uniform(0.92, 1.04)),
        tint=(float(rng.normal(0, 0.03)), float(rng.normal(0, 0.03)), float(rng.normal(0, 0.03))),
    )


def _identities(count: int, seed: int) -> list[_Identity]:
    rng = np.random.default_rng([seed, 0])
    out: list[_Identity] = []
    seen: set[tuple[int, int, str, int, int, str, str]] = set()
    while len(out) < count:
        identity = _random_identity(rng)
        if identity.signature() not in seen:
            seen.add(identity.signature())
            out.append(identity)
    return out


def _muted(rng: np.random.Generator) -> tuple[float, float, float]:
    base = rng.uniform(0.25, 0.7)
    r, g, b = (np.clip(base + rng.normal(0, 0.08, 3), 0.05, 0.95)).tolist()
    return (float(r), float(g), float(b))


def _camera(index: int, seed: int, difficulty: float = 1.0) -> _Camera:
    """Draw camera ``index``; ``difficulty`` scales every departure from a neutral camera."""
    d = difficulty
    rng = np.random.default_rng([seed, 1, index])
    gain = np.exp(d * rng.normal(0, 0.2, 3))
    gain = gain / gain.mean()
    probs = rng.dirichlet([2.0, 2.0, 1.2])
    r, g, b = gain.tolist()
    p0, p1, p2 = probs.tolist()
    return _Camera(
        gain=(float(r), float(g), float(b)),
        brightness=1.0 + d * (float(rng.uniform(0.65, 1.25)) - 1.0),
        gamma=1.0 + d * (float(rng.uniform(0.8, 1.25)) - 1.0),
        ramp=d * float(rng.uniform(-0.25, 0.25)),
        blur=0.3 + d * (float(rng.uniform(0.4, 1.5)) - 0.3),
        lowres=1.0 + d * (float(rng.choice([1.0, 1.0, 1.6, 2.2])) - 1.0),
        noise=d * float(rng.uniform(0.01, 0.04)),
        jpeg_quality=round(95 - d * (95 - int(rng.integers(70, 95)))),
        wall=_muted(rng),
        floor=_muted(rng),
        horizon=float(rng.uniform(0.45, 0.75)),
        scale=float(rng.uniform(0.78, 0.92)),
        offset=d * float(rng.uniform(-0.08, 0.08)),
        view_probs=(float(p0), float(p1), float(p2)),
        occlusion=min(1.0, d * float(rng.uniform(0.15, 0.45))),
        clutter=d,
    )


# ---------------------------------------------------------------------------------------- drawing
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


def _colour(index: int, identity: _Identity) -> Array:
    colour: Array = np.clip(_PALETTE[index] + np.asarray(identity.tint, np.float32), 0.0, 1.0)
    return colour


def _draw_background(canvas: _Canvas, cam: _Camera, rng: np.random.Generator) -> None:
    height, width = canvas.img.shape[:2]
    horizon = height * (cam.horizon + rng.normal(0, 0.04))
    wall = np.asarray(cam.wall, np.float32)
    floor = np.asarray(cam.floor, np.float32)
    rows = np.arange(height, dtype=np.float32) + 0.5
    column = np.where((rows < horizon)[:, None], wall, floor) * (0.85 + 0.3 * rows / height)[:, None]
    canvas.img[:] = column[:, None, :]
    for _ in range(round(cam.clutter * int(rng.integers(3, 9)))):  # windows, signs, bins, other objects
        w = rng.uniform(0.1, 0.6) * width
        h = rng.uniform(0.05, 0.4) * height
        x0 = rng.uniform(-0.2, 1.0) * width
        y0 = rng.uniform(0.0, 0.9) * height
        colour = 0.5 * _PALETTE[rng.integers(len(_PALETTE))] + 0.5 * np.asarray(_muted(rng), np.float32)
        canvas.fill_rect(x0, x0 + w, y0, y0 + h, colour)
    canvas.img += 0.03 * canvas.noise(rng)  # texture


def _draw_person(
    canvas: _Canvas, person: _Identity, cam: _Camera, rng: np.random.Generator, view: str
) -> None:
    height, width = int(canvas.img.shape[0]), int(canvas.img.shape[1])
    s = height * cam.scale * person.height * float(rng.uniform(0.92, 1.06))
    cx = width * (0.5 + cam.offset + float(rng.normal(0, 0.05)))
    foot = height * float(rng.uniform(0.95, 1.0))
    top = foot - s

    def y_at(f: float) -> float:
        return top + f * s

    side = view == "side"
    wide = person.build * (0.7 if side else 1.0)
    skin = _SKIN[person.skin]
    hair = _HAIR[person.hair]
    upper, upper2 = _colour(person.upper, person), _colour(person.upper2, person)
    lower, lower2 = _colour(person.lower, person), _colour(person.lower2, person)
    bag = _colour(person.bag_colour, person)
    stride = rng.uniform(-1, 1) * (0.09 if side else 0.04) * s
    swing = rng.uniform(-1, 1) * (0.08 if side else 0.03) * s
    torso_hw = 0.14 * s * wide
    torso_top, torso_bottom, hip = y_at(0.16), y_at(0.52), y_at(0.52)

    # Backpack seen from the side sticks out behind the torso; from the back it covers it (below).
    if person.bag == "backpack" and side:
        canvas.fill_rect(cx - torso_hw - 0.09 * s, cx - torso_hw + 0.02 * s, y_at(0.19), y_at(0.45), bag)
    if person.long_hair and view != "back":
        canvas.fill_rect(cx - 0.065 * s, cx + 0.065 * s, y_at(0.05), y_at(0.21), hair)

    # Legs, then the lower garment over them.
    leg_hw = 0.055 * s * person.build
    leg_sep = 0.06 * s * wide
    leg_bottom = y_at(0.95)
    legs = []
    for sign in (-1.0, 1.0):
        x_top = cx + sign * leg_sep * (0.3 if side else 1.0)
        legs.append(canvas.slanted(x_top, x_top + sign * stride, leg_hw, hip, leg_bottom))
        canvas.fill_rect(
            x_top + sign * stride - leg_hw * 1.2,
            x_top + sign * stride + leg_hw * 1.3,
            leg_bottom,
            y_at(0.995),
            _PALETTE[person.shoes],
        )
    both_legs = legs[0] | legs[1]
    garment_bottom = {"trousers": leg_bottom, "shorts": y_at(0.70), "skirt": y_at(0.62)}[person.lower_type]
    canvas.paint(both_legs, skin)
    lower_area = both_legs & (canvas.y < garment_bottom)
    if person.lower_type == "skirt":
        t = np.clip((canvas.y - hip) / (garment_bottom - hip), 0.0, 1.0)
        flare = np.abs(canvas.x - cx) <= torso_hw * (0.95 + 0.45 * t)
        lower_area |= flare & (canvas.y >= hip - 1) & (canvas.y < garment_bottom)
    canvas.paint(lower_area, lower)
    if person.lower_pattern == "side_stripes":
        for leg_sign in (-1.0, 1.0):
            x_top = cx + leg_sign * leg_sep * (0.3 if side else 1.0) + leg_sign * leg_hw * 0.7
            stripe = canvas.slanted(x_top, x_top + leg_sign * stride, 0.014 * s + 0.5, hip, garment_bottom)
            canvas.paint(stripe & lower_area, lower2)
    elif person.lower_pattern == "checks":
        p = 0.06 * s
        checks = ((np.floor((canvas.x - cx) / p) + np.floor((canvas.y - hip) / p)) % 2).astype(bool)
        canvas.paint(checks & lower_area, lower2)

    # Arms behind the torso in a side view, beside it otherwise.
    arm_hw = 0.033 * s * person.build
    sleeve_end = y_at(0.5) if person.long_sleeves else y_at(0.27)
    arm_offsets = (0.0,) if side else (-1.0, 1.0)
    arms = []
    for sign in arm_offsets:
        x_top = cx + sign * (torso_hw + arm_hw * 0.8)
        arms.append(
            canvas.slanted(
                x_top, x_top + (swing if side else sign * abs(swing)), arm_hw, y_at(0.17), y_at(0.53)
            )
        )
    if not side:
        for arm in arms:
            canvas.paint(arm, skin)
            canvas.paint(arm & (canvas.y < sleeve_end), upper)

    # Torso with the upper-clothing pattern, in torso coordinates so it follows the body.
    t = np.clip((canvas.y - torso_top) / (torso_bottom - torso_top), 0.0, 1.0)
    torso = (
        (np.abs(canvas.x - cx) <= torso_hw * (1.08 - 0.15 * t))
        & (canvas.y >= torso_top)
        & (canvas.y < torso_bottom)
    )
    canvas.paint(torso, upper)
    period = person.period * s
    u = canvas.x - cx
    v = canvas.y - torso_top
    pattern = person.upper_pattern
    second: NDArray[np.bool_] | None = None
    if pattern == "hstripes":
        second = (np.floor(v / period) % 2).astype(bool)
    elif pattern == "vstripes":
        second = (np.floor(u / period + 0.5) % 2).astype(bool)
    elif pattern == "checks":
        second = ((np.floor(u / period) + np.floor(v / period)) % 2).astype(bool)
    elif pattern == "block":
        second = v > 0.45 * (torso_bottom - torso_top)
    elif pattern == "logo" and view == "front":
        second = canvas.ellipse(cx, y_at(0.28), 0.06 * s * wide, 0.055 * s)
    if second is not None:
        canvas.paint(torso & second, upper2)
    if side:
        for arm in arms:
            canvas.paint(arm, skin)
            canvas.paint(arm & (canvas.y < sleeve_end), upper)

    # Bags in front of the torso.
    if person.bag == "backpack" and view == "back":
        canvas.fill_rect(cx - 0.1 * s * wide, cx + 0.1 * s * wide, y_at(0.19), y_at(0.46), bag)
    elif person.bag == "backpack" and view == "front":
        for sign in (-1.0, 1.0):
            canvas.fill_rect(
                cx + sign * 0.075 * s - 0.012 * s,
                cx + sign * 0.075 * s + 0.012 * s,
                torso_top,
                y_at(0.36),
                bag,
            )
    elif person.bag == "handbag":
        side_sign = person.bag_side * (-1 if view == "back" else 1)
        bx = cx + side_sign * (torso_hw + 0.06 * s)
        canvas.fill_rect(bx - 0.06 * s, bx + 0.06 * s, y_at(0.46), y_at(0.62), bag)

    # Head and hair.
    head = canvas.ellipse(cx, y_at(0.085), 0.055 * s, 0.07 * s)
    canvas.paint(head, skin)
    if view == "back":
        canvas.paint(head, hair)
        if person.long_hair:
            canvas.fill_rect(cx - 0.06 * s, cx + 0.06 * s, y_at(0.08), y_at(0.22), hair)
    else:
        canvas.paint(head & (canvas.y < y_at(0.055)), hair)


def _draw_occluder(canvas: _Canvas, rng: np.random.Generator) -> None:
    height, width = canvas.img.shape[:2]
    colour = _PALETTE[rng.integers(len(_PALETTE))] * rng.uniform(0.7, 1.1)
    kind = rng.integers(3)
    if kind == 0:  # something low in front: car, bench, bicycle
        y0 = height * rng.uniform(0.55, 0.8)
        canvas.fill_rect(-1, width + 1, y0, height + 1, colour)
        canvas.fill_rect(-1, width + 1, y0, y0 + 0.04 * height, colour * 0.6)
    elif kind == 1:  # pole or tree trunk
        w = width * rng.uniform(0.12, 0.3)
        x0 = width * rng.uniform(0.1, 0.9) - w / 2
        canvas.fill_rect(x0, x0 + w, -1, height + 1, colour)
    else:  # another pedestrian passing at one side
        sign = rng.choice([-1.0, 1.0])
        cx = width * (0.5 + sign * rng.uniform(0.3, 0.5))
        other = _PALETTE[rng.integers(len(_PALETTE))]
        canvas.paint(canvas.ellipse(cx, height * 0.4, width * 0.22, height * 0.22), other)
        canvas.fill_rect(cx - width * 0.15, cx + width * 0.15, height * 0.55, height + 1, colour)


def _camera_effects(canvas: _Canvas, cam: _Camera, rng: np.random.Generator, *, mirror: bool) -> Image.Image:
    img = canvas.img[:, ::-1] if mirror else canvas.img
    height, width = img.shape[:2]
    ramp = 1.0 + cam.ramp * (np.linspace(-1, 1, width, dtype=np.float32))[None, :, None]
    gain = np.asarray(cam.gain, np.float32) * cam.brightness * rng.uniform(0.9, 1.1)
    out = np.clip(img, 0.0, 1.0) * ramp * gain
    out = np.clip(out, 0.0, 1.0) ** cam.gamma
    pil = Image.fromarray((out * 255 + 0.5).astype(np.uint8))
    if cam.lowres > 1.0:
        small = (max(1, round(width / cam.lowres)), max(1, round(height / cam.lowres)))
        pil = pil.resize(small, Image.Resampling.BILINEAR).resize((width, height), Image.Resampling.BILINEAR)
    sigma = cam.blur * rng.uniform(0.7, 1.3) * height / 128
    pil = pil.filter(ImageFilter.GaussianBlur(sigma))
    noisy = np.asarray(pil, np.float32) / 255 + cam.noise * canvas.noise(rng)
    return Image.fromarray((np.clip(noisy, 0.0, 1.0) * 255 + 0.5).astype(np.uint8))


def render_person(
    identity_seed: int,
    camera: int,
    *,
    height: int = 128,
    width: int = 64,
    seed: int = 0,
    image_seed: int = 0,
    difficulty: float = 1.0,
) -> Image.Image:
    """Render one image of a random person, as the generator does (for inspection and tests).

    Args:
        identity_seed: Seed of the person's attributes.
        camera: Camera index (its look is drawn from ``seed``).
        height: Image height.
        width: Image width.
        seed: Dataset seed (fixes the cameras).
        image_seed: Seed of the pose, background and occluders.
        difficulty: See :func:`generate_synthetic_reid`.

    Returns:
        An RGB image.

    Examples:
        >>> render_person(3, 1).size
        (64, 128)
    """
    person = _random_identity(np.random.default_rng([seed, 3, identity_seed]))
    canvas = _Canvas(height, width, seed)
    cam = _camera(camera, seed, difficulty)
    return _render(canvas, person, cam, np.random.default_rng([seed, 4, image_seed]))


def _render(canvas: _Canvas, person: _Identity, cam: _Camera, rng: np.random.Generator) -> Image.Image:
    _draw_background(canvas, cam, rng)
    view = str(rng.choice(_VIEWS, p=np.asarray(cam.view_probs) / sum(cam.view_probs)))
    _draw_person(canvas, person, cam, rng, view)
    if rng.random() < cam.occlusion:
        _draw_occluder(canvas, rng)
    return _camera_effects(canvas, cam, rng, mirror=bool(rng.random() < 0.5))


# -------------------------------------------------------------------------------------- generation
def _check_int(value: int, name: str, low: int, high: int | None = None) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be an integer {bound}, got {value!r}")
    return value


def _check_difficulty(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 2.0:
        raise ValueError(f"difficulty must be a number in [0, 2], got {value!r}")
    return float(value)


# Bounds of the integer parameters, in the order of the signature (and of synthetic.json).
_INT_BOUNDS: dict[str, tuple[int, int | None]] = {
    "num_train_identities": (1, None),
    "num_test_identities": (1, None),
    "num_cameras": (2, 9),
    "images_per_identity_per_camera": (2, None),
    "num_distractors": (0, None),
    "height": (16, None),
    "width": (8, None),
    "seed": (0, None),
}


def _checked_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """The generator parameters after range checks (``ValueError``); ``KeyError`` if one is missing."""
    out: dict[str, Any] = {
        name: _check_int(params[name], name, *bounds) for name, bounds in _INT_BOUNDS.items()
    }
    out["difficulty"] = _check_difficulty(params["difficulty"])
    if out["num_train_identities"] + out["num_test_identities"] > 9999:
        raise ValueError("num_train_identities + num_test_identities must be at most 9999 (4-digit ids)")
    return out


def _read_metadata(root: Path) -> dict[str, Any] | None:
    path = root / METADATA_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StaleDatasetError(f"cannot read synthetic dataset metadata {path}: {exc}", path) from exc
    return data if isinstance(data, dict) else None


def _matches(metadata: Mapping[str, Any] | None, params: Mapping[str, Any]) -> bool:
    return (
        metadata is not None
        and metadata.get("generator") == _GENERATOR
        and metadata.get("format_version") == _FORMAT_VERSION
        and metadata.get("params") == dict(params)
    )


def _images(params: Mapping[str, Any]) -> Iterator[tuple[str, str, _Identity, int, np.random.Generator]]:
    """Yield ``(split, relative path, person, camera, rng)`` for every image, in writing order."""
    seed, n_cams = int(params["seed"]), int(params["num_cameras"])
    per_cam, n_train = int(params["images_per_identity_per_camera"]), int(params["num_train_identities"])
    people = _identities(n_train + int(params["num_test_identities"]), seed)
    for index, person in enumerate(people):
        pid = index + 1
        for cam in range(n_cams):
            for frame in range(per_cam):
                rng = np.random.default_rng([seed, 2, pid, cam, frame])
                if index < n_train:
                    split, folder = "train", "bounding_box_train"
                elif frame == 0:
                    split, folder = "query", "query"
                else:
                    split, folder = "gallery", "bounding_box_test"
                yield split, f"{folder}/{pid:04d}_c{cam + 1}s1_{frame:06d}_00.jpg", person, cam, rng
    for k in range(int(params["num_distractors"])):
        rng = np.random.default_rng([seed, 3, k])
        person = _random_identity(rng)
        cam = int(rng.integers(n_cams))
        yield "gallery", f"bounding_box_test/0000_c{cam + 1}s1_{k:06d}_00.jpg", person, cam, rng


def _write_dataset(target: Path, params: Mapping[str, Any]) -> dict[str, int]:
    seed = int(params["seed"])
    cameras = [_camera(c, seed, float(params["difficulty"])) for c in range(int(params["num_cameras"]))]
    canvas = _Canvas(int(params["height"]), int(params["width"]), seed)
    for d in _SPLIT_DIRS:
        (target / d).mkdir(parents=True)
    counts = dict.fromkeys(("train", "query", "gallery"), 0)
    files: list[str] = []
    for split, rel, person, cam, rng in _images(params):
        buffer = io.BytesIO()
        _render(canvas, person, cameras[cam], rng).save(
            buffer, format="JPEG", quality=cameras[cam].jpeg_quality
        )
        (target / rel).write_bytes(buffer.getvalue())
        counts[split] += 1
        files.append(rel)
    metadata = {
        "generator": _GENERATOR,
        "format_version": _FORMAT_VERSION,
        "params": dict(params),
        "counts": counts,
        "cameras": [asdict(c) for c in cameras],
        "files": files,  # the manifest: regenerating deletes these and nothing else
    }
    (target / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    return counts


def _manifest(root: Path, metadata: Mapping[str, Any] | None) -> list[str]:
    """The files the generator wrote into ``root``, relative to it (``synthetic.json`` included)."""
    metadata = metadata if metadata is not None and metadata.get("generator") == _GENERATOR else {}
    files = metadata.get("files")
    if files is None and metadata.get("format_version") == 1:
        # Written before the manifest existed; version 1 names follow from the parameters alone.
        try:
            files = [rel for _, rel, *_ in _images(_checked_params(metadata["params"]))]
        except (KeyError, TypeError, ValueError):
            files = None
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise StaleDatasetError(
            f"{root / METADATA_FILE} does not tell which files the generator wrote; "
            f"delete {root} yourself to regenerate it",
            root / METADATA_FILE,
        )
    return [*files, METADATA_FILE]


def _remove_generated(root: Path, metadata: Mapping[str, Any] | None, *, check_only: bool = False) -> None:
    """Delete a generated dataset, or only check it with ``check_only``; nothing if anything else is there."""
    manifest = _manifest(root, metadata)
    try:
        if check_only:
            walk_generated(root, manifest)
        else:
            remove_generated(root, manifest)
    except ForeignPathError as exc:
        raise StaleDatasetError(
            f"{exc.path} was not written by the synthetic generator; refusing to regenerate {root} "
            "(move it elsewhere or choose another root)",
            exc.path,
        ) from None


def generate_synthetic_reid(
    root: str | os.PathLike[str],
    *,
    num_train_identities: int = 100,
    num_test_identities: int = 50,
    num_cameras: int = 4,
    images_per_identity_per_camera: int = 4,
    num_distractors: int = 20,
    height: int = 128,
    width: int = 64,
    seed: int = 0,
    difficulty: float = 1.0,
    regenerate: bool = True,
) -> Path:
    """Write the procedural dataset into ``root`` (Market-1501 layout) unless it is already there.

    With the defaults: 100 training identities (1,600 images), 50 test identities (200 queries,
    600 + 20 distractor gallery images), 4 cameras, 128 x 64 images; about 4 s on one core.
    The output depends only on the arguments (and the Pillow JPEG encoder).

    ``root`` is generated when it is absent or an empty folder, and reused as is when its
    ``synthetic.json`` records the same parameters and generator version. A folder made with
    other parameters is regenerated, or reported if ``regenerate`` is false. Regenerating deletes
    only the files listed in ``synthetic.json`` (a folder of generator version 1 without that
    list: the names its parameters give) and refuses, deleting nothing, if ``root`` or a split
    folder holds anything else, such as a user's file or a symbolic link. A symbolic link as
    ``root`` is kept and its target folder is used. Generation writes into a temporary sibling
    folder that is renamed at the end, so an interrupted run leaves no half-written dataset and
    concurrent processes (one per GPU) do not collide; the temporary folders of killed runs are
    removed by the next call once their process is gone.

    Args:
        root: Dataset folder.
        num_train_identities: Training identities (pids ``1 .. num_train_identities``).
        num_test_identities: Test identities, following the training ones.
        num_cameras: Cameras, each seeing every identity.
        images_per_identity_per_camera: Images per identity and camera; for test identities the
            first is a query and the others are gallery images, so at least 2.
        num_distractors: Gallery images of other persons (pid 0, as in Market-1501).
        height: Image height in pixels.
        width: Image width in pixels.
        seed: Seed of everything (identities, cameras, images).
        difficulty: Strength of the camera and scene nuisances in [0, 2]: colour cast,
            brightness, gamma, lighting ramp, blur beyond 0.3 px, resolution loss, noise, JPEG
            loss, horizontal offset, occluder probability and background clutter all scale with
            it. 0 gives neutral cameras on plain backgrounds (persons still vary in pose, view
            and scale), 1 is the default, 2 doubles every nuisance.
        regenerate: Replace a folder generated with other parameters; if false, raise instead.

    Returns:
        ``root`` as a ``Path``.

    Raises:
        ValueError: A parameter is out of range.
        StaleDatasetError: ``root`` is not empty and holds no matching ``synthetic.json`` (and
            regenerating is not allowed, or ``root`` holds files the generator did not write;
            the message names the first such path).
    """
    params = _checked_params(
        {
            "num_train_identities": num_train_identities,
            "num_test_identities": num_test_identities,
            "num_cameras": num_cameras,
            "images_per_identity_per_camera": images_per_identity_per_camera,
            "num_distractors": num_distractors,
            "height": height,
            "width": width,
            "seed": seed,
            "difficulty": difficulty,
        }
    )
    given = Path(root).expanduser()
    # Work on the link's target: the link stays in place and everything below applies to the
    # real folder (the temporary folder is its sibling, so the final rename stays atomic).
    path = given.resolve() if given.is_symlink() else given
    remove_stale_temp_dirs(path)
    if path.exists():
        if not path.is_dir():
            raise StaleDatasetError(f"synthetic dataset root {path} is not a directory", path)
        metadata = _read_metadata(path)
        if _matches(metadata, params):
            return given
        if any(path.iterdir()):
            if metadata is None or metadata.get("generator") != _GENERATOR:
                raise StaleDatasetError(
                    f"{path} is not empty and has no {METADATA_FILE}; refusing to generate the synthetic "
                    "dataset into it (choose an empty or new folder)",
                    path,
                )
            if not regenerate:
                raise StaleDatasetError(
                    f"{path / METADATA_FILE} records parameters {metadata.get('params')} (generator "
                    f"version {metadata.get('format_version')}), not {params} (version {_FORMAT_VERSION}); "
                    "delete the folder or pass regenerate=True",
                    path / METADATA_FILE,
                )
            _remove_generated(path, metadata, check_only=True)  # fail before spending time generating
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(path)
    try:
        _write_dataset(tmp, params)
        if path.exists():
            if any(path.iterdir()):
                metadata = _read_metadata(path)
                if _matches(metadata, params):  # another process finished first
                    return given
                _remove_generated(path, metadata)
            else:
                path.rmdir()
        try:
            tmp.rename(path)
        except OSError:
            if _matches(_read_metadata(path), params):  # lost a race against another process
                return given
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return given
