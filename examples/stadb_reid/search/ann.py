"""A persisted approximate-nearest-neighbour (ANN) index of a gallery index's embeddings, with faiss.

``stadb-reid index --ann KIND`` trains a faiss index on the gallery's embeddings and saves it in the
index folder; running ``index`` again adds the new rows to it (no retraining, no re-embedding), and
``search`` memory-maps it instead of building anything. The float32 chunks stay the reference: the
ANN index proposes a shortlist of ``max(k, shortlist)`` rows per query, whose exact distances are
then read from the memory-mapped chunks, so the reported distances are exact and the order is
exact within the shortlist.

Kinds (faiss ``index_factory`` strings, L2 on the L2-normalised embeddings, which orders as cosine):

* ``ivf-pq``: ``IVF{nlist},PQ{D/4}x4fs``: an inverted file of ``nlist`` lists (a power of two near
  ``4 sqrt(N)``, at most ``N / 39`` so that k-means has 39 points a centroid) holding 4-bit product
  codes of the residuals, scanned with faiss's SIMD "fast scan" kernels: ``D / 8`` bytes an image
  (192 for ``D = 1536``, 1/32 of float32) plus an 8-byte id. ``nprobe = nlist / 16`` lists (at
  least 16) are visited a query: on a million structured 1,536-dimensional embeddings that gave
  recall@10 0.958 against exact search, where ``nlist / 64`` gave 0.898 (``benchmarks/ann.py``).
  A gallery under :data:`MIN_IVF_ROWS` images gets ``flat`` instead (said in the summary): it is exact
  and fast at that size, and too few rows would train poor centroids.
* ``hnsw``: ``HNSW32``, a navigable small-world graph over the float32 rows: the lowest latency and
  best recall, at the float32 memory plus 256 bytes an image.
* ``flat``: ``Flat``: exact, persisted, so ``search`` no longer builds it on every call.

Layout: ``INDEX/ann.json`` (what was built, for which model, rows, file size) names the faiss file
``INDEX/ann-NNNNNNNN.faiss``. A new file is written under a temporary name and renamed; ``ann.json``
is then replaced atomically, which commits it, and the file it named before is deleted. A killed run
leaves the previous ANN index intact (and an orphan file, deleted by the next run).
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from ..errors import GalleryIndexError
from .faiss_backend import import_faiss
from .index import GalleryIndex
from .manifest import write_atomically

__all__ = [
    "ANN_KINDS",
    "ANN_META_NAME",
    "MIN_IVF_ROWS",
    "AnnIndex",
    "AnnKind",
    "AnnPlan",
    "AnnSummary",
    "has_ann",
    "plan_ann",
    "remove_ann",
    "update_ann",
]

AnnKind = Literal["ivf-pq", "hnsw", "flat"]
"""An ANN index type: see the module docstring."""

ANN_KINDS: tuple[AnnKind, ...] = ("ivf-pq", "hnsw", "flat")
#: File name of the ANN description inside an index folder.
ANN_META_NAME = "ann.json"
#: Smallest gallery that gets an ``ivf-pq`` index; a smaller one gets ``flat``.
MIN_IVF_ROWS = 10_000
_FORMAT = "stadb-reid-ann"
_VERSION = 1
_FILE_RE = re.compile(r"^ann-(\d{8})\.faiss$")
_ADD_ROWS = 65_536  # rows per faiss add call: bounds the float32 copy of memory-mapped chunks
_TRAIN_PER_LIST = 40  # k-means sample: rows per inverted list (faiss warns below 39)
_HNSW_EF_SEARCH = 128
#: faiss's fast-scan search threaded over (query, visited list) pairs instead of over queries: at a
#: million rows, batches of 100, 1.3 to 1.6 times the default's throughput on 2 cores, same recall.
_FAST_SCAN_IMPLEM = 14


@dataclass(frozen=True)
class AnnPlan:
    """The index a gallery of ``rows`` images gets for a requested kind.

    Attributes:
        requested: The kind asked for.
        kind: The kind built (``flat`` for a gallery too small for ``ivf-pq``).
        factory: The faiss ``index_factory`` string.
        nprobe: Inverted lists visited a query (``ivf-pq``), else 0.
        note: Why ``kind`` differs from ``requested``, else ``None``.
    """

    requested: AnnKind
    kind: AnnKind
    factory: str
    nprobe: int
    note: str | None


def _pq_subquantizers(dim: int) -> int:
    """``dim / 4`` 4-bit sub-quantizers (half a byte per 4 dimensions), rounded to a divisor of ``dim``."""
    return max(m for m in range(1, max(dim // 4, 1) + 1) if dim % m == 0)


def plan_ann(requested: AnnKind, rows: int, dim: int) -> AnnPlan:
    """The faiss index a gallery of ``rows`` ``dim``-dimensional embeddings gets for ``requested``.

    Examples:
        >>> plan_ann("ivf-pq", 1_000_000, 1536).factory
        'IVF4096,PQ384x4fs'
        >>> plan_ann("ivf-pq", 500, 1536).kind
        'flat'
    """
    if requested not in ANN_KINDS:
        raise ValueError(f"ANN kind must be one of {', '.join(ANN_KINDS)}, got {requested!r}")
    if requested == "hnsw":
        return AnnPlan(requested, "hnsw", "HNSW32", 0, None)
    if requested == "flat" or rows < MIN_IVF_ROWS:
        note = None
        if requested != "flat":
            note = f"{rows:,} images are too few for ivf-pq (it needs {MIN_IVF_ROWS:,}): built flat (exact)"
        return AnnPlan(requested, "flat", "Flat", 0, note)
    nlist = 2 ** round(math.log2(4 * math.sqrt(rows)))
    while nlist > rows / 39:
        nlist //= 2
    nprobe = min(nlist, max(16, nlist // 16))
    return AnnPlan(requested, "ivf-pq", f"IVF{nlist},PQ{_pq_subquantizers(dim)}x4fs", nprobe, None)


@dataclass(frozen=True)
class AnnSummary:
    """What :func:`update_ann` did: the plan, rows in the ANN index, rows added now, whether it trained."""

    plan: AnnPlan
    rows: int
    added: int
    trained: bool
    bytes: int


def has_ann(folder: Path) -> bool:
    """Whether ``folder`` holds an ANN description (not checked further)."""
    return (folder / ANN_META_NAME).is_file()


def remove_ann(folder: Path) -> None:
    """Delete the ANN files of an index folder (faiss files, temporaries, then ``ann.json``), nothing else."""
    for path in folder.iterdir():
        if _FILE_RE.match(path.name) or _is_temporary(path.name):
            path.unlink()
    (folder / ANN_META_NAME).unlink(missing_ok=True)


def _is_temporary(name: str) -> bool:
    return name.startswith((".ann-", f".{ANN_META_NAME}.")) and name.endswith(".tmp")


class AnnIndex:
    """The ANN index of a gallery index, checked against its manifest.

    Use :meth:`open`. ``meta`` is ``ann.json``; ``index`` the faiss index.
    """

    def __init__(self, gallery: GalleryIndex, meta: dict[str, Any], index: Any) -> None:
        self.gallery = gallery
        self.meta = meta
        self.index = index

    @property
    def kind(self) -> AnnKind:
        """The kind built."""
        kind: AnnKind = self.meta["kind"]
        return kind

    @classmethod
    def open(cls, gallery: GalleryIndex, *, mmap: bool = True, rows: int | None = None) -> AnnIndex:
        """Read and check the ANN index of ``gallery``; memory-map it unless ``mmap`` is false.

        Args:
            gallery: The gallery index whose folder holds it.
            mmap: Map the file read-only (search) instead of reading it into memory (extension).
            rows: The row count it must hold; default: the gallery's.

        Raises:
            GalleryIndexError: It is missing, damaged, or does not match the gallery (row count,
                dimension, model fingerprint); one line naming the folder.
        """
        folder = gallery.folder
        meta = _read_meta(folder)
        manifest = gallery.manifest
        rows = len(gallery) if rows is None else rows
        if meta["fingerprint"] != manifest.fingerprint:
            raise _damaged(
                folder, f"built for model {meta['fingerprint']}, the gallery's is {manifest.fingerprint}"
            )
        if meta["embedding_dim"] != manifest.embedding_dim:
            raise _damaged(
                folder, f"{meta['embedding_dim']} dimensions, the gallery has {manifest.embedding_dim}"
            )
        if meta["rows"] != rows:
            raise GalleryIndexError(
                f"the ANN index of {folder} holds {meta['rows']:,} rows, the gallery {rows:,}: "
                "run stadb-reid index again on this folder to bring it up to date",
                folder,
            )
        path = folder / meta["file"]
        size = path.stat().st_size if path.is_file() else -1
        if size != meta["bytes"]:
            raise _damaged(folder, f"{path.name} has {size:,} bytes, ann.json says {meta['bytes']:,}")
        faiss = import_faiss()
        try:
            index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC if mmap else 0)
        except RuntimeError as error:
            raise _damaged(folder, f"faiss cannot read {path.name} ({_first_line(error)})") from None
        if index.d != meta["embedding_dim"] or index.ntotal != meta["rows"]:
            raise _damaged(
                folder,
                f"{path.name} holds {index.ntotal} x {index.d}, ann.json says "
                f"{meta['rows']} x {meta['embedding_dim']}",
            )
        _set_search_parameters(faiss, index, meta)
        return cls(gallery, meta, index)

    def search(self, queries: npt.NDArray[np.float32], n: int) -> npt.NDArray[np.int64]:
        """``(Q, min(n, rows))`` candidate rows of each query, best first (``-1`` where none was found)."""
        q = np.ascontiguousarray(queries, dtype=np.float32)
        _, rows = self.index.search(q, min(n, self.index.ntotal))
        found: npt.NDArray[np.int64] = rows.astype(np.int64)
        return found


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[-1] if lines else type(error).__name__


def _damaged(folder: Path, why: str) -> GalleryIndexError:
    return GalleryIndexError(
        f"the ANN index of {folder} does not match the gallery: {why}; "
        "rebuild it with stadb-reid index --ann KIND",
        folder,
    )


def _read_meta(folder: Path) -> dict[str, Any]:
    path = folder / ANN_META_NAME
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GalleryIndexError(
            f"{folder} has no ANN index: build one with stadb-reid index --ann KIND", folder
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _damaged(folder, f"unreadable {ANN_META_NAME} ({error})") from None
    kinds = {"requested": str, "kind": str, "factory": str, "file": str, "fingerprint": str}
    counts = ("rows", "embedding_dim", "bytes", "nprobe")
    if (
        not isinstance(meta, dict)
        or meta.get("format") != _FORMAT
        or meta.get("version") != _VERSION
        or any(not isinstance(meta.get(key), kind) for key, kind in kinds.items())
        or any(type(meta.get(key)) is not int or meta[key] < 0 for key in counts)
        or meta["kind"] not in ANN_KINDS
        or meta["requested"] not in ANN_KINDS
        or not _FILE_RE.match(meta["file"])
    ):
        raise _damaged(folder, f"{ANN_META_NAME} is not a valid ANN description")
    return meta


def _set_search_parameters(faiss: Any, index: Any, meta: dict[str, Any]) -> None:
    if meta["kind"] == "ivf-pq":
        faiss.extract_index_ivf(index).nprobe = meta["nprobe"]
        if hasattr(index, "implem"):  # the fast-scan (4-bit PQ) index
            index.implem = _FAST_SCAN_IMPLEM
    elif meta["kind"] == "hnsw":
        index.hnsw.efSearch = _HNSW_EF_SEARCH


def _rows(gallery: GalleryIndex, start: int, stop: int) -> Any:
    """Float32 blocks of the gallery's rows ``start:stop``, at most ``_ADD_ROWS`` each."""
    offset = 0
    for chunk in gallery.embeddings():
        lo, hi = max(start - offset, 0), min(stop - offset, len(chunk))
        for s in range(lo, hi, _ADD_ROWS):
            yield np.ascontiguousarray(chunk[s : min(s + _ADD_ROWS, hi)], dtype=np.float32)
        offset += len(chunk)


def _train_sample(gallery: GalleryIndex, count: int) -> npt.NDArray[np.float32]:
    """``count`` rows spread evenly over the gallery (deterministic)."""
    from .query import gather_rows

    picked = np.unique(np.linspace(0, len(gallery) - 1, count).astype(np.int64))
    return gather_rows(gallery.embeddings(), picked)


def _new_index(faiss: Any, gallery: GalleryIndex, plan: AnnPlan) -> Any:
    index = faiss.index_factory(gallery.manifest.embedding_dim, plan.factory)
    if not index.is_trained:
        nlist = faiss.extract_index_ivf(index).nlist
        index.train(_train_sample(gallery, min(len(gallery), _TRAIN_PER_LIST * nlist)))
    return index


def _write_index(faiss: Any, index: Any, folder: Path, number: int) -> tuple[str, int]:
    """Write ``index`` as ``ann-NUMBER.faiss`` through a temporary name; its name and size."""
    name = f"ann-{number:08d}.faiss"
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    os.close(handle)
    try:
        faiss.write_index(index, temporary)
        with open(temporary, "rb+") as file:
            os.fsync(file.fileno())
        os.replace(temporary, folder / name)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return name, (folder / name).stat().st_size


def update_ann(gallery: GalleryIndex, kind: AnnKind | None = None) -> AnnSummary | None:
    """Build, or bring up to date, the ANN index of a finished gallery index.

    An existing ANN index gets the gallery's new rows added (no retraining) when ``kind`` is omitted
    or is the kind it was requested as; it is rebuilt from the stored embeddings (never re-embedded)
    when ``kind`` names another kind, or when a gallery that got ``flat`` for its size has grown
    enough for the ``ivf-pq`` it asked for.

    Args:
        gallery: A finished gallery index.
        kind: The kind to build; default: the existing ANN index's, or none.

    Returns:
        What was done, or ``None`` when there is no ANN index and ``kind`` is ``None``.

    Raises:
        GalleryIndexError: The gallery is unfinished, or the existing ANN index is damaged or of
            another model.
        ConfigError: faiss is not installed.
    """
    folder = gallery.folder
    existing = _read_meta(folder) if has_ann(folder) else None
    if kind is None:
        if existing is None:
            return None
        kind = existing["requested"]
    requested: AnnKind = kind
    faiss = import_faiss()
    plan = plan_ann(requested, len(gallery), gallery.manifest.embedding_dim)
    keep = existing is not None and existing["requested"] == requested and existing["kind"] == plan.kind
    if keep:
        assert existing is not None
        if existing["rows"] > len(gallery):
            raise _damaged(folder, f"it holds {existing['rows']:,} rows, the gallery only {len(gallery):,}")
        old = AnnIndex.open(gallery, mmap=False, rows=existing["rows"])
        index, start, factory, nprobe = old.index, existing["rows"], existing["factory"], existing["nprobe"]
        plan = AnnPlan(requested, plan.kind, factory, nprobe, plan.note)
        if start == len(gallery):
            return AnnSummary(plan, start, 0, False, existing["bytes"])
    else:
        index, start = _new_index(faiss, gallery, plan), 0
    for block in _rows(gallery, start, len(gallery)):
        index.add(block)
    numbers = [int(m[1]) for p in folder.iterdir() if (m := _FILE_RE.match(p.name))]
    name, size = _write_index(faiss, index, folder, max(numbers, default=0) + 1)
    meta = {
        "format": _FORMAT,
        "version": _VERSION,
        **{key: value for key, value in asdict(plan).items() if key != "note"},
        "file": name,
        "bytes": size,
        "rows": len(gallery),
        "embedding_dim": gallery.manifest.embedding_dim,
        "fingerprint": gallery.manifest.fingerprint,
    }
    text = json.dumps(meta, indent=1)
    write_atomically(folder / ANN_META_NAME, lambda file: file.write(text.encode("utf-8")))
    for path in folder.iterdir():  # what ann.json no longer names: the old file, a killed run's leftovers
        if (_FILE_RE.match(path.name) and path.name != name) or _is_temporary(path.name):
            path.unlink()
    return AnnSummary(plan, len(gallery), len(gallery) - start, not keep, size)
