"""Celeb-reID: long-term re-ID with clothes changes (Huang et al., IJCNN 2019; github.com/Huang-3/Celeb-reID).

The published layout is ``train/``, ``query/`` and ``gallery/``, one ``.jpg`` per file named
``<identity>_<n>_<x>.jpg``. The dataset has no camera labels; the dataset's own loader
(``reid/data_loader_1stream.py``, its pattern ``<identity>_<digit>``) reads the first digit of ``<n>`` as
the camera, and its evaluation (``reid/evaluation_metrics/ranking.py``) drops a gallery image whose
identity and that digit equal the query's. ``camera_filter=False`` gives every query camera 0 and
every gallery image camera 1 instead, so that no gallery image is dropped.

Examples:
    >>> _CELEB_RE.match("12_3_0").groups()
    ('12', '3')
    >>> _CELEB_RE.match("12_34_0").groups()  # the first digit of the second field
    ('12', '3')
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from stadb_reid.data.datasets.base import (
    ReIDDataset,
    ReIDSample,
    _list_images,
    _nonempty,
    _relabel,
    _require_dir,
    _resolve_root,
)
from stadb_reid.data.datasets.registry import register_dataset
from stadb_reid.errors import DatasetOptionError, FileNameError

__all__ = ["load_celeb_reid"]

_CELEB_SPLITS = ("train", "query", "gallery")
_CELEB_RE = re.compile(r"^(-?\d+)_(\d)\d*(?:_.*)?$")
_CELEB_EXAMPLE = "12_3_0.jpg"


def _read_celeb_split(folder: Path, split: str, camera_filter: bool) -> tuple[ReIDSample, ...]:
    """The samples of one split; camera: the file name's digit, or the split (query 0, else 1)."""
    split_camera = 0 if split == "query" else 1
    samples = []
    for path in _list_images(folder, "celeb_reid"):
        match = _CELEB_RE.match(path.stem)
        if match is None:
            raise FileNameError(
                f"celeb_reid: cannot parse the identity from file name {path} "
                f"(expected a name like {_CELEB_EXAMPLE!r})",
                path,
            )
        pid = int(match.group(1))
        if pid == -1:
            continue  # junk image, as the dataset's loader skips it
        if pid < -1:
            raise FileNameError(f"celeb_reid: negative identity {pid} in file name {path}", path)
        camid = int(match.group(2)) if camera_filter else split_camera
        samples.append(ReIDSample(path, pid, camid))
    return _nonempty(tuple(samples), folder, "celeb_reid")


@register_dataset("celeb_reid")
def load_celeb_reid(root: str | os.PathLike[str], *, camera_filter: bool = True) -> ReIDDataset:
    """Read Celeb-reID (Huang et al., IJCNN 2019), or its light version in the same layout.

    Args:
        root: The folder holding ``train/``, ``query/`` and ``gallery/``, or a parent holding it as
            ``Celeb-reID`` or ``Celeb-reID-light``.
        camera_filter: ``True`` (the dataset's own code): the first digit of a file name's second
            field is its camera, so a gallery image with the query's identity and digit is left out of
            that query's ranking. ``False``: query images are camera 0 and gallery images camera 1,
            so every gallery image is ranked.

    Returns:
        632 training identities (20,208 images), 2,972 queries and 11,006 gallery images of 420
        other identities on the full dataset (the split published with it). Camera ids are 0 to 9
        (the digit, 0-based as it stands) with the filter, 0 and 1 without.

    Raises:
        DatasetNotFoundError: ``root`` or a split folder is missing.
        EmptyDatasetError: ``root`` or a split folder holds no images.
        FileNameError: An image name is not ``<identity>_<n>_<x>.jpg``.
        DatasetOptionError: ``camera_filter`` is not a bool (a ``TypeError``).

    Examples:
        >>> load_celeb_reid("no/such/folder")
        Traceback (most recent call last):
        ...
        stadb_reid.errors.DatasetNotFoundError: celeb_reid: dataset root no/such/folder does not exist
    """
    if not isinstance(camera_filter, bool):
        raise DatasetOptionError(
            f"dataset 'celeb_reid' options (data.options): camera_filter must be true or false, "
            f"got {camera_filter!r}"
        )
    folder = _resolve_root(
        root, "celeb_reid", _CELEB_SPLITS, ("Celeb-reID", "Celeb-reID-light", "celeb_reid")
    )
    splits = {
        split: _read_celeb_split(
            _require_dir(folder / split, "celeb_reid", f"{split} split"), split, camera_filter
        )
        for split in _CELEB_SPLITS
    }
    return ReIDDataset("celeb_reid", _relabel(splits["train"]), splits["query"], splits["gallery"])
