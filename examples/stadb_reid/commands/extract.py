"""Embedding every image of a folder with the model of a checkpoint or a model folder, in batches.

The images are found recursively (suffixes of :data:`~stadb_reid.data.datasets.base.IMAGE_EXTENSIONS`,
any case) and sorted by their path relative to the folder. ``FEATS.npy`` receives the ``(N, D)`` float32
embeddings and ``FEATS.txt`` beside it the relative paths (``/``-separated), one a line, in row order.
The embedding is :class:`~stadb_reid.inference.ReIDExtractor`'s, fed by a ``DataLoader`` so images
load in worker processes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from stadb_layers.checks import check_non_negative_int, check_positive_int

from ..config import Config
from ..config.schema import usable_cpus
from ..data import ReIDSample
from ..data.datasets.base import IMAGE_EXTENSIONS
from ..data.loaders import ImageDataset, read_image
from ..engine.build import resolve_device
from ..errors import DatasetNotFoundError, EmptyDatasetError, UnreadableImageError
from ..inference import Precision, ReIDExtractor
from ..model import STADBNet
from ..model.folder.config import trained_model_config
from ..model.folder.files import load_model_folder
from .evaluate import load_trained_model

__all__ = ["decoding_workers", "extract_folder", "find_images"]


def decoding_workers(device: torch.device) -> int:
    """Processes that decode and resize images by default: the CPUs the network leaves free, at most 8.

    On the CPU the network's threads (``torch.get_num_threads()``) take their cores, on CUDA the
    process takes one. With none free the images are decoded in this process: on a 2-core AMD EPYC,
    two decoding processes beside the network's two threads made ``index`` 91 % as fast as the
    network on images in memory, decoding in the network's process 98 % (``benchmarks/RESULTS.md``).
    """
    busy = torch.get_num_threads() if device.type == "cpu" else 1
    return min(max(usable_cpus() - busy, 0), 8)


def find_images(folder: Path) -> list[Path]:
    """The image files under ``folder``, recursively, sorted by their relative path.

    Args:
        folder: The folder to search.

    Returns:
        Paths relative to ``folder``.

    Raises:
        DatasetNotFoundError: ``folder`` does not exist or is not a folder.
        EmptyDatasetError: ``folder`` holds no image file.

    Examples:
        >>> import shutil, tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> for name in ("b/2.png", "a/1.JPG", "notes.txt"):
        ...     (folder / name).parent.mkdir(exist_ok=True)
        ...     (folder / name).touch()
        >>> [path.as_posix() for path in find_images(folder)]
        ['a/1.JPG', 'b/2.png']
        >>> shutil.rmtree(folder)
    """
    if not folder.is_dir():
        raise DatasetNotFoundError(f"image folder not found: {folder}", folder)
    found = [
        path.relative_to(folder)
        for path in folder.rglob("*")
        if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()
    ]
    if not found:
        exts = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise EmptyDatasetError(f"no images ({exts}) in {folder}", folder)
    return sorted(found, key=lambda path: path.as_posix())


class _BatchesNamingBadImages:
    """The loader's batches; an image that fails in a worker process is reported by its path.

    A ``DataLoader`` worker re-raises :class:`UnreadableImageError` with the worker's traceback as its
    message and without the path. Batches arrive in order, so the culprit is in the batch that failed:
    reading its images in this process raises the error of the first bad one, with its path.
    """

    def __init__(self, loader: DataLoader[Any], paths: Sequence[Path]) -> None:
        self.loader = loader
        self.paths = paths

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        batch_size = self.loader.batch_size or 1
        batches = iter(self.loader)
        for start in range(0, len(self.paths), batch_size):
            try:
                batch = next(batches)
            except UnreadableImageError as error:
                if error.path is None:
                    for path in self.paths[start : start + batch_size]:
                        read_image(path)
                raise
            yield batch


def _extractor(
    model: Path,
    device: str | None,
    batch_size: int | None,
    flip: bool | None,
    precision: Precision | str,
    expected_images: int,
) -> ReIDExtractor:
    """The extractor of a model folder or checkpoint, with the defaults of its config."""
    if model.is_dir():
        config = Config()  # a folder holds no run settings: the schema's defaults
        network, described = load_model_folder(STADBNet, model)
    else:
        network, config, state = load_trained_model(model)
        described = trained_model_config(network, state["config"], state["num_classes"])
    batch_size = config.data.test_batch_size if batch_size is None else batch_size
    check_positive_int(batch_size, "batch_size")
    extractor = ReIDExtractor.from_network(
        network,
        described,
        device=resolve_device(config.device if device is None else device),
        batch_size=batch_size,
        flip=config.eval.flip if flip is None else flip,
        precision=precision,
        expected_images=expected_images,
    )
    return extractor


def extract_folder(
    model: Path,
    images: Path,
    out: Path,
    *,
    device: str | None = None,
    batch_size: int | None = None,
    num_workers: int | None = None,
    flip: bool | None = None,
    precision: Precision | str = "auto",
    on_extractor: Callable[[ReIDExtractor], object] | None = None,
    progress: bool = True,
) -> npt.NDArray[np.float32]:
    """Embed every image under ``images`` with a trained model and save the embeddings.

    The images get the model's eval preprocessing (resize to its input size, ImageNet normalisation),
    as in evaluation. The rows are not L2-normalised.

    Args:
        model: A model folder (:mod:`~stadb_reid.model.folder`), or a ``checkpoint.pt`` written by
            :func:`~stadb_reid.engine.train` (any path that is not a folder).
        images: Folder searched recursively for images (see :func:`find_images`).
        out: The ``.npy`` file to write; the relative image paths go to the same name with ``.txt``.
        device: ``cpu`` or ``cuda``; default: the checkpoint config's ``device`` (a folder: ``cpu``).
        batch_size: Images per batch; default: the config's ``data.test_batch_size`` (a folder: the
            schema's default, 128).
        num_workers: Processes that decode and resize the images (0: this process); default: the
            CPUs the network leaves free (:func:`decoding_workers`).
        flip: Average each embedding with that of the mirrored image; default: the config's
            ``eval.flip`` (a folder: off).
        precision: How the network runs (:mod:`stadb_reid.inference.precision`); default ``auto``.
        on_extractor: Called with the extractor once it is built (e.g. to print its precision).
        progress: Show a tqdm progress bar.

    Returns:
        The ``(N, D)`` float32 embeddings, rows in the order of the path list.

    Raises:
        ValueError: ``out`` does not end with ``.npy``, or ``batch_size``/``num_workers`` is invalid.
        CheckpointError: The checkpoint is missing or unreadable.
        ModelFolderError: The model folder is incomplete or does not fit its config.
        ReIDDataError: The folder is missing or holds no image (:class:`DatasetNotFoundError`,
            :class:`EmptyDatasetError`), or an image cannot be read (:class:`UnreadableImageError`);
            the message names the path.
    """
    if out.suffix != ".npy":
        raise ValueError(f"out must be a .npy file, got {out}")
    relative_paths = find_images(images)
    extractor = _extractor(model, device, batch_size, flip, precision, len(relative_paths))
    if on_extractor is not None:
        on_extractor(extractor)
    num_workers = decoding_workers(extractor.device) if num_workers is None else num_workers
    check_non_negative_int(num_workers, "num_workers")
    paths = [images / path for path in relative_paths]
    # The dataset passes identity and camera labels through; a folder of images has none.
    samples = [ReIDSample(path, 0, 0) for path in paths]
    loader: DataLoader[Any] = DataLoader(
        ImageDataset(samples, extractor.preprocess),
        batch_size=extractor.batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=extractor.device.type == "cuda",
    )
    batches: Iterable[Any] = _BatchesNamingBadImages(loader, paths)
    if progress:
        batches = tqdm(batches, desc="features", unit="batch")
    rows = [extractor(batch, normalize=False, as_tensor=True) for batch, _, _ in batches]
    embeddings: npt.NDArray[np.float32] = torch.cat(rows).numpy()
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, embeddings)
    out.with_suffix(".txt").write_text("".join(f"{path.as_posix()}\n" for path in relative_paths))
    return embeddings
