"""The records every adapter returns, and the path-search and parsing helpers they share.

:class:`ReIDSample` is one image (path, identity, camera) and :class:`ReIDDataset` the three
splits. The helpers (names with a leading underscore, private to :mod:`stadb_reid.data.datasets`)
find a dataset folder below the given root, list its images, turn 1-based camera numbers into
0-based ids and relabel training identities; each raises a :class:`~stadb_reid.errors.ReIDDataError`
that names the offending path.

Examples:
    >>> samples = [ReIDSample(Path("a.jpg"), 7, 0), ReIDSample(Path("b.jpg"), 3, 1)]
    >>> [s.pid for s in _relabel(samples)]
    [1, 0]
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from stadb_reid.errors import DatasetNotFoundError, EmptyDatasetError, FileNameError

__all__ = ["IMAGE_EXTENSIONS", "ReIDDataset", "ReIDSample"]

#: File suffixes (lower case) that the adapters treat as images; other files are ignored.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp", ".tif", ".tiff"}
)


# -------------------------------------------------------------------------------------------- records
@dataclass(frozen=True)
class ReIDSample:
    """One image of a re-ID dataset.

    Attributes:
        path: Image file.
        pid: Identity label (relabelled to ``0 .. P-1`` in a training split, as in the files in
            query/gallery; ``0`` marks Market-1501-style distractors).
        camid: Camera index, starting at 0.

    Examples:
        >>> ReIDSample(Path("0002_c1s1_000451_03.jpg"), 2, 0).camid
        0
    """

    path: Path
    pid: int
    camid: int


@dataclass(frozen=True)
class ReIDDataset:
    """A re-ID dataset: a training split and the query/gallery evaluation splits.

    Attributes:
        name: Dataset name (registry name, e.g. ``"market1501"``).
        train: Training samples, identities relabelled to ``0 .. num_train_pids - 1``.
        query: Query samples, identities as in the files.
        gallery: Gallery samples, identities as in the files.

    Examples:
        >>> s = ReIDSample(Path("a.jpg"), 0, 1)
        >>> ds = ReIDDataset("toy", (s, ReIDSample(Path("b.jpg"), 1, 0)), (s,), (s,))
        >>> ds.num_train_pids, ds.num_train_cams
        (2, 2)
        >>> print(ds.summary())
        toy
          subset  |  ids | images | cameras
          train   |    2 |      2 |       2
          query   |    1 |      1 |       1
          gallery |    1 |      1 |       1
    """

    name: str
    train: tuple[ReIDSample, ...]
    query: tuple[ReIDSample, ...]
    gallery: tuple[ReIDSample, ...]

    @property
    def num_train_pids(self) -> int:
        """Number of training identities (the classifier size)."""
        return len({s.pid for s in self.train})

    @property
    def num_train_cams(self) -> int:
        """Number of distinct cameras in the training split."""
        return len({s.camid for s in self.train})

    def summary(self) -> str:
        """Return a small table of identities, images and cameras per split."""
        lines = [self.name, "  subset  |  ids | images | cameras"]
        for split, samples in (("train", self.train), ("query", self.query), ("gallery", self.gallery)):
            pids = len({s.pid for s in samples})
            cams = len({s.camid for s in samples})
            lines.append(f"  {split:<7} | {pids:>4} | {len(samples):>6} | {cams:>7}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------- path search
def _as_path(root: str | os.PathLike[str]) -> Path:
    return Path(root).expanduser()


def _check_root(root: Path, dataset: str) -> None:
    if not root.exists():
        raise DatasetNotFoundError(f"{dataset}: dataset root {root} does not exist", root)
    if not root.is_dir():
        raise DatasetNotFoundError(f"{dataset}: dataset root {root} is not a directory", root)
    if not any(root.iterdir()):
        raise EmptyDatasetError(f"{dataset}: dataset root {root} is empty", root)


def _resolve_root(
    root: str | os.PathLike[str], dataset: str, markers: Sequence[str], folder_names: Sequence[str]
) -> Path:
    """Return the dataset folder: ``root`` if it holds one of ``markers``, else a known child.

    Children (and grandchildren) whose lower-cased name is in ``folder_names`` are searched, so
    ``root`` may be the dataset folder or its parent. When nothing matches, ``root`` itself is
    returned and the caller reports the first missing split folder.
    """
    path = _as_path(root)
    _check_root(path, dataset)
    wanted = {n.lower() for n in folder_names}

    def has_marker(p: Path) -> bool:
        return any((p / m).exists() for m in markers)

    frontier = [path]
    for _ in range(3):  # root, children, grandchildren
        for p in frontier:
            if has_marker(p):
                return p
        frontier = [
            c for p in frontier for c in sorted(p.iterdir()) if c.is_dir() and c.name.lower() in wanted
        ]
    return path


def _require_dir(path: Path, dataset: str, what: str) -> Path:
    if not path.is_dir():
        raise DatasetNotFoundError(f"{dataset}: {what} folder {path} is missing", path)
    return path


def _require_file(path: Path, dataset: str, what: str) -> Path:
    if not path.is_file():
        raise DatasetNotFoundError(f"{dataset}: {what} {path} is missing", path)
    return path


def _list_images(folder: Path, dataset: str) -> list[Path]:
    """Sorted image files directly inside ``folder``; raises if there are none."""
    with os.scandir(folder) as entries:
        names = sorted(
            e.name for e in entries if e.is_file() and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS
        )
    if not names:
        exts = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise EmptyDatasetError(f"{dataset}: no images ({exts}) in {folder}", folder)
    return [folder / n for n in names]


# -------------------------------------------------------------------------------------------- parsing
def _camera_index(number: int, path: Path, dataset: str) -> int:
    """Convert a 1-based camera number from a file name to a 0-based camera id."""
    if number < 1:
        raise FileNameError(f"{dataset}: camera numbers start at 1, got {number} in {path}", path)
    return number - 1


def _relabel(samples: Iterable[ReIDSample]) -> tuple[ReIDSample, ...]:
    """Map identities to ``0 .. P-1`` in sorted order of the original ids."""
    items = list(samples)
    mapping = {pid: i for i, pid in enumerate(sorted({s.pid for s in items}))}
    return tuple(ReIDSample(s.path, mapping[s.pid], s.camid) for s in items)


def _nonempty(samples: tuple[ReIDSample, ...], folder: Path, dataset: str) -> tuple[ReIDSample, ...]:
    if not samples:
        raise EmptyDatasetError(f"{dataset}: no usable images in {folder} (only junk identities -1)", folder)
    return samples
