"""Images per second and peak memory of a full STADB re-ID training step, against its baselines.

Model variants (``STADBNet``, random weights, ResNet-50 with last stride 1, paper hyper-parameters):

* ``global``: the global-only baseline (GAP head only);
* ``bdb``: the BDB comparator (second head with Batch DropBlock, one random stripe per batch);
* ``stadb``: the full model (second head with SelfThresholdDrop or CBAM, drawn per step, rho = 0.25).

A training step is the trainer's own ``stadb_reid.engine.step.TrainStep`` (single process): forward
under autocast, the loss in fp32 (cross-entropy plus soft-margin batch-hard triplet on each head,
``reid_loss``), ``zero_grad``, backward and an Adam step (lr 3.5e-4, weight decay 5e-4), on a fixed batch
whose labels form P identities x K instances, so that every anchor has positives and negatives. Each
variant runs at every precision (``fp32``: the trainer's ``--amp off``; ``bf16``: bfloat16 autocast,
``--amp bf16``; ``fp16``: float16 autocast with a ``GradScaler``, CUDA only, ``--amp fp16``) and memory
format (``contiguous``, and ``channels_last`` for the model and the batch, as ``--channels-last``).

Measurement: every configuration gets its own model, optimiser and batch; after ``--warmup`` untimed
steps each, the configurations run interleaved, one step each per round and the order rotated every
round, so that machine noise and drift hit them alike; step times are medians over ``--rounds`` rounds
(perf_counter on CPU; CUDA events after a synchronize on GPU), and ratios are taken between
configurations of the same run. On Linux a CPU step during which other processes kept more than
``--max-foreign-load`` cores busy (``/proc/stat``) is discarded and rerun, until ``--max-seconds``.

Peak memory is measured afterwards, one configuration at a time, in a fresh process (multiprocessing
spawn) that builds the configuration and runs ``--memory-steps`` steps: on CUDA
``torch.cuda.max_memory_allocated()``; on CPU the peak resident set size of that process
(``VmHWM`` in ``/proc/self/status``) minus its resident size after the imports, i.e. model, gradients,
optimiser state, batch, activations and whatever the allocators and oneDNN keep; the CPU figure includes
freed memory that glibc has not returned to the system, so it is an upper bound of the step's need.

Run from the repository root: ``python benchmarks/train_step.py`` (CPU with batch 8 of 384x128 images,
plus CUDA with batch 128 when a GPU is present; ``--quick`` for a smoke run: ResNet-18 backbone, 64x32
images, 2 rounds after 1 warm-up step, every step kept).
Writes ``train_step.json``, ``train_step.md`` (the table) and ``train_step.png`` (needs matplotlib) to
``--out`` (default ``benchmarks/out/``).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from threshold_drop import ForeignLoad, machine_description

from stadb_reid.engine.distributed import DistributedContext
from stadb_reid.engine.precision import Precision
from stadb_reid.engine.step import TrainStep
from stadb_reid.model import STADBNet

VARIANTS = ("global", "bdb", "stadb")
AMP_MODE = {"fp32": "off", "bf16": "bf16", "fp16": "fp16"}  # this script's names -> the trainer's --amp
FORMATS = ("contiguous", "channels_last")
DEFAULT_BATCH = {"cpu": 8, "cuda": 128}
LEARNING_RATE = 3.5e-4
WEIGHT_DECAY = 5e-4


@dataclass(frozen=True)
class Settings:
    """What every configuration of one device shares."""

    device: str
    backbone: str
    batch: int
    height: int
    width: int
    instances: int
    classes: int
    threads: int


@dataclass(frozen=True)
class StepConfig:
    """One measured configuration."""

    variant: str
    precision: str
    memory_format: str

    @property
    def name(self) -> str:
        return f"{self.variant}/{self.precision}/{self.memory_format}"


class TrainingStep:
    """A configuration's model, Adam optimiser and fixed P x K batch; calling it runs the trainer's step."""

    def __init__(self, config: StepConfig, settings: Settings) -> None:
        self.device = torch.device(settings.device)
        torch.manual_seed(0)
        model = STADBNet(
            settings.classes, variant=config.variant, backbone=settings.backbone, pretrained=False
        )
        model = model.to(self.device).train()
        channels_last = config.memory_format == "channels_last"
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        identities = torch.randperm(settings.classes)[: settings.batch // settings.instances]
        self.images = torch.randn(settings.batch, 3, settings.height, settings.width, device=self.device)
        self.labels = identities.repeat_interleave(settings.instances).to(self.device)
        self.num_parameters = sum(p.numel() for p in model.parameters())
        optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
        self.train_step = TrainStep(
            model,
            optimizer,
            precision=Precision(AMP_MODE[config.precision], self.device.type),
            context=DistributedContext(rank=0, world_size=1, device=self.device),
            channels_last=channels_last,
        )

    def __call__(self) -> None:
        self.train_step(self.images, self.labels)


def timed_step(step: TrainingStep) -> float:
    """Seconds one training step takes (CUDA events, after the queue is drained, on GPU)."""
    if step.device.type == "cuda":
        torch.cuda.synchronize()
        event: Any = torch.cuda.Event  # untyped in some torch versions
        start, end = event(enable_timing=True), event(enable_timing=True)
        start.record()
        step()
        end.record()
        end.synchronize()
        return float(start.elapsed_time(end)) / 1e3
    begin = time.perf_counter()
    step()
    return time.perf_counter() - begin


# ------------------------------------------------------------------------------------------------
# Peak memory, one configuration per fresh process.


def _status_bytes(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``) in bytes; None off Linux."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def peak_memory(config: StepConfig, settings: Settings, steps: int) -> dict[str, int | None]:
    """Peak memory of ``steps`` training steps of ``config``; run in a fresh (spawned) process."""
    torch.set_num_threads(settings.threads)
    baseline = _status_bytes("VmRSS")
    step = TrainingStep(config, settings)
    for _ in range(steps):
        step()
    if step.device.type == "cuda":
        torch.cuda.synchronize()
        return {"peak_bytes": torch.cuda.max_memory_allocated(), "process_baseline_bytes": None}
    peak = _status_bytes("VmHWM")
    if peak is None or baseline is None:
        return {"peak_bytes": None, "process_baseline_bytes": None}
    return {"peak_bytes": peak - baseline, "process_baseline_bytes": baseline}


def measure_peak_memory(config: StepConfig, settings: Settings, steps: int) -> dict[str, int | None]:
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        result: dict[str, int | None] = pool.apply(peak_memory, (config, settings, steps))
    return result


# ------------------------------------------------------------------------------------------------
# Timing of all configurations of one device, interleaved.


@dataclass
class Row:
    """Results of one configuration."""

    device: str
    variant: str
    precision: str
    memory_format: str
    batch: int
    parameters: int
    step_ms: float
    images_per_s: float
    vs_global: float | None
    vs_global_paired: float | None
    vs_fp32: float | None
    vs_fp32_paired: float | None
    peak_bytes: int | None
    process_baseline_bytes: int | None


def _ratio(times: dict[str, list[float]], numerator: str, denominator: str) -> tuple[float, float] | None:
    """Ratio of median step times, and median of the per-round ratios (same round, so paired)."""
    if numerator not in times or denominator not in times:
        return None
    top, bottom = times[numerator], times[denominator]
    paired = statistics.median(a / b for a, b in zip(top, bottom, strict=True))
    return statistics.median(top) / statistics.median(bottom), paired


def benchmark_device(
    settings: Settings,
    configs: list[StepConfig],
    args: argparse.Namespace,
) -> tuple[list[Row], dict[str, Any]]:
    """Time every configuration interleaved, then measure each one's peak memory."""
    steps = {config.name: TrainingStep(config, settings) for config in configs}
    print(f"built {len(steps)} configurations on {settings.device}; warming up", flush=True)
    for _ in range(args.warmup):
        for name in steps:
            steps[name]()
    max_foreign_load = args.max_foreign_load
    if max_foreign_load is None:
        max_foreign_load = 0.1 if settings.device == "cpu" and not args.quick else math.inf
    load = ForeignLoad()
    deadline = time.monotonic() + args.max_seconds
    times: dict[str, list[float]] = {config.name: [] for config in configs}
    discarded = kept_under_load = 0
    for round_index in range(args.rounds):
        offset = round_index % len(configs)
        for config in configs[offset:] + configs[:offset]:
            while True:
                load.start()
                seconds = timed_step(steps[config.name])
                if load.foreign_cores() <= max_foreign_load:
                    break
                if time.monotonic() >= deadline:
                    kept_under_load += 1
                    break
                discarded += 1
            times[config.name].append(seconds)
        medians = ", ".join(f"{name} {statistics.median(t) * 1e3:.0f}" for name, t in times.items())
        print(f"round {round_index + 1}/{args.rounds}: median ms {medians}", flush=True)
    parameters = {name: step.num_parameters for name, step in steps.items()}
    del steps  # free the models before the memory probes

    rows = []
    for config in configs:
        memory: dict[str, int | None] = {"peak_bytes": None, "process_baseline_bytes": None}
        if args.memory_steps:
            memory = measure_peak_memory(config, settings, args.memory_steps)
        vs_global = _ratio(
            times, config.name, StepConfig("global", config.precision, config.memory_format).name
        )
        vs_fp32 = _ratio(times, config.name, StepConfig(config.variant, "fp32", config.memory_format).name)
        median = statistics.median(times[config.name])
        rows.append(
            Row(
                device=settings.device,
                variant=config.variant,
                precision=config.precision,
                memory_format=config.memory_format,
                batch=settings.batch,
                parameters=parameters[config.name],
                step_ms=median * 1e3,
                images_per_s=settings.batch / median,
                vs_global=vs_global[0] if vs_global else None,
                vs_global_paired=vs_global[1] if vs_global else None,
                vs_fp32=vs_fp32[0] if vs_fp32 else None,
                vs_fp32_paired=vs_fp32[1] if vs_fp32 else None,
                **memory,
            )
        )
    run = {
        "settings": asdict(settings),
        "rounds": args.rounds,
        "warmup": args.warmup,
        "max_foreign_load": None if math.isinf(max_foreign_load) else max_foreign_load,
        "steps_discarded_for_foreign_load": discarded,
        "steps_kept_despite_foreign_load": kept_under_load,
        "step_seconds": times,
    }
    return rows, run


# ------------------------------------------------------------------------------------------------
# Output.


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{suffix}"


def markdown_table(rows: list[Row]) -> str:
    """The results as a Markdown table (step time: median; ratios: of step times, paired in brackets)."""
    lines = [
        "| device | variant | precision | memory format | step ms | images/s | step vs global "
        "| fp32 step / this | peak memory |",
        "|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        vs_global = (
            f"{row.vs_global:.3f}x ({row.vs_global_paired:.3f}x)"
            if row.vs_global is not None and row.vs_global_paired is not None
            else "n/a"
        )
        speedup = (
            f"{1 / row.vs_fp32:.2f}x ({1 / row.vs_fp32_paired:.2f}x)"
            if row.vs_fp32 is not None and row.vs_fp32_paired is not None
            else "n/a"
        )
        peak = "n/a" if row.peak_bytes is None else f"{row.peak_bytes / 2**20:,.0f} MiB"
        lines.append(
            f"| {row.device} (batch {row.batch}) | {row.variant} | {row.precision} | {row.memory_format} "
            f"| {row.step_ms:,.0f} | {row.images_per_s:.2f} | {vs_global} | {speedup} | {peak} |"
        )
    return "\n".join(lines) + "\n"


def plot(rows: list[Row], path: Path) -> bool:
    """Images/s and peak memory per configuration, one row of panels per device; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no chart (pip install matplotlib)", file=sys.stderr)
        return False
    devices = list(dict.fromkeys(row.device for row in rows))
    figure, axes = plt.subplots(len(devices), 2, figsize=(12, 4.2 * len(devices)), squeeze=False)
    for device, (speed_axis, memory_axis) in zip(devices, axes, strict=True):
        device_rows = [row for row in rows if row.device == device]
        variants = list(dict.fromkeys(row.variant for row in device_rows))
        series = list(dict.fromkeys((row.precision, row.memory_format) for row in device_rows))
        width = 0.8 / len(series)
        for axis, key, label in (
            (speed_axis, "images_per_s", "images / s (median step)"),
            (memory_axis, "peak_bytes", "peak memory (MiB)"),
        ):
            for index, (precision, memory_format) in enumerate(series):
                values = []
                for variant in variants:
                    row = next(
                        (
                            r
                            for r in device_rows
                            if (r.variant, r.precision, r.memory_format)
                            == (variant, precision, memory_format)
                        ),
                        None,
                    )
                    value = None if row is None else getattr(row, key)
                    values.append(
                        math.nan if value is None else value / (2**20 if key == "peak_bytes" else 1)
                    )
                positions = [v + (index - (len(series) - 1) / 2) * width for v in range(len(variants))]
                bars = axis.bar(positions, values, width, label=f"{precision}, {memory_format}")
                axis.bar_label(bars, fmt="%.1f" if key == "images_per_s" else "%.0f", fontsize=7)
            axis.set_xticks(range(len(variants)), variants)
            axis.set_ylim(0, 1.3 * axis.get_ylim()[1])  # room for the legend above the bars
            axis.set_ylabel(label)
            axis.set_title(f"{device}, batch {device_rows[0].batch}: {label}", fontsize=10)
            axis.legend(fontsize=7, ncol=2, loc="upper center")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--devices", default=None, help="comma-separated (default: cpu, plus cuda when present)"
    )
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated from {VARIANTS}")
    parser.add_argument(
        "--precisions",
        default=None,
        help="comma-separated from fp32,bf16,fp16 (default: fp32,bf16; +fp16 on CUDA)",
    )
    parser.add_argument("--formats", default=",".join(FORMATS), help=f"comma-separated from {FORMATS}")
    parser.add_argument(
        "--batch", type=int, default=None, help="images per step (default: 8 on CPU, 128 on CUDA)"
    )
    parser.add_argument("--backbone", default="resnet50", help="timm ResNet of the model")
    parser.add_argument("--height", type=int, default=384)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--instances", type=int, default=4, help="K images per identity in the batch")
    parser.add_argument("--classes", type=int, default=751, help="identities (Market-1501: 751)")
    parser.add_argument("--rounds", type=int, default=10, help="timed steps per configuration (median)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per configuration first")
    parser.add_argument(
        "--memory-steps", type=int, default=2, help="steps per peak-memory process (0: no memory figures)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    parser.add_argument(
        "--max-foreign-load",
        type=float,
        default=None,
        help="rerun CPU steps during which other processes kept more than this many cores busy "
        "(default 0.1; inf, i.e. keep every step, on CUDA and with --quick)",
    )
    parser.add_argument(
        "--max-seconds", type=float, default=1800.0, help="per device, stop rerunning steps after this"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: resnet18, 64x32 images, 2 rounds, 1 warm-up step"
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out")
    args = parser.parse_args(argv)
    if args.quick:
        args.backbone, args.height, args.width, args.rounds, args.warmup = "resnet18", 64, 32, 2, 1

    devices = (args.devices or ("cpu,cuda" if torch.cuda.is_available() else "cpu")).split(",")
    variants = [v for v in args.variants.split(",") if v]
    formats = [f for f in args.formats.split(",") if f]
    unknown = (
        [d for d in devices if d not in DEFAULT_BATCH]
        + [v for v in variants if v not in VARIANTS]
        + [f for f in formats if f not in FORMATS]
        + [p for p in (args.precisions or "").split(",") if p and p not in AMP_MODE]
    )
    if unknown:
        parser.error(f"unknown devices, variants, precisions or formats: {unknown}")
    if "cuda" in devices and not torch.cuda.is_available():
        parser.error("--devices: cuda requested but torch.cuda.is_available() is False")
    if args.precisions and "fp16" in args.precisions.split(",") and "cpu" in devices:
        parser.error("--precisions: fp16 (autocast with a GradScaler) is CUDA only; use --devices cuda")
    for name in ("batch", "instances", "classes", "rounds"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name} must be at least 1, got {value}")
    batches = {device: args.batch or DEFAULT_BATCH[device] for device in devices}
    for batch in batches.values():
        identities = batch // args.instances
        if batch % args.instances or identities < 2:
            parser.error(f"--batch ({batch}) must be a multiple of --instances ({args.instances}), 2+ times")
        if identities > args.classes:
            parser.error(f"--classes ({args.classes}) must cover the batch's {identities} identities")
    if args.threads:
        torch.set_num_threads(args.threads)

    machine = machine_description()
    print("machine:", json.dumps(machine))
    rows: list[Row] = []
    runs = {}
    for device, batch in batches.items():
        settings = Settings(
            device=device,
            backbone=args.backbone,
            batch=batch,
            height=args.height,
            width=args.width,
            instances=args.instances,
            classes=args.classes,
            threads=torch.get_num_threads(),
        )
        precisions = (args.precisions or ("fp32,bf16,fp16" if device == "cuda" else "fp32,bf16")).split(",")
        configs = [
            StepConfig(variant, precision, memory_format)
            for variant in variants
            for precision in precisions
            for memory_format in formats
        ]
        print(
            f"\n{device}: {args.backbone}, batch {batch} ({batch // args.instances} identities x "
            f"{args.instances}) of {args.height}x{args.width} images, {len(configs)} configurations, "
            f"{args.rounds} rounds after {args.warmup} warm-up steps",
            flush=True,
        )
        device_rows, runs[device] = benchmark_device(settings, configs, args)
        rows.extend(device_rows)
    cuda_note = (
        "measured"
        if "cuda" in devices
        else "not measured: " + ("not requested" if torch.cuda.is_available() else "no CUDA device present")
    )
    table = markdown_table(rows)
    print(f"\n{table}\nCUDA: {cuda_note}")

    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "machine": machine,
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "cuda": cuda_note,
        "runs": runs,
        "results": [asdict(row) for row in rows],
    }
    json_path = args.out / "train_step.json"
    json_path.write_text(json.dumps(report, indent=2))
    table_path = args.out / "train_step.md"
    table_path.write_text(table + f"\nCUDA: {cuda_note}\n")
    print(f"wrote {json_path}\nwrote {table_path}")
    png_path = args.out / "train_step.png"
    if plot(rows, png_path):
        print(f"wrote {png_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
