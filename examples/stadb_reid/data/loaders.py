"""Torch datasets and data loaders for training (P x K batches) and evaluation (query, gallery).

Examples:
    >>> import shutil, tempfile
    >>> from PIL import Image
    >>> from stadb_reid.data.datasets import ReIDSample
    >>> folder = Path(tempfile.mkdtemp())
    >>> Image.new("RGB", (8, 16), (255, 0, 0)).save(folder / "a.png")
    >>> image, pid, camid = ImageDataset([ReIDSample(folder / "a.png", 3, 1)])[0]
    >>> tuple(image.shape), pid, camid
    ((3, 16, 8), 3, 1)
    >>> shutil.rmtree(folder)
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.transforms import v2

from stadb_layers.checks import check_in_interval, check_int, check_positive_int
from stadb_reid.data.datasets import ReIDDataset, ReIDSample
from stadb_reid.data.sampler import IdentityBatchSampler, IdentityEpochSampler, PKSampler
from stadb_reid.data.transforms import build_test_transform, build_train_transform
from stadb_reid.errors import UnreadableImageError

__all__ = [
    "EPOCH_SAMPLERS",
    "ImageDataset",
    "SeededBatchSampler",
    "TrainLoader",
    "build_test_loaders",
    "build_train_loader",
    "read_image",
]

#: One item: image tensor, identity, camera.
Item = tuple[Tensor, int, int]

#: The batch sampler of each ``epoch_mode``: every image, or every identity, once per epoch.
EPOCH_SAMPLERS: dict[str, type[IdentityBatchSampler]] = {
    "images": PKSampler,
    "identities": IdentityEpochSampler,
}


def read_image(path: str | Path) -> Image.Image:
    """Open an image as RGB, loading it fully.

    Raises:
        UnreadableImageError: The file is missing, truncated or not an image (names the path).
    """
    try:
        with Image.open(path) as image:
            rgb: Image.Image = image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise UnreadableImageError(f"cannot read image {path}: {exc}", path) from exc
    return rgb


class ImageDataset(Dataset[Item]):
    """Map-style dataset over :class:`ReIDSample` records returning ``(image, pid, camid)``.

    Args:
        samples: The samples (e.g. ``dataset.train``).
        transform: Applied to the RGB PIL image; default: conversion to a float tensor in [0, 1].
    """

    def __init__(
        self, samples: Sequence[ReIDSample], transform: Callable[[Image.Image], Tensor] | None = None
    ) -> None:
        self.samples = tuple(samples)
        self.transform: Callable[[Any], Tensor] = (
            transform
            if transform is not None
            else v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])
        )

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: int | tuple[int, int]) -> Item:
        """The item at ``key``, an index or an ``(index, seed)`` pair.

        With a seed, the transform draws from torch's generator seeded with it (and the caller's
        generator state is restored afterwards), so an augmentation depends only on the seed: not on
        which worker loads the image, how many workers there are, or whether the run was resumed.
        """
        index, seed = key if isinstance(key, tuple) else (key, None)
        sample = self.samples[index]
        image = read_image(sample.path)
        if seed is None:
            return self.transform(image), sample.pid, sample.camid
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.transform(image), sample.pid, sample.camid

    @property
    def pids(self) -> list[int]:
        """The identity of every index (what the identity batch samplers need)."""
        return [s.pid for s in self.samples]


class SeededBatchSampler(Sampler[list[tuple[int, int]]]):
    """P x K batches whose every item carries its own augmentation seed, resumable mid-epoch.

    Item ``j`` of batch ``b`` in ``epoch`` gets the seed drawn from
    ``numpy.random.SeedSequence([seed, rank, epoch, b])``, so with the batch order (a function of
    the sampler's seed and the epoch) an epoch's images *and* augmentations are fixed before it
    starts, and skipping the first batches resumes it exactly.

    Args:
        batches: The batch sampler (:class:`PKSampler` or :class:`IdentityEpochSampler`).
        seed: Seed of the augmentation streams.
    """

    def __init__(self, batches: IdentityBatchSampler, seed: int = 0) -> None:
        self.batches = batches
        self.seed = seed
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch, skipping its first ``start_batch`` batches (to resume mid-epoch)."""
        check_in_interval(start_batch, "start_batch", 0, len(self.batches), low_closed=True, high_closed=True)
        self.batches.set_epoch(epoch)
        self.start_batch = start_batch

    def __len__(self) -> int:
        """Batches left in the epoch."""
        return len(self.batches) - self.start_batch

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        """Yield the epoch's remaining batches as ``(index, seed)`` pairs."""
        for number, batch in enumerate(self.batches):
            if number < self.start_batch:
                continue
            sequence = np.random.SeedSequence([self.seed, self.batches.rank, self.batches.epoch, number])
            seeds = sequence.generate_state(len(batch), dtype=np.uint64)
            yield [(index, int(item_seed)) for index, item_seed in zip(batch, seeds, strict=True)]


class TrainLoader(DataLoader[Item]):
    """A ``DataLoader`` driven by a :class:`SeededBatchSampler`, with a typed :meth:`set_epoch`."""

    @property
    def pk_sampler(self) -> IdentityBatchSampler:
        """The P x K batch sampler."""
        return cast(SeededBatchSampler, self.batch_sampler).batches

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch (call before iterating), skipping its first ``start_batch`` batches."""
        cast(SeededBatchSampler, self.batch_sampler).set_epoch(epoch, start_batch)


def _leave_ctrl_c_to_the_trainer(worker_id: int) -> None:
    # Ctrl-C reaches the whole process group; the trainer finishes its step and saves, and a worker
    # killed by the same keystroke would break the batch in flight. (SIGTERM keeps its default: the
    # loader uses it to stop stuck workers.)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def build_train_loader(
    dataset: ReIDDataset,
    *,
    height: int = 384,
    width: int = 128,
    num_identities: int = 32,
    num_instances: int = 4,
    num_workers: int = 4,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    flip_prob: float = 0.5,
    padding: int = 10,
    erasing_prob: float = 0.5,
    cutout_prob: float = 0.0,
    cutout_size: int | None = 64,
    epoch_mode: str = "images",
) -> TrainLoader:
    """Build the training loader: P x K batches of augmented ``dataset.train`` images.

    Call ``loader.set_epoch(epoch)`` before each epoch (it forwards to the batch sampler,
    ``loader.pk_sampler``). Worker processes persist across epochs; memory is pinned when CUDA is
    available. Every image's augmentation has its own seed (see :class:`SeededBatchSampler`), so
    training is reproducible whatever the number of workers, and resumable mid-epoch.

    Args:
        dataset: The dataset; its training split is used.
        height: Image height after the transform.
        width: Image width after the transform.
        num_identities: P, identities per batch and rank.
        num_instances: K, images per identity.
        num_workers: Loading processes (0 loads in the main process).
        seed: Seed of the sampler and of the workers' augmentation streams.
        rank: This process's rank.
        world_size: Number of processes (identities are split between ranks).
        flip_prob: See :func:`build_train_transform`.
        padding: See :func:`build_train_transform`.
        erasing_prob: See :func:`build_train_transform`.
        cutout_prob: See :func:`build_train_transform`.
        cutout_size: See :func:`build_train_transform`.
        epoch_mode: What an epoch covers: ``"images"`` (:class:`PKSampler`) or ``"identities"``
            (:class:`IdentityEpochSampler`, the reference code's epochs).

    Returns:
        A loader yielding ``(images, pids, camids)`` with ``num_identities * num_instances`` rows.

    Raises:
        ValueError: An argument is out of range or ``epoch_mode`` is unknown (the message names it).
    """
    num_workers = check_int(num_workers, "num_workers", 0)
    sampler_class = EPOCH_SAMPLERS.get(str(epoch_mode))
    if sampler_class is None:
        raise ValueError(f"epoch_mode must be one of {', '.join(EPOCH_SAMPLERS)}, got {epoch_mode!r}")
    transform = build_train_transform(
        height,
        width,
        flip_prob=flip_prob,
        padding=padding,
        erasing_prob=erasing_prob,
        cutout_prob=cutout_prob,
        cutout_size=cutout_size,
    )
    images = ImageDataset(dataset.train, transform)
    sampler = sampler_class(
        images.pids, num_identities, num_instances, seed=seed, rank=rank, world_size=world_size
    )
    return TrainLoader(
        images,
        batch_sampler=SeededBatchSampler(sampler, seed),
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=torch.cuda.is_available(),
        worker_init_fn=_leave_ctrl_c_to_the_trainer,
        # Each new iterator draws a worker base seed; drawing it from the global generator would
        # make a resumed run's random stream differ from an uninterrupted one.
        generator=torch.Generator().manual_seed(seed),
    )


def build_test_loaders(
    dataset: ReIDDataset,
    *,
    height: int = 384,
    width: int = 128,
    batch_size: int = 128,
    num_workers: int = 4,
) -> tuple[DataLoader[Item], DataLoader[Item]]:
    """Build the query and gallery loaders (test transform, fixed order, last batch kept).

    Args:
        dataset: The dataset; its query and gallery splits are used.
        height: Image height after the transform.
        width: Image width after the transform.
        batch_size: Images per batch.
        num_workers: Loading processes per loader (started anew for every pass).

    Returns:
        ``(query_loader, gallery_loader)``, each yielding ``(images, pids, camids)`` in split order.
    """
    num_workers = check_int(num_workers, "num_workers", 0)
    check_positive_int(batch_size, "batch_size")
    transform = build_test_transform(height, width)

    def loader(samples: Sequence[ReIDSample]) -> DataLoader[Item]:
        return DataLoader(
            ImageDataset(samples, transform),
            batch_size=batch_size,
            shuffle=False,
            num_workers=num_workers,
            pin_memory=torch.cuda.is_available(),
        )

    return loader(dataset.query), loader(dataset.gallery)
