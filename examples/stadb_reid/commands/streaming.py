"""Embedding an index's images with decoding and resizing in ``DataLoader`` worker processes.

:meth:`~stadb_reid.search.GalleryIndex.fill` asks its embedder for the images of the missing chunks,
in row order, a batch at a time. :class:`StreamingEmbedder` learns that order when first called
(from the planned manifest) and runs one ``DataLoader`` over it for the whole run, so images are
decoded while the network works and the network sets the pace. A request that is not the next
images of the stream is embedded in this process instead (correct, only slower). The workers stop
when the stream's last image is handed over, or at :meth:`StreamingEmbedder.close`: not whenever
the garbage collector gets to them (the stream and the embedder refer to each other), which could
be in the middle of the next run, or in a worker forked for it.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from ..data import ReIDSample
from ..data.loaders import ImageDataset
from ..inference import ReIDExtractor
from ..search import GalleryIndex
from .extract import _BatchesNamingBadImages

__all__ = ["StreamingEmbedder", "pending_images"]


def pending_images(index: GalleryIndex) -> list[Path]:
    """The images of the planned chunks whose file is missing, in the order ``fill`` embeds them."""
    starts = np.cumsum([0] + [rows for _, rows in index.manifest.chunks])
    return [
        Path(record.path)
        for i in index.missing_chunks()
        for record in index.records[starts[i] : starts[i] + index.manifest.chunks[i][1]]
    ]


class StreamingEmbedder:
    """An index embedder (:class:`~stadb_reid.search.index.Embedder`) fed by worker processes.

    Args:
        extractor: Embeds the preprocessed images.
        pending: Called once, at the first request: the images in the order they will be asked for.
        num_workers: Decoding processes; 0 decodes in this process (still one stream).
    """

    def __init__(
        self, extractor: ReIDExtractor, pending: Callable[[], Sequence[Path]], num_workers: int
    ) -> None:
        self.extractor = extractor
        self.pending = pending
        self.num_workers = num_workers
        self._order: list[str] | None = None
        self._stream: Generator[Tensor, None, None] | None = None
        self._buffer: list[Tensor] = []
        self._position = 0

    @property
    def fingerprint(self) -> str:
        """The extractor's model fingerprint."""
        return self.extractor.fingerprint

    @property
    def embedding_dim(self) -> int:
        """The extractor's embedding size."""
        return self.extractor.embedding_dim

    def _images(self, paths: list[Path]) -> Generator[Tensor, None, None]:
        samples = [ReIDSample(path, 0, 0) for path in paths]
        loader: DataLoader[Any] = DataLoader(
            ImageDataset(samples, self.extractor.preprocess),
            batch_size=self.extractor.batch_size,
            num_workers=self.num_workers,
            pin_memory=self.extractor.device.type == "cuda",
        )
        for batch, _, _ in _BatchesNamingBadImages(loader, paths):
            yield from batch

    def __call__(
        self, images: Sequence[Any], *, normalize: bool = True, as_tensor: bool = False
    ) -> npt.NDArray[np.float32] | Tensor:
        """Embeddings of ``images`` (paths), from the stream when they are its next images."""
        if self._order is None:
            paths = list(self.pending())
            self._order = [str(path) for path in paths]
            self._stream = self._images(paths)
        wanted = [str(path) for path in images]
        if self._stream is None or wanted != self._order[self._position : self._position + len(wanted)]:
            self.close()  # out of order: the stream is no use any more
            return self.extractor(list(images), normalize=normalize, as_tensor=as_tensor)
        while len(self._buffer) < len(wanted):
            self._buffer.append(next(self._stream))
        batch, self._buffer = torch.stack(self._buffer[: len(wanted)]), self._buffer[len(wanted) :]
        self._position += len(wanted)
        if self._position == len(self._order):
            self.close()
        return self.extractor(batch, normalize=normalize, as_tensor=as_tensor)

    def close(self) -> None:
        """Stop the decoding workers now (the stream is not used again)."""
        if self._stream is not None:
            self._stream.close()
            self._stream = None
