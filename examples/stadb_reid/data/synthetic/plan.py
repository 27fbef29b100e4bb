"""The generator's parameters and what they give: the checked parameters and every image to write.

Examples:
    >>> params = _checked_params({"num_train_identities": 1, "num_test_identities": 1, "num_cameras": 2,
    ...     "images_per_identity_per_camera": 2, "num_distractors": 1, "height": 16, "width": 8,
    ...     "seed": 0, "difficulty": 1})
    >>> images = [(split, rel) for split, rel, *_ in _images(params)]
    >>> len(images), images[0]
    (9, ('train', 'bounding_box_train/0001_c1s1_000000_00.jpg'))
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from stadb_layers.checks import check_in_interval, check_int
from stadb_reid.data.synthetic.identities import _identities, _Identity, _random_identity

__all__: list[str] = []

_SPLIT_DIRS = ("bounding_box_train", "query", "bounding_box_test")

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


def _check_bounded_int(value: int, name: str, low: int, high: int | None) -> int:
    checked = check_int(value, name, low)
    if high is not None:
        check_in_interval(checked, name, low, high, low_closed=True, high_closed=True)
    return checked


def _check_difficulty(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"difficulty must be a number in [0, 2], got {value!r}")
    return check_in_interval(value, "difficulty", 0, 2, low_closed=True, high_closed=True)


def _checked_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """The generator parameters after range checks (``ValueError``); ``KeyError`` if one is missing."""
    out: dict[str, Any] = {
        name: _check_bounded_int(params[name], name, *bounds) for name, bounds in _INT_BOUNDS.items()
    }
    out["difficulty"] = _check_difficulty(params["difficulty"])
    if out["num_train_identities"] + out["num_test_identities"] > 9999:
        raise ValueError("num_train_identities + num_test_identities must be at most 9999 (4-digit ids)")
    return out


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
