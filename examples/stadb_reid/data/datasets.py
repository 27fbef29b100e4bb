"""Person re-ID dataset adapters: read the standard folder layouts into :class:`ReIDDataset`.

An adapter only lists files and parses their names (it never opens an image, so building even
MSMT17 takes a fraction of a second); unreadable images are reported when
:class:`stadb_reid.data.ImageDataset` loads them. Every adapter returns the same structure:

* ``train``: samples with identities relabelled to ``0 .. P-1`` (sorted by original id), ready
  for a classification head;
* ``query`` and ``gallery``: samples with the identities exactly as in the files, so a query and
  its true matches share a label;
* camera ids start at 0 everywhere (Market-1501's ``c1`` is camera 0).

Junk images (identity ``-1``) are dropped; Market-1501/DukeMTMC distractors (identity ``0``) are
kept in the gallery, as in the standard evaluation protocol.

Supported layouts (``root`` may be the dataset folder itself or a parent folder that holds it
under one of its usual names, up to two levels deep, e.g. ``data/market1501/Market-1501-v15.09.15``):

============  =====================================================================================
name          layout
============  =====================================================================================
market1501    ``bounding_box_train/``, ``query/``, ``bounding_box_test/``; ``0002_c1s1_000451_03.jpg``
dukemtmc      same folders; ``0005_c2_f0046985.jpg``
cuhk03        CUHK03-NP: ``cuhk03-np/{labeled,detected}/{bounding_box_train,query,bounding_box_test}``
              with ``0001_c1_1.png`` (767 training / 700 test identities)
msmt17        ``MSMT17_V1/{train,test}/`` or ``MSMT17_V2/{mask_train_v2,mask_test_v2}/`` with
              ``list_{train,val,query,gallery}.txt``
viper         ``cam_a/``, ``cam_b/`` with ``NNN_ANGLE.bmp``; a seeded 316/316 identity split
folder        ``train/<pid>/``, ``query/<pid>/``, ``gallery/<pid>/`` (generic custom data)
synthetic     procedural persons generated into ``root`` (Market-1501 layout), see
              :mod:`stadb_reid.data.synthetic`
============  =====================================================================================

Errors are subclasses of :class:`ReIDDataError` that are also ``FileNotFoundError`` or
``ValueError``, and every message names the offending path.

Examples:
    >>> import shutil, tempfile
    >>> from PIL import Image
    >>> root = Path(tempfile.mkdtemp())
    >>> for split, names in {
    ...     "bounding_box_train": ["0002_c1s1_000451_03.jpg", "0002_c2s1_000301_01.jpg"],
    ...     "query": ["0003_c1s1_000151_01.jpg"],
    ...     "bounding_box_test": ["0003_c3s1_000176_02.jpg", "0000_c1s1_000001_00.jpg",
    ...                           "-1_c1s1_000002_00.jpg"],
    ... }.items():
    ...     (root / split).mkdir()
    ...     for name in names:
    ...         Image.new("RGB", (8, 16)).save(root / split / name)
    >>> ds = build_dataset("market1501", root)
    >>> ds.num_train_pids, ds.num_train_cams, len(ds.gallery)
    (1, 2, 2)
    >>> [(s.pid, s.camid) for s in ds.train]
    [(0, 0), (0, 1)]
    >>> sorted((s.pid, s.camid) for s in ds.gallery)  # junk -1 dropped, distractor 0 kept
    [(0, 0), (3, 2)]
    >>> shutil.rmtree(root)
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stadb_reid.errors import (
    DatasetFormatError,
    DatasetNotFoundError,
    DatasetOptionError,
    EmptyDatasetError,
    FileNameError,
    ReIDDataError,
    UnknownDatasetError,
    UnreadableImageError,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "DatasetFormatError",
    "DatasetNotFoundError",
    "DatasetOptionError",
    "EmptyDatasetError",
    "FileNameError",
    "ReIDDataError",
    "ReIDDataset",
    "ReIDSample",
    "UnknownDatasetError",
    "UnreadableImageError",
    "available_datasets",
    "build_dataset",
    "load_cuhk03",
    "load_dukemtmc",
    "load_folder",
    "load_market1501",
    "load_msmt17",
    "load_synthetic",
    "load_viper",
    "register_dataset",
]

#: File suffixes (lower case) that the adapters treat as images; other files are ignored.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp", ".tif", ".tiff"}
)


# --------------------------------------------------------------------------------------------- errors


# -------------------------------------------------------------------------------------------- records
@dataclass(frozen=True)
class ReIDSample:
    """One image of a re-ID dataset.

    Attributes:
        path: Image file.
        pid: Identity label (relabelled to ``0 .. P-1`` in a training split, as in the files in
            query/gallery; ``0`` marks Market-1501-style distractors).
        camid: Camera index, starting at 0.
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


# ------------------------------------------------------------------------------------------- helpers
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


# ---------------------------------------------------------------------------- Market-1501 style
_MARKET_SPLITS = (("train", "bounding_box_train"), ("query", "query"), ("gallery", "bounding_box_test"))
_MARKET_RE = re.compile(r"^(-?\d+)_c(\d+)s\d+_\d+_\d+$")
_DUKE_RE = re.compile(r"^(-?\d+)_c(\d+)_f\d+$")
_CUHK03_RE = re.compile(r"^(-?\d+)_c(\d+)_\d+$")


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
    splits = {}
    for split, folder in _MARKET_SPLITS:
        path = _require_dir(root / folder, dataset, f"{split} split")
        splits[split] = _read_market_split(path, pattern, example, dataset)
    return ReIDDataset(dataset, _relabel(splits["train"]), splits["query"], splits["gallery"])


_MARKET_MARKERS = tuple(folder for _, folder in _MARKET_SPLITS)


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
    """
    folder = _resolve_root(
        root, "market1501", _MARKET_MARKERS, ("Market-1501-v15.09.15", "Market-1501", "market1501")
    )
    return _load_market_layout(folder, _MARKET_RE, "0002_c1s1_000451_03.jpg", "market1501")


def load_dukemtmc(root: str | os.PathLike[str]) -> ReIDDataset:
    """Read DukeMTMC-reID (Zheng et al., ICCV 2017), which uses the Market-1501 folders.

    Args:
        root: The folder holding ``bounding_box_train/``, ``query/`` and ``bounding_box_test/``,
            or a parent holding it as ``DukeMTMC-reID`` or ``dukemtmc-reid``.

    Returns:
        702 training identities (16,522 images), 2,228 queries and 17,661 gallery images on
        the full dataset. File names are ``PPPP_cC_fFFFFFFF.jpg``.

    Raises:
        DatasetNotFoundError: ``root`` or a split folder is missing.
        EmptyDatasetError: ``root`` or a split folder holds no images.
        FileNameError: An image name is not ``PPPP_cC_fFFFFFFF.jpg``.
    """
    folder = _resolve_root(root, "dukemtmc", _MARKET_MARKERS, ("DukeMTMC-reID", "dukemtmc", "dukemtmcreid"))
    return _load_market_layout(folder, _DUKE_RE, "0005_c2_f0046985.jpg", "dukemtmc")


def load_cuhk03(root: str | os.PathLike[str], *, labeled: bool = True) -> ReIDDataset:
    """Read CUHK03 under the new protocol (CUHK03-NP, Zhong et al., CVPR 2017).

    Args:
        root: The ``cuhk03-np`` folder (holding ``labeled/`` and ``detected/``, each with
            ``bounding_box_train/``, ``query/`` and ``bounding_box_test/``), or a parent holding it
            as ``cuhk03-np``, ``cuhk03_np`` or ``cuhk03`` (e.g. ``data/cuhk03/cuhk03-np``).
        labeled: Read the manually labelled boxes (``labeled/``) or, if ``False``, the
            detector boxes (``detected/``).

    Returns:
        767 training identities and 700 test identities; 7,368/1,400/5,328 (labeled) or
        7,365/1,400/5,332 (detected) train/query/gallery images. File names are
        ``PPPP_cC_N.png`` with cameras ``c1``/``c2``.

    Raises:
        DatasetNotFoundError: ``root``, the variant folder or a split folder is missing.
        EmptyDatasetError: ``root`` or a split folder holds no images.
        FileNameError: An image name is not ``PPPP_cC_N.png``.
    """
    name = "cuhk03"
    folder = _resolve_root(
        root, name, ("labeled", "detected"), ("cuhk03-np", "cuhk03_np", "cuhk03np", "cuhk03")
    )
    variant = _require_dir(folder / ("labeled" if labeled else "detected"), name, "variant")
    return _load_market_layout(variant, _CUHK03_RE, "0001_c1_1.png", name)


# ----------------------------------------------------------------------------------------- MSMT17
# V1 and V2 share the list files and the image naming; only the image folder names differ.
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


# ------------------------------------------------------------------------------------------ VIPeR
_VIPER_RE = re.compile(r"^(\d+)_(\d+)$")


def _split_order(items: list[int], seed: int) -> list[int]:
    """Fisher-Yates shuffle driven by ``random.Random.random``, whose stream Python guarantees."""
    import random

    rng = random.Random(seed)
    out = list(items)
    for i in range(len(out) - 1, 0, -1):
        j = int(rng.random() * (i + 1))
        out[i], out[j] = out[j], out[i]
    return out


def load_viper(
    root: str | os.PathLike[str], *, split_seed: int = 0, num_train_ids: int | None = None
) -> ReIDDataset:
    """Read VIPeR (Gray et al., PETS 2007) with a seeded random half/half identity split.

    Args:
        root: The folder holding ``cam_a/`` and ``cam_b/`` (file names ``NNN_ANGLE.bmp``, the
            same ``NNN`` being the same person), or a parent holding it as ``VIPeR``.
        split_seed: Seed of the identity split; the same seed gives the same split on every
            platform. The usual protocol averages 10 splits (seeds 0..9).
        num_train_ids: Training identities; default half of them (316 of 632).

    Returns:
        Training samples: both cameras of the training identities (632 images). Query: the
        ``cam_a`` images of the test identities (316), gallery: their ``cam_b`` images (316).
        ``cam_a`` is camera 0 and ``cam_b`` camera 1.

    Raises:
        DatasetNotFoundError: ``root``, ``cam_a/`` or ``cam_b/`` is missing.
        EmptyDatasetError: ``root`` or a camera folder holds no images.
        FileNameError: An image name is not ``NNN_ANGLE.bmp``.
        ValueError: ``num_train_ids`` leaves no training or no test identity.
    """
    name = "viper"
    folder = _resolve_root(root, name, ("cam_a", "cam_b"), ("VIPeR", "viper"))
    by_cam: list[list[ReIDSample]] = []
    for camid, cam in enumerate(("cam_a", "cam_b")):
        samples = []
        for path in _list_images(_require_dir(folder / cam, name, "camera"), name):
            match = _VIPER_RE.match(path.stem)
            if match is None:
                raise FileNameError(
                    f"viper: cannot parse the identity from file name {path} "
                    "(expected a name like '000_45.bmp')",
                    path,
                )
            samples.append(ReIDSample(path, int(match.group(1)), camid))
        by_cam.append(samples)
    pids = sorted({s.pid for samples in by_cam for s in samples})
    n_train = len(pids) // 2 if num_train_ids is None else num_train_ids
    if isinstance(n_train, bool) or not isinstance(n_train, int) or not 1 <= n_train < len(pids):
        raise ValueError(
            f"num_train_ids must be an integer in [1, {len(pids) - 1}] for {folder}, got {num_train_ids!r}"
        )
    train_ids = set(_split_order(pids, split_seed)[:n_train])
    train = tuple(s for samples in by_cam for s in samples if s.pid in train_ids)
    query = tuple(s for s in by_cam[0] if s.pid not in train_ids)
    gallery = tuple(s for s in by_cam[1] if s.pid not in train_ids)
    return ReIDDataset(name, _relabel(sorted(train, key=lambda s: (s.pid, s.camid))), query, gallery)


# ------------------------------------------------------------------------------------ generic folder
_FOLDER_SPLITS = ("train", "query", "gallery")
_CAMERA_TOKEN_RE = re.compile(r"(?:^|_)c(\d+)(?=_|$)")
_DEFAULT_FOLDER_CAMERA = {"train": 0, "query": 0, "gallery": 1}


def _folder_camera(path: Path, split: str) -> int:
    match = _CAMERA_TOKEN_RE.search(path.stem)
    if match is None:
        return _DEFAULT_FOLDER_CAMERA[split]
    return _camera_index(int(match.group(1)), path, "folder")


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

    Raises:
        DatasetNotFoundError: ``root`` or a split folder is missing.
        EmptyDatasetError: ``root`` or a split holds no images.
        DatasetFormatError: An identity folder name is not a non-negative integer, or an image
            lies directly in a split folder.
        FileNameError: A camera token is ``c0``.
    """
    name = "folder"
    folder = _as_path(root)
    _check_root(folder, name)
    splits: dict[str, tuple[ReIDSample, ...]] = {}
    for split in _FOLDER_SPLITS:
        split_dir = _require_dir(folder / split, name, f"{split} split")
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
        splits[split] = tuple(samples)
    return ReIDDataset(name, _relabel(splits["train"]), splits["query"], splits["gallery"])


# -------------------------------------------------------------------------------------- synthetic
def load_synthetic(root: str | os.PathLike[str], **options: Any) -> ReIDDataset:
    """Generate the procedural dataset into ``root`` if needed, then read it as Market-1501.

    Args:
        root: Target folder; generated when absent or empty, reused when its ``synthetic.json``
            matches the options, regenerated when it was produced with other options (refused if
            the folder holds files the generator did not write).
        **options: Keyword arguments of :func:`stadb_reid.data.synthetic.generate_synthetic_reid`.

    Returns:
        The dataset, named ``"synthetic"``.
    """
    from stadb_reid.data.synthetic import generate_synthetic_reid

    _check_options(generate_synthetic_reid, "synthetic", root, options)
    folder = generate_synthetic_reid(root, **options)
    return _load_market_layout(folder, _MARKET_RE, "0002_c1s1_000451_03.jpg", "synthetic")


# --------------------------------------------------------------------------------------- registry
DatasetFactory = Callable[..., ReIDDataset]

_REGISTRY: dict[str, DatasetFactory] = {
    "market1501": load_market1501,
    "dukemtmc": load_dukemtmc,
    "cuhk03": load_cuhk03,
    "msmt17": load_msmt17,
    "viper": load_viper,
    "folder": load_folder,
    "synthetic": load_synthetic,
}


def register_dataset(name: str, factory: DatasetFactory, *, overwrite: bool = False) -> None:
    """Add an adapter ``factory(root, **options) -> ReIDDataset`` under ``name``.

    Raises:
        ValueError: ``name`` is taken and ``overwrite`` is false.
    """
    key = name.lower()
    if key in _REGISTRY and not overwrite:
        raise ValueError(f"dataset {name!r} is already registered")
    _REGISTRY[key] = factory


def available_datasets() -> list[str]:
    """Names accepted by :func:`build_dataset`, sorted.

    Examples:
        >>> available_datasets()
        ['cuhk03', 'dukemtmc', 'folder', 'market1501', 'msmt17', 'synthetic', 'viper']
    """
    return sorted(_REGISTRY)


def build_dataset(name: str, root: str | os.PathLike[str], **options: Any) -> ReIDDataset:
    """Build the dataset registered as ``name`` (case-insensitive) from ``root``.

    Args:
        name: One of :func:`available_datasets`.
        root: Dataset folder (see the adapter for what it may point at).
        **options: Adapter options: ``labeled`` (cuhk03), ``use_val`` (msmt17),
            ``split_seed``/``num_train_ids`` (viper), generator options (synthetic).

    Raises:
        UnknownDatasetError: Unknown ``name`` (a ``ValueError``).
        DatasetOptionError: An option the adapter does not take (a ``TypeError``).
    """
    factory = _REGISTRY.get(name.lower())
    if factory is None:
        raise UnknownDatasetError(f"unknown dataset {name!r}; available: {', '.join(available_datasets())}")
    _check_options(factory, name, root, options)
    return factory(root, **options)


def _check_options(
    function: Callable[..., Any], name: str, root: str | os.PathLike[str], options: dict[str, Any]
) -> None:
    """Raise :class:`DatasetOptionError` unless ``function(root, **options)`` fits its signature."""
    try:
        inspect.signature(function).bind(root, **options)
    except TypeError as error:
        raise DatasetOptionError(f"dataset {name!r} options (data.options): {error}") from None
