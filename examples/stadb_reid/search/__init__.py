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

from .html import render_page
from .index import GalleryIndex, build_index
from .query import Match, QueryResult, format_results, search_index
from .shards import Shards, search_shards

__all__ = [
    "GalleryIndex",
    "Match",
    "QueryResult",
    "Shards",
    "build_index",
    "format_results",
    "render_page",
    "search_index",
    "search_shards",
]
