"""Throughput of gallery search: images/s to index a gallery, queries/s against a 100k-embedding gallery.

Cases (one process; the cases of a part run interleaved, round by round, and medians are reported):

* ``index``: ``build_index`` of ``--images`` synthetic person images (``render_person``, 128 x 64 JPEG
  files) with a ``ReIDExtractor`` of a model folder holding a random-weight ResNet-50 STADB network
  (384 x 128 input, fp32, ``--batch-size`` images per pass, no flip), into a fresh index folder with
  chunks of ``--chunk-size`` images; ``extract`` is the extractor alone on the same images, so the
  difference is what the index adds (chunk files, manifest, labels).
* ``search``: a ``--gallery`` x ``--dim`` L2-normalised float32 gallery written as an index (chunks of
  1,024 rows) and read as ``stadb-reid search`` reads it: memory-mapped chunks (warm page cache).
  Queries are gallery rows plus noise, renormalised; batches of 1 and ``--queries`` queries, Euclidean.
  ``exact`` is :func:`~stadb_reid.search.exact.exact_search` (torch, blocks of 16,384 rows);
  ``faiss`` is :func:`~stadb_reid.search.faiss_backend.faiss_search` (a flat index built from the chunks
  on every call, as the command does; the build alone is timed as ``faiss-build``); ``rerank`` is
  ``rerank_nearest`` of ``--rerank-queries`` queries (exact shortlist of 100 per query, then
  k-reciprocal re-ranking).
  The exact and faiss top-10 rows are compared (``agreement``: the fraction that is identical).

Each timed call records how many cores other processes kept busy meanwhile (``/proc/stat``); on a
shared machine nothing is discarded, the figures are medians and the load is reported with them.

Usage::

    .venv/bin/python benchmarks/search.py [--rounds 5] [--tiny]

Writes ``search.json`` and ``search.md`` (the table) to ``--out`` (default ``benchmarks/out/``).
Results: ``benchmarks/RESULTS.md``, section "Gallery search".
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from threshold_drop import ForeignLoad, machine_description

from stadb_reid.config import config_to_dict, load_config
from stadb_reid.config.schema import IMAGENET_MEAN, IMAGENET_STD
from stadb_reid.data.synthetic import render_person
from stadb_reid.inference import ReIDExtractor
from stadb_reid.model import STADBNet
from stadb_reid.model.folder import model_folder_config, save_model_folder
from stadb_reid.search import GalleryIndex, build_index
from stadb_reid.search.exact import exact_search
from stadb_reid.search.faiss_backend import faiss_available, faiss_search, import_faiss
from stadb_reid.search.query import rerank_nearest

OUT_DIR = Path(__file__).resolve().parent / "out"


def timed(function: Callable[[], Any]) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds of this process, cores other processes kept busy) of one call."""
    load = ForeignLoad()
    load.start()
    start, cpu = time.perf_counter(), time.process_time()
    function()
    return time.perf_counter() - start, time.process_time() - cpu, load.foreign_cores()


def summary(times: dict[str, list[float]], items: int, unit: str) -> dict[str, Any]:
    wall, cpu = statistics.median(times["wall"]), statistics.median(times["cpu"])
    return {
        **{f"{key}_s": values for key, values in times.items()},
        "median_wall_s": wall,
        "median_cpu_s": cpu,
        f"{unit}_per_s": items / wall,
        f"{unit}_per_cpu_s": items / cpu,
        "foreign_cores_median": statistics.median(times["foreign"]),
        "items": items,
    }


def run_rounds(cases: dict[str, Callable[[], Any]], rounds: int) -> dict[str, dict[str, list[float]]]:
    """Each case once per round, the order rotated every round; wall, CPU and foreign load per case."""
    names = list(cases)
    out: dict[str, dict[str, list[float]]] = {n: {"wall": [], "cpu": [], "foreign": []} for n in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            for key, value in zip(("wall", "cpu", "foreign"), timed(cases[name]), strict=True):
                out[name][key].append(value)
        done = ", ".join(f"{n} {out[n]['wall'][-1]:.3f} s ({out[n]['cpu'][-1]:.3f} s CPU)" for n in names)
        print(f"  round {r + 1}/{rounds}: {done}", flush=True)
    return out


# ----------------------------------------------------------------------------------------- indexing
def model_folder(root: Path, backbone: str, height: int, width: int) -> Path:
    torch.manual_seed(0)
    run = load_config([], {"model.backbone": backbone, "data.height": height, "data.width": width})
    network = STADBNet(751, backbone=backbone)
    described = model_folder_config(
        network, config_to_dict(run), num_classes=751, mean=IMAGENET_MEAN, std=IMAGENET_STD
    )
    return save_model_folder(root / "model", network, described)


def bench_index(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    backbone, (height, width) = ("resnet18", (64, 32)) if args.tiny else ("resnet50", (384, 128))
    model = model_folder(root, backbone, height, width)
    images = root / "gallery"
    images.mkdir()
    paths = []
    for i in range(args.images):
        paths.append(images / f"{i % 50:04d}_c{1 + i % 6}s1_{i:06d}_01.jpg")
        render_person(i % 50, i % 6, image_seed=i).save(paths[-1], quality=90)
    extractor = ReIDExtractor(model, batch_size=args.batch_size)
    extractor(paths[: args.batch_size])  # warm-up: oneDNN picks its kernels
    counter = iter(range(10**6))

    def index() -> None:
        folder = root / f"index-{next(counter)}"
        build_index(folder, paths, extractor, model_path=model, chunk_size=args.chunk_size, progress=False)
        shutil.rmtree(folder)

    print(f"index: {args.images} images, {backbone} at {height} x {width}", flush=True)
    times = run_rounds({"index": index, "extract": lambda: extractor(paths)}, args.index_rounds)
    results = {name: summary(times[name], args.images, "images") for name in times}
    results["settings"] = {
        "backbone": backbone,
        "input": [height, width],
        "images": args.images,
        "batch_size": args.batch_size,
        "chunk_size": args.chunk_size,
        "embedding_dim": extractor.embedding_dim,
    }
    return results


# ------------------------------------------------------------------------------------------ search
class FakeEmbedder:
    """Hands over precomputed rows, so a large index is written without a network."""

    def __init__(self, rows: npt.NDArray[np.float32]) -> None:
        self.rows, self.fingerprint, self.embedding_dim, self.next = rows, "benchmark", rows.shape[1], 0

    def __call__(
        self, images: Sequence[Any], *, normalize: bool = True, as_tensor: bool = False
    ) -> npt.NDArray[np.float32]:
        out = self.rows[self.next : self.next + len(images)]
        self.next += len(images)
        return out


def unit_rows(rng: np.random.Generator, count: int, dim: int) -> npt.NDArray[np.float32]:
    rows = rng.standard_normal((count, dim), dtype=np.float32)
    unit: npt.NDArray[np.float32] = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return unit


def bench_search(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    gallery = unit_rows(rng, args.gallery, args.dim)
    paths = [Path(f"/gallery/{i:07d}.jpg") for i in range(args.gallery)]
    build_index(root / "search.index", paths, FakeEmbedder(gallery), model_path="benchmark", progress=False)
    chunks = GalleryIndex.open(root / "search.index").embeddings()
    picked = rng.choice(args.gallery, args.queries, replace=False)
    queries = gallery[picked] + 0.5 * unit_rows(rng, args.queries, args.dim)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    single = queries[:1]
    cases: dict[str, Callable[[], Any]] = {
        "exact-1": lambda: exact_search(single, chunks, 10),
        f"exact-{args.queries}": lambda: exact_search(queries, chunks, 10),
        f"rerank-{args.rerank_queries}": lambda: rerank_nearest(queries[: args.rerank_queries], chunks, 10),
    }
    agreement = None
    if faiss_available():
        faiss = import_faiss()

        def build() -> Any:
            index = faiss.IndexFlatL2(args.dim)
            for chunk in chunks:
                index.add(np.ascontiguousarray(chunk))  # as faiss_search adds them
            return index

        cases["faiss-build"] = build
        cases["faiss-1"] = lambda: faiss_search(single, chunks, 10)
        cases[f"faiss-{args.queries}"] = lambda: faiss_search(queries, chunks, 10)
        exact_rows, faiss_rows = exact_search(queries, chunks, 10)[1], faiss_search(queries, chunks, 10)[1]
        agreement = float((exact_rows == faiss_rows).mean())
        built = build()
        cases[f"faiss-search-only-{args.queries}"] = lambda: built.search(queries, 10)
    for case in cases.values():
        case()  # warm-up: page cache, BLAS and faiss threads
    print(f"search: {args.gallery} x {args.dim} gallery, {len(chunks)} chunks", flush=True)
    times = run_rounds(cases, args.rounds)
    results: dict[str, Any] = {}
    for name, measured in times.items():
        count = args.gallery if name == "faiss-build" else int(name.rsplit("-", 1)[1])
        results[name] = summary(measured, count, "rows" if name == "faiss-build" else "queries")
    found_rows = exact_search(queries, chunks, 1)[1][:, 0]
    results["settings"] = {
        "gallery": args.gallery,
        "dim": args.dim,
        "queries": args.queries,
        "rerank_queries": args.rerank_queries,
        "k": 10,
        "metric": "euclidean",
        "exact_faiss_top10_agreement": agreement,
        "query_source_found_at_rank1": float((found_rows == picked).mean()),
    }
    return results


def table(report: dict[str, Any]) -> str:
    lines = [
        "| part | case | wall (median) | throughput | CPU time (median) | per CPU-second | other processes |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for part in ("index", "search"):
        for name, row in report.get(part, {}).items():
            if name == "settings":
                continue
            unit = next(key for key in row if key.endswith("_per_s")).removesuffix("_per_s")
            wall, cpu = row["median_wall_s"] * 1e3, row["median_cpu_s"] * 1e3
            lines.append(
                f"| {part} | {name} | {wall:,.1f} ms | {row[f'{unit}_per_s']:,.1f} {unit}/s "
                f"| {cpu:,.1f} ms | {row[f'{unit}_per_cpu_s']:,.1f} {unit} "
                f"| {row['foreign_cores_median']:.2f} cores |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=96, help="gallery images to index")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--chunk-size", type=int, default=32)
    parser.add_argument("--index-rounds", type=int, default=3)
    parser.add_argument("--gallery", type=int, default=100_000, help="embeddings in the search gallery")
    parser.add_argument("--dim", type=int, default=1536, help="embedding size (STADB: 1536)")
    parser.add_argument("--queries", type=int, default=100, help="queries per batch")
    parser.add_argument("--rerank-queries", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=7, help="rounds of the search cases")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: index,search")
    parser.add_argument("--tiny", action="store_true", help="a smoke run: ResNet-18 at 64 x 32, small sizes")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args()
    if args.tiny:
        args.images, args.batch_size, args.chunk_size, args.index_rounds = 8, 4, 4, 1
        args.gallery, args.dim, args.queries, args.rerank_queries, args.rounds = 3000, 64, 10, 2, 2
    skip = set(filter(None, args.skip.split(",")))
    report: dict[str, Any] = {"machine": machine_description(), "command": " ".join(["python", *sys.argv])}
    with tempfile.TemporaryDirectory(prefix="search-bench-") as tmp:
        if "index" not in skip:
            report["index"] = bench_index(args, Path(tmp))
        if "search" not in skip:
            report["search"] = bench_search(args, Path(tmp))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "search.json").write_text(json.dumps(report, indent=2))
    (args.out / "search.md").write_text(table(report) + "\n")
    print(table(report))


if __name__ == "__main__":
    main()
