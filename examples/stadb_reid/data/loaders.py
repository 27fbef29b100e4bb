"""Torch datasets and data loaders for training (PK batches) and evaluation (query, gallery).

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

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from stadb_reid.data.datasets import ReIDDataset, ReIDSample, UnreadableImageError
from stadb_reid.data.sampler import PKSampler
from stadb_reid.data.transforms import build_test_transform, build_train_transform

__all__ = ["ImageDataset", "TrainLoader", "build_test_loaders", "build_train_loader", "read_image"]

#: One item: image tensor, identity, camera.
Item = tuple[Tensor, int, int]


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

    def __getitem__(self, index: int) -> Item:
        sample = self.samples[index]
        return self.transform(read_image(sample.path)), sample.pid, sample.camid

    @property
    def pids(self) -> list[int]:
        """The identity of every index (what :class:`PKSampler` needs)."""
        return [s.pid for s in self.samples]


class TrainLoader(DataLoader[Item]):
    """A ``DataLoader`` driven by a :class:`PKSampler`, with a typed :meth:`set_epoch`."""

    @property
    def pk_sampler(self) -> PKSampler:
        """The batch sampler."""
        return cast(PKSampler, self.batch_sampler)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch of the PK batches (call before iterating over each epoch)."""
        self.pk_sampler.set_epoch(epoch)


def _check_workers(num_workers: int) -> int:
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers must be a non-negative integer, got {num_workers!r}")
    return num_workers


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
) -> TrainLoader:
    """Build the training loader: PK batches of augmented ``dataset.train`` images.

    Call ``loader.set_epoch(epoch)`` before each epoch (it forwards to the :class:`PKSampler`
    batch sampler, ``loader.pk_sampler``). Worker processes persist across epochs; memory is
    pinned when CUDA is available. The random augmentations draw from torch's generator, seeded
    per worker from a generator seeded with ``seed`` and ``rank``.

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

    Returns:
        A loader yielding ``(images, pids, camids)`` with ``num_identities * num_instances`` rows.
    """
    _check_workers(num_workers)
    transform = build_train_transform(
        height, width, flip_prob=flip_prob, padding=padding, erasing_prob=erasing_prob
    )
    images = ImageDataset(dataset.train, transform)
    sampler = PKSampler(
        images.pids, num_identities, num_instances, seed=seed, rank=rank, world_size=world_size
    )
    generator = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, rank]).generate_state(1)[0]))
    return TrainLoader(
        images,
        batch_sampler=sampler,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=torch.cuda.is_available(),
        generator=generator,
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
    _check_workers(num_workers)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
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
