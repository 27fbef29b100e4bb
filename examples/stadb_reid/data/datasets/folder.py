"""A generic custom dataset: one folder per split, one sub-folder per identity.

Examples:
    >>> from pathlib import Path
    >>> _folder_camera(Path("0007_c2_0031.jpg"), "query"), _folder_camera(Path("frame.jpg"), "gallery")
    (1, 1)
"""

from __future__ import annotations

import os
import re
import warnings
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
from stadb_reid.errors import DatasetFormatError, EmptyDatasetError, ReIDWarning

__all__ = ["load_folder"]

_FOLDER_SPLITS = ("train", "query", "gallery")
_CAMERA_TOKEN_RE = re.compile(r"(?:^|_)c(\d+)(?=_|$)")
_DEFAULT_FOLDER_CAMERA = {"train": 0, "query": 0, "gallery": 1}
# ASCII digits only: ``\d`` would also take the full-width one (U+FF11) and read it as identity 1.
_PID_RE = re.compile(r"[0-9]+")


def _folder_camera(path: Path, split: str) -> int:
    match = _CAMERA_TOKEN_RE.search(path.stem)
    if match is None:
        return _DEFAULT_FOLDER_CAMERA[split]
    return _camera_index(int(match.group(1)), path, "folder")


def _identity_folders(split_dir: Path, split: str) -> list[tuple[Path, int]]:
    folders = []
    for entry in sorted(split_dir.iterdir()):
        if not entry.is_dir():
            if entry.suffix.lower() in IMAGE_EXTENSIONS:
                raise DatasetFormatError(
                    f"folder: image {entry} lies directly in the split folder; "
                    f"put it in an identity folder {split_dir}/<pid>/",
                    entry,
                )
            continue
        if not _PID_RE.fullmatch(entry.name):
            raise DatasetFormatError(
                f"folder: identity folder name must be a non-negative integer in the digits 0-9, "
                f"got {str(entry)!r}",
                entry,
            )
        folders.append((entry, int(entry.name)))
    return folders


def _check_spellings(folders: dict[str, list[tuple[Path, int]]], root: Path) -> None:
    """Refuse two folder names of one identity (``1``, ``01``), in one split or across splits."""
    places: dict[int, list[str]] = {}
    for split, split_folders in folders.items():
        for folder, pid in split_folders:
            places.setdefault(pid, []).append(f"{split}/{folder.name}")
    clashes = [found for found in places.values() if len({place.split("/")[1] for place in found}) > 1]
    if clashes:
        listed = "; ".join(", ".join(found) for found in clashes)
        raise DatasetFormatError(
            f"folder: identity folders of different names would be one identity ({listed}); "
            "give each identity one folder name, the same in every split",
            root,
        )


def _read_split(split_dir: Path, split: str, folders: list[tuple[Path, int]]) -> tuple[ReIDSample, ...]:
    samples = []
    for folder, pid in folders:
        for path in sorted(folder.iterdir()):
            # a broken link stays in, so the image check reports it instead of the image going missing
            if (path.is_file() or path.is_symlink()) and path.suffix.lower() in IMAGE_EXTENSIONS:
                samples.append(ReIDSample(path, pid, _folder_camera(path, split)))
    if not samples:
        raise EmptyDatasetError(f"folder: no images in {split_dir}/<pid>/ folders", split_dir)
    return tuple(samples)


def _warn_outside_links(root: Path, samples: list[ReIDSample]) -> None:
    """Warn once if images are, or lie in folders that are, links to places outside ``root``."""
    inside = Path(os.path.realpath(root))
    outside: dict[Path, Path] = {}
    for sample in samples:
        parts = (sample.path, sample.path.parent, sample.path.parent.parent)
        if any(part.is_symlink() for part in parts):
            target = Path(os.path.realpath(sample.path))  # no error on a loop, unlike Path.resolve
            if not target.is_relative_to(inside):
                outside[sample.path] = target
    if outside:
        first, target = next(iter(outside.items()))
        warnings.warn(
            f"folder: {len(outside)} of {len(samples)} images are links to files outside {str(root)!r} "
            f"(first: {str(first)!r} -> {str(target)!r}); they are read from there",
            ReIDWarning,
            stacklevel=3,
        )


@register_dataset("folder")
def load_folder(root: str | os.PathLike[str]) -> ReIDDataset:
    """Read a custom dataset laid out as one folder per split and one sub-folder per identity.

    Layout::

        root/train/<pid>/<image>     root/query/<pid>/<image>     root/gallery/<pid>/<image>

    * ``<pid>`` is a non-negative integer in the digits 0-9, leading zeros allowed: query and
      gallery folders of the same name are the same person. An identity has one folder name
      everywhere: ``1`` next to ``01`` (in one split or across splits) is refused, naming both,
      rather than merged. Training identities are relabelled to ``0 .. P-1``.
    * The camera is an underscore-separated token ``c<N>`` in the file name (``N`` >= 1, stored
      as ``N - 1``), e.g. ``0007_c2_0031.jpg``, ``c3_frame12.png`` or ``img_c1.jpg``.
    * Without a camera token an image is in camera 0, except gallery images, which are in
      camera 1. Standard evaluation ignores gallery images from the query's camera, so data
      without camera information keeps every true match.
    * Non-image files and deeper sub-folders are ignored.
    * Images (or split or identity folders) that are symbolic links to places outside ``root``
      are read, with one :class:`~stadb_reid.errors.ReIDWarning` naming how many and the first.

    Args:
        root: The folder holding ``train/``, ``query/`` and ``gallery/``.

    Returns:
        The dataset, named ``"folder"``.

    Raises:
        DatasetNotFoundError: ``root`` or a split folder is missing.
        EmptyDatasetError: ``root`` or a split holds no images.
        DatasetFormatError: An identity folder name is not a non-negative integer in 0-9, two
            folder names are one identity, or an image lies directly in a split folder.
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
    split_dirs = {split: _require_dir(folder / split, name, f"{split} split") for split in _FOLDER_SPLITS}
    folders = {split: _identity_folders(split_dir, split) for split, split_dir in split_dirs.items()}
    _check_spellings(folders, folder)
    splits = {split: _read_split(split_dirs[split], split, folders[split]) for split in _FOLDER_SPLITS}
    _warn_outside_links(folder, [sample for samples in splits.values() for sample in samples])
    return ReIDDataset(name, _relabel(splits["train"]), splits["query"], splits["gallery"])
