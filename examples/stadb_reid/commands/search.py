"""Searching gallery indexes with query images: ranked matches, a JSON report and an HTML page.

Several index folders (of one model) are searched as one gallery (:mod:`stadb_reid.search.shards`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DatasetNotFoundError, GalleryIndexError, ModelFolderError
from ..inference import ReIDExtractor
from ..model.folder.names import FOLDER_FILES
from ..search import QueryResult, Shards, render_page, search_shards
from ..search.exact import SearchMetric
from ..search.faiss_backend import import_faiss
from ..search.query import DEFAULT_RERANK_POOL, results_to_json
from ..search.shards import SearchBackend
from .extract import find_images

__all__ = ["check_search_outputs", "default_search_outputs", "search_gallery"]


def default_search_outputs(index_dir: Path) -> tuple[Path, Path]:
    """``INDEX-search.json`` and ``INDEX-search.html`` beside the index folder ``INDEX``."""
    stem = index_dir.parent / f"{index_dir.name}-search"
    return stem.with_name(f"{stem.name}.json"), stem.with_name(f"{stem.name}.html")


def check_search_outputs(
    index_dirs: Path | Sequence[Path], out_json: Path, out_html: Path, inputs: Iterable[str | Path] = ()
) -> None:
    """Refuse outputs that would overwrite each other, a file of the index, or an input of the search.

    Paths are compared resolved (symbolic links followed, ``..`` removed), so another spelling of the
    same file is caught too.

    Args:
        index_dirs: The gallery index folder, or several: no output may lie in any of them.
        out_json: The JSON report.
        out_html: The HTML page.
        inputs: Resolved paths no output may be: the query and gallery images, the model's files.

    Raises:
        ConfigError: Naming the option and the path.
    """
    outputs = {"--out-json": out_json, "--out-html": out_html}
    resolved = {option: path.resolve() for option, path in outputs.items()}
    if resolved["--out-json"] == resolved["--out-html"]:
        raise ConfigError(f"--out-json and --out-html name the same file {out_json}: give two paths")
    folders = [index_dirs] if isinstance(index_dirs, Path) else list(index_dirs)
    taken = {str(path) for path in inputs}
    for option, path in resolved.items():
        for folder in folders:
            if path == folder.resolve() or folder.resolve() in path.parents:
                raise ConfigError(
                    f"{option} {outputs[option]} lies in the gallery index {folder}: write it elsewhere"
                )
        if str(path) in taken:
            raise ConfigError(f"{option} {outputs[option]} is an input of the search: write it elsewhere")
        if path.is_dir():
            raise ConfigError(f"{option} {outputs[option]} is a folder: give a file name")


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # backslashreplace: an undecodable byte of a file name (a lone surrogate) has no UTF-8 form
        path.write_text(text, encoding="utf-8", errors="backslashreplace")
    except OSError as error:
        raise ConfigError(f"cannot write {path}: {error.strerror or error}") from None


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
        ConfigError: ``backend="faiss"`` without faiss installed; an output is the other, lies in the
            index folder or is an input (see :func:`check_search_outputs`), or cannot be written.
        ModelFolderError: The model folder is refused, or gives a query a non-finite embedding.
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
    model_files = [model.resolve() / name for name in FOLDER_FILES]
    gallery = [record.path for shard in shards.indexes for record in shard.records]
    check_search_outputs(folders, out_json, out_html, [*queries, *gallery, *model_files])
    extractor = ReIDExtractor(model, device=device, batch_size=batch_size, flip=index.manifest.flip)
    index.check_model(model, extractor.fingerprint)
    embeddings = extractor(queries, normalize=True)
    finite = np.isfinite(embeddings).all(axis=1)
    if not finite.all():
        raise ModelFolderError(
            f"the model {model} gives the query {queries[int(np.argmin(finite))]} a non-finite embedding "
            "(NaN or infinity)"
        )
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
    _write(out_json, json.dumps(report, indent=1, allow_nan=False) + "\n")  # standard JSON only
    where = f"gallery index {index_dir}" if len(folders) == 1 else f"{len(folders)} gallery indexes"
    summary = (
        f"{len(results)} {'query' if len(results) == 1 else 'queries'} · {where} "
        f"({len(shards)} images) · model {model} · {metric} · {backend}{', re-ranked' if rerank else ''} "
        f"· top {top_k}"
    )
    _write(out_html, render_page(results, title="Gallery search", settings=summary))
    return results
