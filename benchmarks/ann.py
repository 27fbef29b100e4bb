"""The persisted ANN index at scale: recall against exact search, latency, throughput, size, build times.

A gallery of ``--rows`` x ``--dim`` synthetic embeddings with re-ID structure is written as an index
folder by :func:`~stadb_reid.search.build_index` (the code ``stadb-reid index`` runs; a fake embedder
hands over the rows), then gets its ANN index from :func:`~stadb_reid.search.ann.update_ann` (the code
``stadb-reid index --ann`` runs) in two steps: the first ``1 - --extend`` of the rows (train and add:
"build"), then the rest (added without retraining: "extend"). Searches go through
:func:`~stadb_reid.search.search_shards` as ``stadb-reid search`` does (memory-mapped ANN index,
exact re-scoring of a 30-row shortlist from the memory-mapped float32 chunks; ``--shortlist`` sweeps
other lengths).

Structure: ``rows / --views`` identities; an identity's centre is a standard normal vector in a
random ``--latent``-dimensional subspace; each view adds 0.35 x that much noise in the subspace and
0.03 per coordinate of isotropic noise, then is L2-normalised (views of one identity: cosine about
0.9; of two identities: about 0). Queries are further views of gallery identities.

Measured: recall@10 of the ANN search against :func:`~stadb_reid.search.exact.exact_search` over the same
chunks (``--queries`` queries), single-query latency percentiles (one query a call), queries/s in
batches of 100 for both, bytes an image of the ANN file, and the build and extend times; for each
``--shortlist`` and ``--nprobe`` value of a sweep, recall@10 and batch-of-100 queries/s.

Usage::

    .venv/bin/python benchmarks/ann.py [--rows 1000000] [--kind ivf-pq]

Writes ``ann.json`` to ``--out`` (default ``benchmarks/out/``). Results: ``benchmarks/RESULTS.md``,
section "ANN index".
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent))

from threshold_drop import machine_description

from stadb_reid.inference import keep_freed_memory
from stadb_reid.search import GalleryIndex, Shards, build_index, search_shards
from stadb_reid.search.ann import AnnSummary, update_ann
from stadb_reid.search.exact import exact_search
from stadb_reid.search.faiss_backend import import_faiss
from stadb_reid.search.shards import DEFAULT_SHORTLIST

OUT_DIR = Path(__file__).resolve().parent / "out"


class Structured:
    """Row ``i``: view ``i % views`` of identity ``i // views``; deterministic per row block."""

    def __init__(self, args: argparse.Namespace) -> None:
        rng = np.random.default_rng(0)
        self.basis = np.linalg.qr(rng.standard_normal((args.dim, args.latent)))[0].T.astype(np.float32)
        self.centres = rng.standard_normal((args.rows // args.views + 1, args.latent), dtype=np.float32)
        self.views, self.dim, self.latent = args.views, args.dim, args.latent

    def rows(self, identities: npt.NDArray[np.int64], seed: int) -> npt.NDArray[np.float32]:
        rng = np.random.default_rng(seed)
        latent = self.centres[identities] + 0.35 * rng.standard_normal(
            (len(identities), self.latent), dtype=np.float32
        )
        rows = latent @ self.basis + 0.03 * rng.standard_normal((len(identities), self.dim), dtype=np.float32)
        out: npt.NDArray[np.float32] = rows / np.linalg.norm(rows, axis=1, keepdims=True)
        return out


class Embedder:
    """The fake extractor: rows by the number in the image's name."""

    def __init__(self, data: Structured) -> None:
        self.data, self.fingerprint, self.embedding_dim = data, "benchmark", data.dim

    def __call__(self, images: Sequence[Any], *, normalize: bool = True, as_tensor: bool = False) -> Any:
        numbers = np.array([int(Path(path).stem) for path in images])
        return self.data.rows(numbers // self.data.views, seed=int(numbers[0]) + 1)


def timed(function: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def measure(
    shards: Shards,
    queries: npt.NDArray[np.float32],
    truth: npt.NDArray[np.int64],
    rounds: int,
    *,
    shortlist: int = DEFAULT_SHORTLIST,
    singles: bool = True,
) -> dict[str, Any]:
    """Recall@10 against ``truth``, batch-of-100 queries/s and (``singles``) single-query latency."""
    options: dict[str, Any] = {"top_k": 10, "backend": "ann", "shortlist": shortlist}
    results = search_shards(shards, queries, [""] * len(queries), **options)
    found = [[m.row for m in result.matches] for result in results]
    recall = float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)]))
    batch = queries[:100]
    batches = [
        timed(lambda: search_shards(shards, batch, [""] * len(batch), **options))[0] for _ in range(rounds)
    ]
    report: dict[str, Any] = {
        "recall_at_10": recall,
        "batch100_queries_per_s": len(batch) / statistics.median(batches),
    }
    if singles:
        times = [timed(lambda q=q: search_shards(shards, q[None], [""], **options))[0] for q in queries[:100]]
        report["single_query_ms"] = {
            "p50": 1e3 * statistics.median(times),
            "p90": 1e3 * float(np.percentile(times, 90)),
        }
    return report


def sweep(
    values: str, measure_one: Callable[[int], dict[str, Any]], exact_rate: float, name: str
) -> dict[int, dict[str, Any]]:
    """``measure_one(value)`` for each of the comma-separated ``values``, with the speed-up over exact."""
    results = {}
    for value in [int(v) for v in values.split(",") if v]:
        results[value] = measure_one(value)
        results[value]["speedup_batch100"] = results[value]["batch100_queries_per_s"] / exact_rate
        print(f"{name} {value}: {json.dumps(results[value])}", flush=True)
    return results


def measure_nprobe(
    shards: Shards, queries: npt.NDArray[np.float32], truth: npt.NDArray[np.int64], rounds: int, nprobe: int
) -> dict[str, Any]:
    """:func:`measure` with the IVF index's ``nprobe`` set to ``nprobe`` (it stays set)."""
    ann = shards.anns[0]
    assert ann is not None
    import_faiss().extract_index_ivf(ann.index).nprobe = nprobe
    return measure(shards, queries, truth, rounds)


def build(
    args: argparse.Namespace, data: Structured, folder: Path
) -> tuple[dict[str, Any], AnnSummary | None]:
    """Write the chunks, build the ANN index on the first rows, extend it with the rest; the timings."""
    first = int(args.rows * (1 - args.extend))
    paths = [Path(f"/gallery/{i:09d}.jpg") for i in range(args.rows)]
    embed = Embedder(data)
    write_s, _ = timed(lambda: build_index(folder, paths[:first], embed, model_path="m", progress=False))
    print(f"wrote {first} rows in {write_s:.0f} s", flush=True)
    build_s, built = timed(lambda: update_ann(GalleryIndex.open(folder), args.kind))
    print(f"built {built} in {build_s:.0f} s", flush=True)
    build_index(folder, paths, embed, model_path="m", progress=False)
    extend_s, extended = timed(lambda: update_ann(GalleryIndex.open(folder)))
    print(f"extended {extended} in {extend_s:.0f} s", flush=True)
    times = {"write_chunks_s": write_s, "build_s": build_s, "build_rows": first, "extend_s": extend_s}
    return {**times, "extend_rows": args.rows - first}, extended


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=1536)
    parser.add_argument("--views", type=int, default=8, help="views an identity")
    parser.add_argument("--latent", type=int, default=64, help="dimension of the identities' subspace")
    parser.add_argument("--kind", default="ivf-pq", choices=["ivf-pq", "hnsw", "flat"])
    parser.add_argument("--extend", type=float, default=0.1, help="fraction of the rows added afterwards")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--nprobe", default="", help="ivf-pq: comma-separated nprobe values also measured (a sweep)"
    )
    parser.add_argument(
        "--shortlist",
        default="",
        help=f"comma-separated shortlist lengths also measured (a sweep; the default is {DEFAULT_SHORTLIST})",
    )
    parser.add_argument("--folder", type=Path, default=None, help="index folder (default: a temporary one)")
    parser.add_argument(
        "--search-only", action="store_true", help="measure the searches of an existing --folder only"
    )
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args()
    data = Structured(args)
    report: dict[str, Any] = {
        "machine": machine_description(),
        "command": " ".join(["python", *sys.argv]),
        "keep_freed_memory": keep_freed_memory(),  # as stadb-reid index and search do
    }
    report["settings"] = {
        k: getattr(args, k) for k in ("rows", "dim", "views", "latent", "kind", "extend", "queries")
    }
    with tempfile.TemporaryDirectory(prefix="ann-bench-") as tmp:
        folder = args.folder or Path(tmp) / "gallery.index"
        times: dict[str, Any] = {}
        if args.search_only:  # a folder built by an earlier run of the same settings
            extended = update_ann(GalleryIndex.open(folder))
        else:
            times, extended = build(args, data, folder)
        assert extended is not None, "the folder has no ANN index"
        report.update(times)
        plan = extended.plan
        report["plan"] = {"kind": plan.kind, "factory": plan.factory, "nprobe": plan.nprobe}
        shards = Shards.open([folder])
        rng = np.random.default_rng(1)
        queries = data.rows(rng.integers(0, args.rows // args.views, args.queries), seed=10**9)
        chunks = shards.chunks
        report["exact_search_for_recall_s"], (_, truth) = timed(lambda: exact_search(queries, chunks, 10))
        exact_batch = [timed(lambda: exact_search(queries[:100], chunks, 10))[0] for _ in range(args.rounds)]
        exact_rate = len(queries[:100]) / statistics.median(exact_batch)
        report["exact_batch100_queries_per_s"] = exact_rate
        report.update(measure(shards, queries, truth, args.rounds))
        report["speedup_batch100"] = report["batch100_queries_per_s"] / exact_rate
        report["shortlist_sweep"] = sweep(  # before the nprobe sweep, which leaves nprobe changed
            args.shortlist,
            lambda n: measure(shards, queries, truth, args.rounds, shortlist=n, singles=False),
            exact_rate,
            "shortlist",
        )
        report["nprobe_sweep"] = sweep(
            args.nprobe,
            lambda n: measure_nprobe(shards, queries, truth, args.rounds, n),
            exact_rate,
            "nprobe",
        )
        report["ann_bytes"] = extended.bytes
        report["ann_bytes_per_image"] = extended.bytes / args.rows
        report["float32_bytes_per_image"] = 4 * args.dim
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ann.json").write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k != "machine"}, indent=1))


if __name__ == "__main__":
    main()
