"""Drawing one person: legs and lower garment, arms, torso with its pattern, bags, head and hair.

The figure is built from slanted bars, rectangles and ellipses scaled by the person's height on
the image; the view (front, back or side), the stride and the arm swing vary per image.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from stadb_reid.data.synthetic.canvas import Array, _Canvas
from stadb_reid.data.synthetic.identities import _HAIR, _PALETTE, _SKIN, _Camera, _Identity

__all__: list[str] = []


def _colour(index: int, identity: _Identity) -> Array:
    colour: Array = np.clip(_PALETTE[index] + np.asarray(identity.tint, np.float32), 0.0, 1.0)
    return colour


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
