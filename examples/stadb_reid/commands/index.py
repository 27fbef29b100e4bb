"""Embedding a folder of gallery images into a search index, resumably and incrementally.

The index records absolute image paths, so it can be searched from any working directory; see
:mod:`stadb_reid.search.index` for its layout and for how a killed run resumes. With ``ann``, the
finished index then gets (or brings up to date) its persisted ANN index, :mod:`stadb_reid.search.ann`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from stadb_layers.checks import check_non_negative_int

from ..errors import GalleryIndexError
from ..inference import Precision, ReIDExtractor
from ..search import GalleryIndex, build_index
from ..search.ann import AnnKind, AnnSummary, remove_ann, update_ann
from ..search.faiss_backend import import_faiss
from ..search.index import DEFAULT_CHUNK_SIZE, IndexSummary, is_index, remove_index
from .extract import decoding_workers, find_images
from .streaming import StreamingEmbedder, pending_images

__all__ = ["index_gallery"]


def _images_to_embed(existing: GalleryIndex | None, paths: list[Path]) -> int:
    """How many of ``paths`` an index run embeds: the unfinished chunks' images and the new ones."""
    if existing is None:
        return len(set(paths))
    finished = {record.path for record in existing.records} - {str(path) for path in pending_images(existing)}
    return len({str(path) for path in paths} - finished)


def index_gallery(
    model_dir: Path,
    images: Path,
    out: Path,
    *,
    device: str = "cpu",
    batch_size: int = 64,
    flip: bool | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    ann: AnnKind | None = None,
    precision: Precision | str = "auto",
    num_workers: int | None = None,
    on_extractor: Callable[[ReIDExtractor], object] | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> tuple[IndexSummary, AnnSummary | None]:
    """Build the index ``out`` of the images under ``images``, or finish and extend the one there.

    An existing index at ``out`` keeps its embeddings: the chunks a killed run did not finish are
    embedded, then the images not indexed yet. Only its own model (and ``flip`` setting) may extend
    it; ``overwrite`` deletes it and starts afresh.

    Args:
        model_dir: A model folder (``config.yaml``, ``model.safetensors``, ``README.md``).
        images: Folder searched recursively for images (see
            :func:`~stadb_reid.commands.extract.find_images`).
        out: The index folder: new, empty, or an index.
        device: ``cpu`` or ``cuda``.
        batch_size: Images per forward pass.
        flip: Average each embedding with that of the mirrored image; default: the existing index's
            setting, or no.
        chunk_size: Images per chunk file (what a killed run can lose).
        ann: Build the persisted ANN index of this kind (another kind than the existing one is
            rebuilt from the stored embeddings); default: bring the existing one up to date, if any.
        precision: How the network runs (:mod:`stadb_reid.inference.precision`); default ``auto``.
        num_workers: Processes that decode and resize the images (0: this process); default: the
            CPUs the network leaves free (:func:`~stadb_reid.commands.extract.decoding_workers`).
        on_extractor: Called with the extractor once it is built (e.g. to print its precision).
        overwrite: Replace an existing index instead of extending it.
        progress: Show a tqdm progress bar.

    Returns:
        The :class:`~stadb_reid.search.index.IndexSummary` (images in the index, new, embedded now, chunks)
        and the :class:`~stadb_reid.search.ann.AnnSummary`, or ``None`` without an ANN index.

    Raises:
        DatasetNotFoundError: ``images`` is not a folder.
        EmptyDatasetError: ``images`` holds no image.
        GalleryIndexError: ``out`` is something other than an index, or an index of another model or
            ``flip`` setting, or damaged.
        ReIDError: The model folder is incomplete or an image cannot be read (the message names it).
    """
    if num_workers is not None:
        check_non_negative_int(num_workers, "num_workers")
    if ann is not None:
        import_faiss()  # before the embedding, not after it
    paths = [(images / path).resolve() for path in find_images(images)]
    if out.exists() and not is_index(out) and (not out.is_dir() or any(out.iterdir())):
        raise GalleryIndexError(f"{out} exists and is not a gallery index: choose a new --out folder", out)
    existing = GalleryIndex.open(out) if is_index(out) and not overwrite else None
    if flip is None:
        flip = existing.manifest.flip if existing is not None else False
    extractor = ReIDExtractor(
        model_dir,
        device=device,
        batch_size=batch_size,
        flip=flip,
        precision=precision,
        expected_images=_images_to_embed(existing, paths),
    )
    if on_extractor is not None:
        on_extractor(extractor)
    if existing is not None:
        existing.check_model(model_dir, extractor.fingerprint)
    elif is_index(out):
        remove_ann(out)
        remove_index(out)
    num_workers = decoding_workers(extractor.device) if num_workers is None else num_workers
    streaming = StreamingEmbedder(extractor, lambda: pending_images(GalleryIndex.open(out)), num_workers)
    try:
        summary = build_index(
            out,
            paths,
            streaming,
            model_path=model_dir.resolve(),
            flip=flip,
            chunk_size=chunk_size,
            progress=progress,
        )
    finally:  # a failed run stops its decoding workers too
        streaming.close()
    return summary, update_ann(GalleryIndex.open(out), ann)
