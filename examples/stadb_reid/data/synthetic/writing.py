"""Writing the dataset: render every image into a temporary folder, then move it into place.

:func:`generate_synthetic_reid` decides whether ``root`` can be reused, must be replaced or must
be left alone, and ``_write_dataset`` renders the images and writes ``synthetic.json``.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from stadb_reid.data.synthetic._generated_files import make_temp_dir, remove_stale_temp_dirs
from stadb_reid.data.synthetic.canvas import _Canvas
from stadb_reid.data.synthetic.identities import _camera
from stadb_reid.data.synthetic.metadata import (
    _FORMAT_VERSION,
    _GENERATOR,
    METADATA_FILE,
    _matches,
    _read_metadata,
    _remove_generated,
)
from stadb_reid.data.synthetic.plan import _SPLIT_DIRS, _checked_params, _images
from stadb_reid.data.synthetic.rendering import _render
from stadb_reid.errors import StaleDatasetError

__all__ = ["generate_synthetic_reid"]


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
