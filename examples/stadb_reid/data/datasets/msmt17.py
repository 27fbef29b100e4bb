"""MSMT17, versions 1 and 2: identities from the list files, cameras from the image names.

V1 and V2 share the list files and the image naming; only the image folder names differ.

Examples:
    >>> _MSMT_NAME_RE.match("0000_000_01_0303morning_0015_0.jpg").group(3)
    '01'
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from stadb_reid.data.datasets.base import (
    ReIDDataset,
    ReIDSample,
    _camera_index,
    _relabel,
    _require_file,
    _resolve_root,
)
from stadb_reid.data.datasets.registry import register_dataset
from stadb_reid.errors import DatasetFormatError, DatasetNotFoundError, EmptyDatasetError, FileNameError

__all__ = ["load_msmt17"]

_MSMT_IMAGE_DIRS = {"train": ("train", "mask_train_v2"), "test": ("test", "mask_test_v2")}
_MSMT_NAME_RE = re.compile(r"^(\d+)_(\d+)_(\d+)_")


def _msmt_image_dir(root: Path, kind: str) -> Path:
    for name in _MSMT_IMAGE_DIRS[kind]:
        if (root / name).is_dir():
            return root / name
    v1, v2 = _MSMT_IMAGE_DIRS[kind]
    raise DatasetNotFoundError(
        f"msmt17: {kind} image folder {root / v1} (V1) or {root / v2} (V2) is missing", root / v1
    )


def _read_msmt_list(list_path: Path, image_dir: Path) -> list[ReIDSample]:
    samples = []
    with list_path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2 or not re.fullmatch(r"\d+", fields[1]):
                raise DatasetFormatError(
                    f"msmt17: line {line_no} of {list_path} is {line.strip()!r}, "
                    "expected 'relative/path.jpg pid'",
                    list_path,
                )
            path = image_dir / fields[0]
            match = _MSMT_NAME_RE.match(path.name)
            if match is None:
                raise FileNameError(
                    f"msmt17: cannot parse the camera from file name {path} (line {line_no} of {list_path}; "
                    "expected a name like '0000_000_01_0303morning_0015_0.jpg')",
                    path,
                )
            samples.append(
                ReIDSample(path, int(fields[1]), _camera_index(int(match.group(3)), path, "msmt17"))
            )
    if not samples:
        raise EmptyDatasetError(f"msmt17: list file {list_path} lists no images", list_path)
    return samples


@register_dataset("msmt17")
def load_msmt17(root: str | os.PathLike[str], *, use_val: bool = True) -> ReIDDataset:
    """Read MSMT17 (Wei et al., CVPR 2018), version 1 or 2.

    The identity of every image comes from the list files (lines ``relative/path.jpg pid``,
    paths relative to the train or test image folder). The camera comes from the image file
    name ``PPPP_SSS_CC_<date><time>_FFFF_N.jpg`` (e.g. ``0000_000_01_0303morning_0015_0.jpg``):
    the third underscore-separated field ``CC`` is the camera number 1..15, stored as 0..14.
    Both versions use this naming; they differ in the image folder names (V1: ``train/``,
    ``test/``; V2, with blurred faces: ``mask_train_v2/``, ``mask_test_v2/``), and either is
    accepted.

    Args:
        root: The ``MSMT17_V1`` or ``MSMT17_V2`` folder (holding the list files), or a parent
            holding it (also as ``msmt17/MSMT17_V2``).
        use_val: Add ``list_val.txt`` to the training split (as torchreid does): 32,621 training
            images of 1,041 identities instead of 30,248.

    Returns:
        1,041 training identities, 11,659 queries and 82,161 gallery images (3,060 test ids).

    Raises:
        DatasetNotFoundError: ``root``, an image folder or a list file is missing.
        EmptyDatasetError: ``root`` is empty or a list file lists nothing.
        DatasetFormatError: A list file line is not ``path pid``.
        FileNameError: An image name has no camera field.

    Examples:
        >>> load_msmt17("no/such/folder", use_val=False)
        Traceback (most recent call last):
        ...
        stadb_reid.errors.DatasetNotFoundError: msmt17: dataset root no/such/folder does not exist
    """
    name = "msmt17"
    folder = _resolve_root(
        root, name, ("list_train.txt", "list_query.txt"), ("MSMT17_V1", "MSMT17_V2", "msmt17")
    )
    train_dir = _msmt_image_dir(folder, "train")
    test_dir = _msmt_image_dir(folder, "test")
    lists = ["list_train.txt", *(["list_val.txt"] if use_val else [])]
    train = [
        s for f in lists for s in _read_msmt_list(_require_file(folder / f, name, "list file"), train_dir)
    ]
    query = _read_msmt_list(_require_file(folder / "list_query.txt", name, "list file"), test_dir)
    gallery = _read_msmt_list(_require_file(folder / "list_gallery.txt", name, "list file"), test_dir)
    return ReIDDataset(name, _relabel(train), tuple(query), tuple(gallery))
