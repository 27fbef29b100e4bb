"""Gallery search: embed a gallery once into an index folder, then find the nearest images of queries.

Typical use (the ``stadb-reid index`` and ``stadb-reid search`` commands do this)::

    extractor = ReIDExtractor("model/")  # stadb_reid.inference
    build_index(Path("gallery.index"), image_paths, extractor, model_path="model/")  # resumable
    index = GalleryIndex.open(Path("gallery.index"))
    results = search_index(index, extractor(query_paths), query_paths, top_k=10, rerank=True)
    Path("results.html").write_text(render_page(results, title="Gallery search"))

* :mod:`~stadb_reid.search.index`: the index folder (chunks of embeddings, a manifest), built,
  resumed and extended without re-embedding what it holds;
* :mod:`~stadb_reid.search.manifest`: the manifest and the labels parsed from file names;
* :mod:`~stadb_reid.search.exact` and :mod:`~stadb_reid.search.faiss_backend`: exact top-k, in
  torch by default or with faiss (optional);
* :mod:`~stadb_reid.search.query`: searching an index, with optional k-reciprocal re-ranking;
* :mod:`~stadb_reid.search.html`: the self-contained results page.
"""

from .exact import DEFAULT_BLOCK_ROWS, Gallery, SearchMetric, exact_search
from .faiss_backend import faiss_available, faiss_search, import_faiss
from .html import render_page, thumbnail_uri
from .index import (
    DEFAULT_CHUNK_SIZE,
    Embedder,
    GalleryIndex,
    IndexSummary,
    build_index,
    is_index,
    remove_index,
)
from .manifest import ImageRecord, IndexManifest, parse_labels
from .query import (
    DEFAULT_RERANK_POOL,
    Backend,
    Match,
    QueryResult,
    format_results,
    nearest,
    rerank_nearest,
    results_to_json,
    search_index,
)

__all__ = [
    "DEFAULT_BLOCK_ROWS",
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_RERANK_POOL",
    "Backend",
    "Embedder",
    "Gallery",
    "GalleryIndex",
    "ImageRecord",
    "IndexManifest",
    "IndexSummary",
    "Match",
    "QueryResult",
    "SearchMetric",
    "build_index",
    "exact_search",
    "faiss_available",
    "faiss_search",
    "format_results",
    "import_faiss",
    "is_index",
    "nearest",
    "parse_labels",
    "remove_index",
    "render_page",
    "rerank_nearest",
    "results_to_json",
    "search_index",
    "thumbnail_uri",
]
