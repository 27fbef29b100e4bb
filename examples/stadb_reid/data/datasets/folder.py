"""A generic custom dataset: one folder per split, one sub-folder per identity.

Examples:
    >>> from pathlib import Path
    >>> _folder_camera(Path("0007_c2_0031.jpg"), "query"), _folder_camera(Path("frame.jpg"), "gallery")
    (1, 1)
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from stadb_reid.data.datasets.base import (
    IMAGE_EXTENSIONS,
    ReIDDataset,
    ReIDSample,
    _as_path,
    _camera_index,
    _check_root,
    _relabel,
    _require_dir,
)
from stadb_reid.data.datasets.registry import register_dataset
from stadb_reid.errors import DatasetFormatError, EmptyDatasetError

__all__ = ["load_folder"]

_FOLDER_SPLITS = ("train", "query", "gallery")
_CAMERA_TOKEN_RE = re.compile(r"(?:^|_)c(\d+)(?=_|$)")
_DEFAULT_FOLDER_CAMERA = {"train": 0, "query": 0, "gallery": 1}


def _folder_camera(path: Path, split: str) -> int:
    match = _CAMERA_TOKEN_RE.search(path.stem)
    if match is None:
        return _DEFAULT_FOLDER_CAMERA[split]
    return _camera_index(int(match.group(1)), path, "folder")


def _read_split(split_dir: Path, split: str) -> tuple[ReIDSample, ...]:
    samples = []
    for entry in sorted(split_dir.iterdir()):
        if not entry.is_dir():
            if entry.suffix.lower() in IMAGE_EXTENSIONS:
                raise DatasetFormatError(
                    f"folder: image {entry} lies directly in the split folder; "
                    f"put it in an identity folder {split_dir}/<pid>/",
                    entry,
                )
            continue
        if not re.fullmatch(r"\d+", entry.name):
            raise DatasetFormatError(
                f"folder: identity folder name must be a non-negative integer, got {entry}", entry
            )
        pid = int(entry.name)
        for path in sorted(entry.iterdir()):
            if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
                samples.append(ReIDSample(path, pid, _folder_camera(path, split)))
    if not samples:
        raise EmptyDatasetError(f"folder: no images in {split_dir}/<pid>/ folders", split_dir)
    return tuple(samples)


@register_dataset("folder")
def load_folder(root: str | os.PathLike[str]) -> ReIDDataset:
    """Read a custom dataset laid out as one folder per split and one sub-folder per identity.

    Layout::

        root/train/<pid>/<image>     root/query/<pid>/<image>     root/gallery/<pid>/<image>

    * ``<pid>`` is a non-negative integer (leading zeros allowed): query and gallery folders with
      the same number are the same person. Training identities are relabelled to ``0 .. P-1``.
    * The camera is an underscore-separated token ``c<N>`` in the file name (``N`` >= 1, stored
      as ``N - 1``), e.g. ``0007_c2_0031.jpg``, ``c3_frame12.png`` or ``img_c1.jpg``.
    * Without a camera token an image is in camera 0, except gallery images, which are in
      camera 1. Standard evaluation ignores gallery images from the query's camera, so data
      without camera information keeps every true match.
    * Non-image files and deeper sub-folders are ignored.

    Args:
        root: The folder holding ``train/``, ``query/`` and ``gallery/``.

    Returns:
        The dataset, named ``"folder"``.

    Raises:
        DatasetNotFoundError: ``root`` or a split folder is missing.
        EmptyDatasetError: ``root`` or a split holds no images.
        DatasetFormatError: An identity folder name is not a non-negative integer, or an image
            lies directly in a split folder.
        FileNameError: A camera token is ``c0``.

    Examples:
        >>> load_folder("no/such/folder")
        Traceback (most recent call last):
        ...
        stadb_reid.errors.DatasetNotFoundError: folder: dataset root no/such/folder does not exist
    """
    name = "folder"
    folder = _as_path(root)
    _check_root(folder, name)
    splits = {
        split: _read_split(_require_dir(folder / split, name, f"{split} split"), split)
        for split in _FOLDER_SPLITS
    }
    return ReIDDataset(name, _relabel(splits["train"]), splits["query"], splits["gallery"])
