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
* :mod:`~stadb_reid.search.ann`: the persisted faiss ANN index of an index folder (``ivf-pq``,
  ``hnsw``, ``flat``), extended with the gallery and memory-mapped by searches;
* :mod:`~stadb_reid.search.shards`: several index folders searched as one;
* :mod:`~stadb_reid.search.html`: the self-contained results page.
"""

from .ann import (
    ANN_KINDS,
    MIN_IVF_ROWS,
    AnnIndex,
    AnnKind,
    AnnPlan,
    AnnSummary,
    has_ann,
    plan_ann,
    remove_ann,
    update_ann,
)
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
    gather_rows,
    nearest,
    rerank_nearest,
    rerank_rows,
    results_to_json,
    search_index,
)
from .shards import DEFAULT_SHORTLIST, SearchBackend, Shards, refine, search_shards

__all__ = [
    "ANN_KINDS",
    "DEFAULT_BLOCK_ROWS",
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_RERANK_POOL",
    "DEFAULT_SHORTLIST",
    "MIN_IVF_ROWS",
    "AnnIndex",
    "AnnKind",
    "AnnPlan",
    "AnnSummary",
    "Backend",
    "Embedder",
    "Gallery",
    "GalleryIndex",
    "ImageRecord",
    "IndexManifest",
    "IndexSummary",
    "Match",
    "QueryResult",
    "SearchBackend",
    "SearchMetric",
    "Shards",
    "build_index",
    "exact_search",
    "faiss_available",
    "faiss_search",
    "format_results",
    "gather_rows",
    "has_ann",
    "import_faiss",
    "is_index",
    "nearest",
    "parse_labels",
    "plan_ann",
    "refine",
    "remove_ann",
    "remove_index",
    "render_page",
    "rerank_nearest",
    "rerank_rows",
    "results_to_json",
    "search_index",
    "search_shards",
    "thumbnail_uri",
    "update_ann",
]
