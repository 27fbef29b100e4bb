"""Extraction speed of every precision path side by side, against the machine's own matmul rates.

Parts (one process):

* ``paths``: images/s of a random-weight ResNet-50 STADB network (the shapes and FLOPs of a trained one)
  at ``--height x --width``, batch ``--batch-size``, for each path: ``auto`` (what the extractor's
  default runs here, for a run of unknown size), ``fp32`` (eager, the reference),
  ``fp32-cl`` (eager, channels-last), ``bf16-autocast`` (the old ``amp="bf16"``), ``bf16`` and ``onnx``
  (the extractor's own runtimes), ``compile`` and ``compile-bf16`` (``torch.compile`` with Inductor
  freezing, fp32 and bf16 channels-last; ``--compile``), ``openvino-fp32`` and ``openvino-bf16`` (when
  openvino is installed). Rounds run every path once, in rotated order; medians of ``--rounds`` rounds.
  A path's speed against ``fp32`` is the median of the rounds' ratios.
  The same run measures an fp32 and a bf16 ``torch.mm`` (``--matmul`` square) the same way, and the
  network's FLOPs (``torch.utils.flop_counter``), so each path's GFLOP/s is also a share of both matmul
  rates. Each path's minimum cosine similarity to fp32 on the batch is reported too; ``--profile`` adds
  the ``auto`` path's time by operator (one batch, ``torch.profiler``).
* ``index``: ``stadb-reid index`` (:func:`~stadb_reid.commands.index_gallery`, ``auto`` precision,
  ``--workers`` decoding processes, by default as many as ``index`` starts) of ``--images`` JPEG
  files against the same extractor on the same images already decoded and resized in memory,
  interleaved. The default, 1,024 images (one chunk), spreads the fixed costs of a run (forking the
  workers, the first batch) as a gallery of thousands does.

The process keeps freed memory as the commands do (:func:`~stadb_reid.inference.keep_freed_memory`);
``--malloc-default`` measures without it.

Usage::

    .venv/bin/python benchmarks/extract.py [--rounds 3] [--compile] [--tiny]

Writes ``extract.json`` to ``--out`` (default ``benchmarks/out/``) and prints the table.
Results: ``benchmarks/RESULTS.md``, section "Extraction speed".
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))

from search import model_folder
from threshold_drop import machine_description

from stadb_reid.commands import index_gallery
from stadb_reid.commands.extract import decoding_workers, find_images
from stadb_reid.commands.streaming import StreamingEmbedder, pending_images
from stadb_reid.data.synthetic import render_person
from stadb_reid.inference import ReIDExtractor, keep_freed_memory
from stadb_reid.inference import precision as precision_module
from stadb_reid.inference.precision import cpu_has_native_bf16, onnx_program
from stadb_reid.search import GalleryIndex, build_index

OUT_DIR = Path(__file__).resolve().parent / "out"
LARGE_RUN = 15_913  # a Market-1501 gallery: the auto choice of index and extract for it is reported


def timed(function: Callable[[], Any]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def rounds(cases: dict[str, Callable[[], Any]], count: int) -> dict[str, list[float]]:
    names = list(cases)
    out: dict[str, list[float]] = {name: [] for name in cases}
    for r in range(count):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            out[name].append(timed(cases[name]))
        print(f"  round {r + 1}/{count}: " + ", ".join(f"{n} {out[n][-1]:.2f} s" for n in names), flush=True)
    return out


def operator_shares(function: Callable[[], Any], top: int = 8) -> dict[str, float]:
    """Shares of one call's CPU time by operator (self time), the largest ``top``, after a warm-up call."""
    from torch.profiler import ProfilerActivity, profile

    function()
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        function()
    events = profiler.key_averages()
    total = sum(event.self_cpu_time_total for event in events)
    ranked = sorted(events, key=lambda event: -event.self_cpu_time_total)[:top]
    return {event.key: event.self_cpu_time_total / total for event in ranked}


def onnx_int8_path(network: torch.nn.Module, x: torch.Tensor, calibration: torch.Tensor, folder: Path) -> Any:
    """ONNX Runtime on the network quantised to int8 (static, QDQ, per-channel weights), calibrated on
    ``calibration`` (normalised synthetic people): the int8 candidate, measured for speed and parity."""
    ort: Any = importlib.import_module("onnxruntime")
    quantization: Any = importlib.import_module("onnxruntime.quantization")

    class Batches(quantization.CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.batches = iter(calibration.split(8))

        def get_next(self) -> dict[str, Any] | None:
            batch = next(self.batches, None)
            return None if batch is None else {"images": batch.numpy()}

    fp32, int8 = folder / "fp32.onnx", folder / "int8.onnx"
    onnx_program(network, x[:2]).save(str(fp32))
    quantization.quantize_static(
        str(fp32), str(int8), Batches(), quant_format=quantization.QuantFormat.QDQ, per_channel=True
    )
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(int8), options, providers=["CPUExecutionProvider"])
    return lambda: torch.from_numpy(session.run(["embeddings"], {"images": x.numpy()})[0])


def openvino_paths(network: torch.nn.Module, x: torch.Tensor) -> dict[str, Callable[[], Any]]:
    if importlib.util.find_spec("openvino") is None:
        return {}
    ov: Any = importlib.import_module("openvino")
    core = ov.Core()
    converted = ov.convert_model(network, example_input=x)
    paths: dict[str, Callable[[], Any]] = {}
    for name, hint in (("openvino-fp32", "f32"), ("openvino-bf16", "bf16")):
        compiled = core.compile_model(
            converted, "CPU", {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "THROUGHPUT"}
        )
        paths[name] = infer(compiled.create_infer_request(), x)
    return paths


def infer(request: Any, x: torch.Tensor) -> Callable[[], torch.Tensor]:
    return lambda: torch.from_numpy(request.infer([x.numpy()])[0].copy())


def bench_paths(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    folder = model_folder(root, args.backbone, args.height, args.width)
    x = torch.rand(args.batch_size, 3, args.height, args.width)
    extractors: dict[str, ReIDExtractor] = {}
    setup_s: dict[str, float] = {}
    for name in ("fp32", "bf16", "onnx"):  # setup: loading, and bf16's folding or onnx's export
        start = time.perf_counter()
        extractors[name] = ReIDExtractor(folder, precision=name)
        setup_s[name] = time.perf_counter() - start
    network = extractors["fp32"].network
    normalised = extractors["fp32"]._normalised(x)
    channels_last = copy.deepcopy(network).to(memory_format=torch.channels_last)
    x_cl = normalised.contiguous(memory_format=torch.channels_last)

    def eager(
        model: Callable[[torch.Tensor], torch.Tensor], batch: torch.Tensor, dtype: torch.dtype | None = None
    ) -> torch.Tensor:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is not None):
            out: torch.Tensor = model(batch).float()
        return out

    auto = ReIDExtractor(folder)
    paths: dict[str, Callable[[], Any]] = {
        "auto": lambda: auto._run(normalised),
        "fp32": lambda: extractors["fp32"]._run(normalised),
        "fp32-cl": lambda: eager(channels_last, x_cl),
        "bf16-autocast": lambda: eager(channels_last, x_cl, torch.bfloat16),
        "bf16": lambda: extractors["bf16"]._run(normalised),
        "onnx": lambda: extractors["onnx"]._run(normalised),
    }
    native_bf16 = not args.no_native_bf16 and cpu_has_native_bf16() is not False
    if not native_bf16:  # emulated bf16 is several times slower than fp32: not a path to time
        del paths["bf16"], paths["bf16-autocast"]
    if args.compile:
        import torch._inductor.config as inductor

        inductor.freezing = True
        compiled = torch.compile(network)
        low = copy.deepcopy(network).to(torch.bfloat16).to(memory_format=torch.channels_last)
        compiled_bf16, x_bf16 = torch.compile(low), x_cl.to(torch.bfloat16)
        paths["compile"] = lambda: eager(compiled, normalised)
        if native_bf16:
            paths["compile-bf16"] = lambda: eager(compiled_bf16, x_bf16)
    paths.update(openvino_paths(network, normalised))
    if args.int8:
        people = [
            render_person(i % 16, i % 2, image_seed=i, height=args.height, width=args.width)
            for i in range(64)
        ]
        calibration = extractors["fp32"]._normalised(
            torch.stack([extractors["fp32"]._single(p) for p in people])
        )
        paths["onnx-int8"] = onnx_int8_path(network, normalised, calibration, root)
    gallery = ReIDExtractor(folder, expected_images=LARGE_RUN)  # what index and extract choose
    print(f"auto: {auto.precision_description}; a large run: {gallery.precision_description}", flush=True)
    profile = operator_shares(lambda: auto._run(normalised)) if args.profile else None
    with FlopCounterMode(display=False) as counter:
        eager(network, normalised[:1])
    flops_per_image = counter.get_total_flops()
    reference = paths["fp32"]()
    cosines = {}
    for name, path in paths.items():  # also the warm-up (compilation, kernel choice)
        cosines[name] = F.cosine_similarity(path().float(), reference, dim=1).min().item()
    n, repeats = args.matmul, args.matmul_repeats
    a32, b32 = torch.randn(n, n), torch.randn(n, n)
    a16, b16 = a32.bfloat16(), b32.bfloat16()
    matmuls: dict[str, Callable[[], Any]] = {
        "matmul-fp32": lambda: [torch.mm(a32, b32) for _ in range(repeats)],
    }
    if native_bf16:  # emulated, one 2048 x 2048 product takes a minute (an AVX2 EPYC)
        matmuls["matmul-bf16"] = lambda: [torch.mm(a16, b16) for _ in range(4 * repeats)]
    for matmul in matmuls.values():  # warm-up
        matmul()
    times = rounds({**paths, **matmuls}, args.rounds)
    median = {name: statistics.median(values) for name, values in times.items()}
    rate32 = 2 * n**3 * repeats / median["matmul-fp32"] / 1e9
    rate16 = 2 * n**3 * 4 * repeats / median["matmul-bf16"] / 1e9 if native_bf16 else None
    rows = {}
    for name in paths:
        gflops = args.batch_size * flops_per_image / median[name] / 1e9
        rows[name] = {
            "seconds": times[name],
            "median_s": median[name],
            "images_per_s": args.batch_size / median[name],
            "vs_fp32": statistics.median(f / t for f, t in zip(times["fp32"], times[name], strict=True)),
            "gflop_per_s": gflops,
            "share_of_bf16_matmul": gflops / rate16 if rate16 else None,
            "share_of_fp32_matmul": gflops / rate32,
            "min_cosine_to_fp32": cosines[name],
        }
    return {
        "paths": rows,
        "auto": auto.precision_description,
        "auto_large_run": gallery.precision_description,
        "setup_s": setup_s,
        "matmul": {
            "n": n,
            "fp32_gflop_per_s": rate32,
            "bf16_gflop_per_s": rate16,
            "seconds": {d: times.get(f"matmul-{d}") for d in ("fp32", "bf16")},
        },
        "gflop_per_image": flops_per_image / 1e9,
        "auto_profile": profile,
        "cpu_has_native_bf16": cpu_has_native_bf16(),
        "settings": {k: getattr(args, k) for k in ("backbone", "height", "width", "batch_size", "rounds")},
    }


def bench_index(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    folder = model_folder(root / "index-model", args.backbone, args.height, args.width)
    images = root / "gallery"
    images.mkdir()
    for i in range(args.images):  # camera-sized crops, decoded and resized by the index command
        person = render_person(i % 50, i % 6, image_seed=i, height=2 * args.height, width=2 * args.width)
        person.save(images / f"{i % 50:04d}_c{1 + i % 6}s1_{i:06d}_01.jpg", quality=90)
    extractor = ReIDExtractor(folder, batch_size=args.batch_size)
    paths = sorted(images.iterdir())
    tensors = torch.stack([extractor._single(p) for p in paths])  # decoded and resized beforehand
    workers = decoding_workers(extractor.device) if args.workers is None else args.workers
    counter = iter(range(10**6))

    def index() -> None:  # what index_gallery runs once the extractor is built
        out = root / f"index-{next(counter)}"
        found = [images / path for path in find_images(images)]
        embedder = StreamingEmbedder(extractor, lambda: pending_images(GalleryIndex.open(out)), workers)
        build_index(out, found, embedder, model_path=folder, progress=False)
        shutil.rmtree(out)

    startup = timed(
        lambda: index_gallery(folder, images, root / "index-cli", num_workers=workers, progress=False)
    )
    index()  # warm-up
    times = rounds({"index": index, "extractor-on-tensors": lambda: extractor(tensors)}, args.rounds)
    median = {name: statistics.median(values) for name, values in times.items()}
    return {
        "precision": extractor.precision_description,
        "images": args.images,
        "workers": workers,
        "seconds": times,
        "images_per_s": {name: args.images / m for name, m in median.items()},
        "index_vs_extractor": median["extractor-on-tensors"] / median["index"],
        "index_gallery_once_s": startup,
    }


def table(report: dict[str, Any]) -> str:
    lines = [
        "| path | images/s | vs fp32 | GFLOP/s | share of bf16 matmul | share of fp32 matmul | min cosine |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in report["paths"]["paths"].items():
        bf16_share = row["share_of_bf16_matmul"]
        lines.append(
            f"| {name} | {row['images_per_s']:.2f} | {row['vs_fp32']:.2f}x | {row['gflop_per_s']:.0f} "
            f"| {'-' if bf16_share is None else f'{100 * bf16_share:.0f} %'} "
            f"| {100 * row['share_of_fp32_matmul']:.0f} % | {row['min_cosine_to_fp32']:.5f} |"
        )
    m = report["paths"]["matmul"]
    bf16_rate = m["bf16_gflop_per_s"]
    lines.append(
        f"\nmatmul {m['n']}: fp32 {m['fp32_gflop_per_s']:.0f} GFLOP/s, bf16 "
        + ("not timed (no native bf16)" if bf16_rate is None else f"{bf16_rate:.0f}")
    )
    lines.append(f"auto: {report['paths']['auto']}")
    if report["paths"]["auto_profile"]:
        shares = report["paths"]["auto_profile"].items()
        lines.append("auto's time by operator: " + ", ".join(f"{k} {100 * v:.1f} %" for k, v in shares))
    if "index" in report:
        rates = report["index"]["images_per_s"]
        lines.append(
            f"index {rates['index']:.2f} images/s vs extractor on tensors "
            f"{rates['extractor-on-tensors']:.2f} ({100 * report['index']['index_vs_extractor']:.0f} %)"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--height", type=int, default=384)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--matmul", type=int, default=2048, help="side of the square matmuls")
    parser.add_argument(
        "--matmul-repeats",
        type=int,
        default=8,
        help="fp32 matmuls a timing (bf16: four times as many on a CPU with native bf16)",
    )
    parser.add_argument(
        "--int8", action="store_true", help="also ONNX Runtime int8 (static, calibrated on synthetic people)"
    )
    parser.add_argument("--profile", action="store_true", help="also profile one batch of the auto path")
    parser.add_argument(
        "--compile", action="store_true", help="also torch.compile with freezing (slow to build)"
    )
    parser.add_argument("--images", type=int, default=1024, help="images of the index part")
    parser.add_argument(
        "--workers", type=int, help="decoding processes of the index part; default: index's default"
    )
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: paths,index")
    parser.add_argument(
        "--malloc-default", action="store_true", help="leave malloc as it is (no keep_freed_memory)"
    )
    parser.add_argument(
        "--no-native-bf16",
        action="store_true",
        help="act as a CPU without native bf16: oneDNN limited to AVX512-VNNI (ONEDNN_MAX_CPU_ISA), "
        "and auto told so",
    )
    parser.add_argument("--tiny", action="store_true", help="a smoke run: ResNet-18 at 64 x 32, batch 4")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args()
    if args.tiny:
        args.backbone, args.height, args.width, args.batch_size, args.images = "resnet18", 64, 32, 4, 8
        args.rounds, args.matmul, args.matmul_repeats = 2, 256, 1
    skip = set(filter(None, args.skip.split(",")))
    kept = not args.malloc_default and keep_freed_memory()
    if args.no_native_bf16:  # before the first oneDNN primitive, which reads it
        os.environ["ONEDNN_MAX_CPU_ISA"] = "AVX512_CORE_VNNI"
        precision_module.cpu_has_native_bf16 = lambda: False
    report: dict[str, Any] = {
        "machine": machine_description(),
        "command": " ".join(["python", *sys.argv]),
        "keep_freed_memory": kept,
        "no_native_bf16_emulated": args.no_native_bf16,
    }
    with tempfile.TemporaryDirectory(prefix="extract-bench-") as tmp:
        if "paths" not in skip:
            report["paths"] = bench_paths(args, Path(tmp))
        if "index" not in skip:
            report["index"] = bench_index(args, Path(tmp))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "extract.json").write_text(json.dumps(report, indent=2))
    if "paths" in report:
        print(table(report))
    elif "index" in report:
        print(json.dumps(report["index"], indent=1))


if __name__ == "__main__":
    main()
