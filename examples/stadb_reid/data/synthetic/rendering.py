"""One image: the camera's background, the person, an occluder, then the camera's effects.

:func:`render_person` draws a single image the way the generator does, for inspection and tests.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from stadb_reid.data.synthetic.canvas import _Canvas
from stadb_reid.data.synthetic.identities import (
    _PALETTE,
    _VIEWS,
    _Camera,
    _camera,
    _Identity,
    _muted,
    _random_identity,
)
from stadb_reid.data.synthetic.person import _draw_person

__all__ = ["render_person"]


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
