"""A gallery index: a folder of embedding chunks and a manifest, built once and extended later.

Layout of an index folder::

    INDEX/manifest.json          model fingerprint, embedding size, chunks, image paths and labels
    INDEX/embeddings-00000.npy   (rows, dim) float32, one file per chunk of images
    INDEX/embeddings-00001.npy   ...

Building first *plans* the chunks (the manifest lists every chunk and its images), then embeds the
chunks whose file is missing, one after the other; each file is written atomically. A killed run
therefore leaves complete chunks and a manifest that says what is left: running :func:`build_index`
again keeps the finished chunks and re-plans the images of the missing ones (without an image that
was deleted in between). Adding images later only plans and embeds the images not indexed yet.

Examples:
    >>> import tempfile
    >>> import numpy as np
    >>> class Fake:  # stands in for stadb_reid.inference.ReIDExtractor
    ...     fingerprint, embedding_dim = "f00d", 2
    ...     def __call__(self, images, *, normalize=True, as_tensor=False):
    ...         return np.ones((len(images), 2), np.float32) / np.sqrt(2)
    >>> folder = Path(tempfile.mkdtemp()) / "index"
    >>> images = [Path(f"/data/000{i}_c1s1_000001_01.jpg") for i in range(5)]
    >>> build_index(folder, images, Fake(), model_path="model", chunk_size=2, progress=False)
    IndexSummary(total=5, added=5, embedded=5, chunks=3)
    >>> build_index(folder, images[:3], Fake(), model_path="model", progress=False).added
    0
    >>> index = GalleryIndex.open(folder)
    >>> len(index), index.records[4].pid, np.concatenate(index.embeddings()).shape
    (5, 4, (5, 2))
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

import numpy as np
import numpy.typing as npt

from stadb_layers.checks import check_positive_int

from ..errors import GalleryIndexError
from .manifest import MANIFEST_NAME, ImageRecord, IndexManifest, write_atomically

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "Embedder",
    "GalleryIndex",
    "IndexSummary",
    "build_index",
    "is_index",
    "remove_index",
]

#: Images per chunk file: the work a killed run can lose, and the granularity of resuming.
DEFAULT_CHUNK_SIZE = 1024
_CHUNK_RE = re.compile(r"^embeddings-(\d+)\.npy$")
# What write_atomically leaves of an interrupted write: "." + the file's name + 8 tempfile characters.
_TEMPORARY_RE = re.compile(r"^\.(.+)\.[a-z0-9_]{8}\.tmp$")
_BATCH = 64  # images per extractor call, so the progress bar moves within a chunk


class Embedder(Protocol):
    """What the index needs of :class:`stadb_reid.inference.ReIDExtractor`."""

    @property
    def fingerprint(self) -> str:
        """Stable hash of the model files."""
        ...

    @property
    def embedding_dim(self) -> int:
        """Length of an embedding."""
        ...

    def __call__(self, images: Sequence[Any], *, normalize: bool = ..., as_tensor: bool = ...) -> Any:
        """``(len(images), embedding_dim)`` embeddings of image paths."""
        ...


@dataclass(frozen=True)
class IndexSummary:
    """What :func:`build_index` did: images in the index, newly planned, embedded now; chunk count."""

    total: int
    added: int
    embedded: int
    chunks: int


def is_index(folder: Path) -> bool:
    """Whether ``folder`` holds a gallery index manifest (not checked further)."""
    return (folder / MANIFEST_NAME).is_file()


def remove_index(folder: Path) -> None:
    """Delete the files the index wrote, and nothing else (a user's file in the folder stays).

    These are the chunks its manifest lists, the temporary files of an interrupted write of a chunk
    or of the manifest, then the manifest.

    Raises:
        GalleryIndexError: The manifest cannot be read, so the index's files cannot be told from others.
    """
    try:
        manifest = IndexManifest.read(folder / MANIFEST_NAME)
    except GalleryIndexError as error:
        raise GalleryIndexError(
            f"{error}; only the files an index lists are deleted: remove {folder} yourself or choose another "
            "--out",
            folder,
        ) from None
    chunks = {name for name, _ in manifest.chunks}
    for path in folder.iterdir():
        temporary = _TEMPORARY_RE.match(path.name)
        written = temporary[1] if temporary else None
        if path.name in chunks or written == MANIFEST_NAME or (written and _CHUNK_RE.match(written)):
            path.unlink()
    (folder / MANIFEST_NAME).unlink()


class GalleryIndex:
    """An index folder and its manifest; see the module docstring for the layout.

    Args:
        folder: The index folder.
        manifest: Its manifest (use :meth:`open` or :meth:`create` rather than this constructor).
    """

    def __init__(self, folder: Path, manifest: IndexManifest) -> None:
        self.folder = folder
        self.manifest = manifest

    @classmethod
    def open(cls, folder: Path) -> GalleryIndex:
        """Open an existing index; :class:`GalleryIndexError` names the folder if it is none."""
        if not folder.is_dir():
            raise GalleryIndexError(f"gallery index not found: {folder}", folder)
        return cls(folder, IndexManifest.read(folder / MANIFEST_NAME))

    @classmethod
    def create(
        cls, folder: Path, *, model_path: str, fingerprint: str, embedding_dim: int, flip: bool
    ) -> GalleryIndex:
        """Start an empty index in ``folder`` (created if needed) and write its manifest."""
        folder.mkdir(parents=True, exist_ok=True)
        index = cls(folder, IndexManifest(model_path, fingerprint, embedding_dim, flip))
        index.manifest.write(folder / MANIFEST_NAME)
        return index

    def __len__(self) -> int:
        return len(self.manifest.images)

    @property
    def records(self) -> list[ImageRecord]:
        """The images, in row order."""
        return self.manifest.images

    def check_model(self, model_path: str | Path, fingerprint: str) -> None:
        """Refuse a model other than the one the index was built with, naming both folders."""
        if fingerprint != self.manifest.fingerprint:
            raise GalleryIndexError(
                f"gallery index {self.folder} was built with the model {self.manifest.model_path}, "
                f"not with {model_path} (fingerprints {self.manifest.fingerprint} and {fingerprint})",
                self.folder,
            )

    def missing_chunks(self) -> list[int]:
        """Positions of the planned chunks whose file is not written yet."""
        return [i for i, (name, _) in enumerate(self.manifest.chunks) if not (self.folder / name).is_file()]

    def plan(self, images: Iterable[str | Path], chunk_size: int = DEFAULT_CHUNK_SIZE) -> int:
        """Re-plan unfinished chunks and append the images not yet in the index; return how many are new.

        Finished chunks keep their rows. The images of missing chunks are dropped from the plan and
        re-planned with ``images``, so a re-run resumes, and an image deleted since is left out.
        """
        check_positive_int(chunk_size, "chunk_size")
        done = set(range(len(self.manifest.chunks))) - set(self.missing_chunks())
        kept_chunks, kept_images, start = [], [], 0
        for i, (name, rows) in enumerate(self.manifest.chunks):
            if i in done:
                kept_chunks.append((name, rows))
                kept_images += self.manifest.images[start : start + rows]
            start += rows
        before, known = {r.path for r in self.manifest.images}, {r.path for r in kept_images}
        new = [ImageRecord.of(path) for path in dict.fromkeys(map(str, images)) if path not in known]
        numbers = [int(m[1]) for p in self.folder.iterdir() if (m := _CHUNK_RE.match(p.name))]
        numbers += [int(m[1]) for name, _ in kept_chunks if (m := _CHUNK_RE.match(name))]
        first = max(numbers, default=-1) + 1
        for n, s in enumerate(range(0, len(new), chunk_size)):
            kept_chunks.append((f"embeddings-{first + n:05d}.npy", len(new[s : s + chunk_size])))
        self.manifest.chunks, self.manifest.images = kept_chunks, kept_images + new
        self.manifest.write(self.folder / MANIFEST_NAME)
        return sum(record.path not in before for record in new)

    def fill(self, embed: Embedder, *, progress: bool = True) -> int:
        """Embed every planned chunk whose file is missing; return the number of images embedded."""
        missing = self.missing_chunks()
        offsets = np.cumsum([0] + [rows for _, rows in self.manifest.chunks])
        todo = sum(self.manifest.chunks[i][1] for i in missing)
        bar: Any = None
        if progress:
            tqdm = importlib.import_module("tqdm.auto").tqdm
            bar = tqdm(total=len(self), initial=len(self) - todo, desc="index", unit="img")
        try:
            for i in missing:
                name, rows = self.manifest.chunks[i]
                paths = [Path(r.path) for r in self.manifest.images[offsets[i] : offsets[i] + rows]]
                parts = []
                for s in range(0, rows, _BATCH):
                    parts.append(self._embedded(embed, paths[s : s + _BATCH]))
                    if bar is not None:
                        bar.update(len(parts[-1]))
                chunk = np.concatenate(parts)
                write_atomically(self.folder / name, functools.partial(_save_npy, array=chunk))
        finally:
            if bar is not None:
                bar.close()
        return todo

    def _embedded(self, embed: Embedder, paths: list[Path]) -> npt.NDArray[np.float32]:
        out = np.asarray(embed(paths, normalize=True), dtype=np.float32)
        if out.shape != (len(paths), self.manifest.embedding_dim):
            raise ValueError(
                f"expected {len(paths)} x {self.manifest.embedding_dim} embeddings, got {out.shape}"
            )
        finite = np.isfinite(out).all(axis=1)
        if not finite.all():
            path = paths[int(np.argmin(finite))]
            raise GalleryIndexError(
                f"the model gives {path} a non-finite embedding (NaN or infinity); nothing of it was indexed",
                path,
            )
        return out

    def embeddings(self) -> list[npt.NDArray[np.float32]]:
        """The chunks, memory-mapped read-only, in row order.

        Raises:
            GalleryIndexError: A chunk is missing (the index is unfinished), does not hold the rows
                and columns the manifest says, or holds NaN or infinity.
        """
        missing = self.missing_chunks()
        if missing:
            raise GalleryIndexError(
                f"gallery index {self.folder} is unfinished ({len(missing)} of {len(self.manifest.chunks)} "
                "chunks missing): run stadb-reid index again with the same --out to finish it",
                self.folder,
            )
        if not self.manifest.chunks:
            raise GalleryIndexError(f"gallery index {self.folder} holds no images", self.folder)
        return [self._chunk(name, rows) for name, rows in self.manifest.chunks]

    def _chunk(self, name: str, rows: int) -> npt.NDArray[np.float32]:
        path = self.folder / name
        try:
            chunk = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as error:
            raise GalleryIndexError(f"damaged gallery index chunk {path}: {error}", path) from None
        if chunk.shape != (rows, self.manifest.embedding_dim) or chunk.dtype != np.float32:
            raise GalleryIndexError(
                f"damaged gallery index chunk {path}: {chunk.shape} {chunk.dtype}, "
                f"expected ({rows}, {self.manifest.embedding_dim}) float32",
                path,
            )
        if not np.isfinite(chunk).all():  # NaN distances would rank arbitrarily
            raise GalleryIndexError(f"damaged gallery index chunk {path}: it holds NaN or infinity", path)
        embeddings: npt.NDArray[np.float32] = chunk
        return embeddings


def _save_npy(file: IO[bytes], array: npt.NDArray[np.float32]) -> None:
    np.save(file, array, allow_pickle=False)


def build_index(
    folder: Path,
    images: Sequence[str | Path],
    extractor: Embedder,
    *,
    model_path: str | Path,
    flip: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: bool = True,
) -> IndexSummary:
    """Create or extend the index in ``folder`` with ``images``, embedding only what it lacks.

    Args:
        folder: The index folder; an existing index there is resumed and extended.
        images: Image paths (absolute paths keep the index usable from any working directory);
            ones already indexed are skipped.
        extractor: Embeds images (:class:`stadb_reid.inference.ReIDExtractor`); it must be the model
            an existing index was built with.
        model_path: The extractor's model folder, recorded in a new index and named in errors.
        flip: Whether ``extractor`` averages flipped images (recorded so queries match).
        chunk_size: Images per chunk file.
        progress: Show a tqdm progress bar.

    Returns:
        The :class:`IndexSummary`.

    Raises:
        GalleryIndexError: The existing index is damaged, or was built with another model or
            another ``flip`` (the message names both).
    """
    if is_index(folder):
        index = GalleryIndex.open(folder)
        index.check_model(model_path, extractor.fingerprint)
        if index.manifest.flip != flip:
            raise GalleryIndexError(
                f"gallery index {folder} was built with flip={index.manifest.flip}, not flip={flip}", folder
            )
    else:
        index = GalleryIndex.create(
            folder,
            model_path=str(model_path),
            fingerprint=extractor.fingerprint,
            embedding_dim=extractor.embedding_dim,
            flip=flip,
        )
    added = index.plan(images, chunk_size)
    embedded = index.fill(extractor, progress=progress)
    return IndexSummary(len(index), added, embedded, len(index.manifest.chunks))
