"""Market-1501, and the Market-1501 folder layout that DukeMTMC, CUHK03-NP and the synthetic data share.

The layout is ``bounding_box_train/``, ``query/`` and ``bounding_box_test/``, one image per file
whose name starts with the identity and the camera; only the file-name pattern differs between
the datasets. Identity ``-1`` marks junk images (dropped) and ``0`` distractors (kept).

Examples:
    >>> MARKET1501_NAME_PATTERN.match("0002_c1s1_000451_03").groups()
    ('0002', '1')
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from stadb_reid.data.datasets.base import (
    ReIDDataset,
    ReIDSample,
    _camera_index,
    _list_images,
    _nonempty,
    _relabel,
    _require_dir,
    _resolve_root,
)
from stadb_reid.data.datasets.registry import register_dataset
from stadb_reid.errors import FileNameError

__all__ = ["MARKET1501_NAME_PATTERN", "load_market1501"]

_MARKET_SPLITS = (("train", "bounding_box_train"), ("query", "query"), ("gallery", "bounding_box_test"))
#: Folders that mark a Market-1501-style dataset root.
_MARKET_MARKERS = tuple(folder for _, folder in _MARKET_SPLITS)
#: Market-1501 image file name (without extension): groups identity and camera.
MARKET1501_NAME_PATTERN = re.compile(r"^(-?\d+)_c(\d+)s\d+_\d+_\d+$")
_MARKET_EXAMPLE = "0002_c1s1_000451_03.jpg"


def _read_market_split(
    folder: Path, pattern: re.Pattern[str], example: str, dataset: str
) -> tuple[ReIDSample, ...]:
    samples = []
    for path in _list_images(folder, dataset):
        match = pattern.match(path.stem)
        if match is None:
            raise FileNameError(
                f"{dataset}: cannot parse identity and camera from file name {path} "
                f"(expected a name like {example!r})",
                path,
            )
        pid = int(match.group(1))
        camid = _camera_index(int(match.group(2)), path, dataset)
        if pid == -1:
            continue  # junk image
        if pid < -1:
            raise FileNameError(f"{dataset}: negative identity {pid} in file name {path}", path)
        samples.append(ReIDSample(path, pid, camid))
    return _nonempty(tuple(samples), folder, dataset)


def _load_market_layout(root: Path, pattern: re.Pattern[str], example: str, dataset: str) -> ReIDDataset:
    """Read the three split folders of ``root``, naming the dataset ``dataset`` in errors."""
    splits = {}
    for split, folder in _MARKET_SPLITS:
        path = _require_dir(root / folder, dataset, f"{split} split")
        splits[split] = _read_market_split(path, pattern, example, dataset)
    return ReIDDataset(dataset, _relabel(splits["train"]), splits["query"], splits["gallery"])


@register_dataset("market1501")
def load_market1501(root: str | os.PathLike[str]) -> ReIDDataset:
    """Read Market-1501 (Zheng et al., ICCV 2015).

    Args:
        root: The folder holding ``bounding_box_train/``, ``query/`` and ``bounding_box_test/``,
            or a parent holding it as ``Market-1501-v15.09.15``, ``Market-1501`` or ``market1501``.

    Returns:
        751 training identities (12,936 images), 3,368 queries and 15,913 gallery images
        (19,732 files minus 3,819 junk) on the full dataset.

    Raises:
        DatasetNotFoundError: ``root`` or a split folder is missing.
        EmptyDatasetError: ``root`` or a split folder holds no images.
        FileNameError: An image name is not ``PPPP_cCsS_FFFFFF_NN.jpg``.

    Examples:
        >>> load_market1501("no/such/folder")
        Traceback (most recent call last):
        ...
        stadb_reid.errors.DatasetNotFoundError: market1501: dataset root no/such/folder does not exist
    """
    folder = _resolve_root(
        root, "market1501", _MARKET_MARKERS, ("Market-1501-v15.09.15", "Market-1501", "market1501")
    )
    return _load_market_layout(folder, MARKET1501_NAME_PATTERN, _MARKET_EXAMPLE, "market1501")
