"""Searching gallery indexes with query images: ranked matches, a JSON report and an HTML page.

Several index folders (of one model) are searched as one gallery (:mod:`stadb_reid.search.shards`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from ..data import DatasetNotFoundError
from ..errors import GalleryIndexError
from ..inference import ReIDExtractor
from ..search import (
    DEFAULT_RERANK_POOL,
    QueryResult,
    SearchBackend,
    SearchMetric,
    Shards,
    render_page,
    results_to_json,
    search_shards,
)
from ..search.faiss_backend import import_faiss
from .extract import find_images

__all__ = ["default_search_outputs", "search_gallery"]


def default_search_outputs(index_dir: Path) -> tuple[Path, Path]:
    """``INDEX-search.json`` and ``INDEX-search.html`` beside the index folder ``INDEX``."""
    stem = index_dir.parent / f"{index_dir.name}-search"
    return stem.with_name(f"{stem.name}.json"), stem.with_name(f"{stem.name}.html")


def _query_images(query: Path) -> list[Path]:
    if query.is_dir():
        return [(query / path).resolve() for path in find_images(query)]
    if not query.exists():
        raise DatasetNotFoundError(f"query image or folder not found: {query}", query)
    return [query.resolve()]


def search_gallery(
    index_dirs: Path | Sequence[Path],
    query: Path,
    *,
    out_json: Path,
    out_html: Path,
    model_dir: Path | None = None,
    top_k: int = 10,
    metric: SearchMetric = "euclidean",
    backend: SearchBackend | None = None,
    rerank: bool = False,
    rerank_pool: int = DEFAULT_RERANK_POOL,
    device: str = "cpu",
    batch_size: int = 64,
) -> list[QueryResult]:
    """Find the ``top_k`` nearest gallery images of each query image; write the JSON and HTML reports.

    The queries are embedded with the model the index was built with (or ``model_dir``, which must be
    the same model) and its ``flip`` setting.

    Args:
        index_dirs: A gallery index written by :func:`~stadb_reid.commands.index_gallery`, or several
            (of one model), searched as one gallery of their rows in this order.
        query: An image, or a folder searched recursively for images.
        out_json: The JSON report to write (settings and every query's matches).
        out_html: The self-contained HTML page to write.
        model_dir: The model folder; default: the one recorded in the index.
        top_k: Matches per query.
        metric: ``"euclidean"`` or ``"cosine"``.
        backend: ``"exact"``, ``"faiss"`` (needs faiss-cpu) or ``"ann"`` (the persisted ANN
            indexes, memory-mapped); default: ``"ann"`` where every index has one, else ``"exact"``.
        rerank: Re-rank with k-reciprocal encoding (see :mod:`stadb_reid.search.query`).
        rerank_pool: Nearest images per query that the re-ranking reorders.
        device: ``cpu`` or ``cuda``.
        batch_size: Query images per forward pass.

    Returns:
        One :class:`~stadb_reid.search.QueryResult` per query image.

    Raises:
        GalleryIndexError: The index is missing, damaged or unfinished, its model folder is gone, or
            ``model_dir`` is another model (the message names both folders).
        ConfigError: ``backend="faiss"`` without faiss installed.
        ReIDDataError: The query is missing, holds no image, or an image cannot be read.
    """
    folders = [index_dirs] if isinstance(index_dirs, Path) else list(index_dirs)
    shards = Shards.open(folders, ann=None if backend is None else backend == "ann")
    backend = shards.backend if backend is None else backend
    if backend == "faiss":
        import_faiss()
    queries = _query_images(query)
    index, index_dir = shards.indexes[0], folders[0]
    model = model_dir if model_dir is not None else Path(index.manifest.model_path)
    if model_dir is None and not model.is_dir():
        raise GalleryIndexError(
            f"the model folder {model} of gallery index {index_dir} is gone: pass --model DIR", index_dir
        )
    extractor = ReIDExtractor(model, device=device, batch_size=batch_size, flip=index.manifest.flip)
    index.check_model(model, extractor.fingerprint)
    embeddings = extractor(queries, normalize=True)
    results = search_shards(
        shards,
        embeddings,
        queries,
        top_k=top_k,
        metric=metric,
        backend=backend,
        rerank=rerank,
        rerank_pool=rerank_pool,
    )
    ann = shards.anns[0]
    settings = {
        "index": [str(f.resolve()) for f in folders] if len(folders) > 1 else str(index_dir.resolve()),
        "model": str(model.resolve()),
        "gallery_size": len(shards),
        "metric": metric,
        "backend": backend,
        "ann": None if backend != "ann" or ann is None else ann.meta["factory"],
        "top_k": top_k,
        "rerank": rerank,
    }
    report = results_to_json(results, **settings)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    where = f"gallery index {index_dir}" if len(folders) == 1 else f"{len(folders)} gallery indexes"
    summary = (
        f"{len(results)} {'query' if len(results) == 1 else 'queries'} · {where} "
        f"({len(shards)} images) · model {model} · {metric} · {backend}{', re-ranked' if rerank else ''} "
        f"· top {top_k}"
    )
    out_html.parent.mkdir(parents=True, exist_ok=True)
    out_html.write_text(render_page(results, title="Gallery search", settings=summary), encoding="utf-8")
    return results
