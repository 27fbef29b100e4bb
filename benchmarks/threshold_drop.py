"""Benchmark SelfThresholdDrop against the eager ADL/STADB formulation and the memory roofline.

Variants, all in training mode with ``alpha = 0.8`` (or ``--drop-ratio``):

* ``eager``: the reference formulation of the ADL/STADB code, in the input dtype:
  ``a = x.mean(1, keepdim=True)``, ``keep = (a < alpha * a.amax((2, 3), keepdim=True)).to(x.dtype)``,
  ``x * keep``.
* ``default``: ``SelfThresholdDrop(alpha)``, this library's dispatching module.
* ``inplace``: ``SelfThresholdDrop(alpha, inplace=True)``, on a non-leaf input.
* ``compiled``: ``torch.compile`` of the eager formulation.

Figures: median forward and forward+backward times over ``--repeats`` runs after warm-up (CUDA events
on GPU), with caches flushed before each run; effective bandwidth counting 2x the tensor bytes for the
forward (read x, write out) and 4x for forward+backward (plus read grad, write grad_in); and that
bandwidth as a percentage of the roofline measured in the same run, ``dst.copy_(src)`` into a
preallocated tensor (a device-to-device copy on GPU). Variants run interleaved, round by round, so
that machine noise hits them alike, and on Linux a round during which other processes kept more than
``--max-foreign-load`` cores busy (CPU time from ``/proc/stat``) is discarded and rerun. Also
reported: bytes saved for backward (via saved-tensor hooks) and, on GPU, the peak extra memory of a
forward+backward.

Run from the repository root: ``python benchmarks/threshold_drop.py``. Writes ``threshold_drop.json``
and ``threshold_drop.png`` (needs matplotlib) to ``--out`` (default ``benchmarks/out/``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stadb_layers import SelfThresholdDrop

DEFAULT_SHAPES = "64x2048x24x8,128x2048x24x8,32x1024x24x8"
VARIANTS = ("eager", "default", "inplace", "compiled")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def eager_reference(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """The ADL/STADB formulation, computed in the input dtype."""
    attention = x.mean(dim=1, keepdim=True)
    threshold = alpha * attention.amax(dim=(2, 3), keepdim=True)
    keep = (attention < threshold).to(x.dtype)
    return x * keep


def eager_reference_drop_ratio(x: torch.Tensor, drop_ratio: float) -> torch.Tensor:
    """The ``drop_ratio`` variant of the eager formulation (k-th largest attention as threshold)."""
    attention = x.mean(dim=1, keepdim=True)
    flat = attention.flatten(1)
    kth = flat.topk(math.ceil(drop_ratio * flat.shape[1]), dim=1).values[:, -1:]
    keep = (attention < kth.view(-1, 1, 1, 1)).to(x.dtype)
    return x * keep


# ------------------------------------------------------------------------------------------------
# Machine description.


def _run(command: list[str]) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_description() -> dict[str, Any]:
    """CPU model, cores, caches, RAM, GPU, library versions and date."""
    info: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
    }
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    lscpu = _run(["lscpu"])
    wanted = ("Model name", "CPU(s)", "Thread(s) per core", "L1d cache", "L2 cache", "L3 cache")
    for line in lscpu.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in wanted:
            info[key.strip()] = value.strip()
    if "Model name" not in info:
        info["Model name"] = platform.processor()
    try:
        with open("/proc/meminfo") as meminfo:
            kib = int(meminfo.readline().split()[1])
        info["RAM"] = f"{kib / 2**20:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as thp:
            info["transparent_hugepage"] = thp.read().strip()
    except OSError:
        pass
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = f"{props.name}, {props.total_memory / 2**30:.0f} GiB, {props.multi_processor_count} SMs"
    return info


# ------------------------------------------------------------------------------------------------
# Timing.


class Timer:
    """Times one callable per call: perf_counter on CPU, CUDA events on GPU; flushes caches first."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        # Larger than the last-level cache: 64 MiB on CPU (32 MiB L3 here), 256 MiB on GPU (50 MiB L2).
        flush_bytes = (256 if device.type == "cuda" else 64) * 2**20
        self._flush = torch.empty(flush_bytes // 4, dtype=torch.float32, device=device)

    def flush(self) -> None:
        self._flush.fill_(1.0)

    def __call__(self, fn: Callable[[], object]) -> float:
        """Seconds one call of ``fn`` takes (its result is dropped after the clock stops)."""
        self.flush()
        if self.device.type == "cuda":
            event: Any = torch.cuda.Event  # untyped in some torch versions
            start, end = event(enable_timing=True), event(enable_timing=True)
            start.record()
            result = fn()
            end.record()
            end.synchronize()
            del result
            return float(start.elapsed_time(end)) / 1e3
        begin = time.perf_counter()
        result = fn()
        elapsed = time.perf_counter() - begin
        del result
        return elapsed


@dataclass
class Case:
    """One timed quantity: a setup run untimed before each call, then the timed call."""

    name: str
    run: Callable[[], object]
    setup: Callable[[], None] | None = None
    times: list[float] = field(default_factory=list)


def saved_bytes(fn: Callable[[], object]) -> int:
    """Bytes of tensors autograd saves for backward during ``fn`` (distinct storages)."""
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = fn()
    del out
    return sum(storages.values())


@dataclass
class Row:
    """Results of one variant at one shape and dtype."""

    shape: str
    dtype: str
    variant: str
    fwd_ms: float
    fwd_bwd_ms: float
    fwd_gbps: float
    fwd_bwd_gbps: float
    fwd_pct_roofline: float
    fwd_bwd_pct_roofline: float
    saved_for_backward_bytes: int
    peak_extra_bytes: int | None = None


class ForeignLoad:
    """CPU time that other processes (and the hypervisor: steal) used since :meth:`start`, Linux only.

    Rounds of measurements during which other processes were busy are discarded and rerun, so that
    a noisy shared machine does not skew the medians. Elsewhere it reports 0 (no filtering).
    """

    _TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def __init__(self) -> None:
        self._start = (0.0, 0.0, 0.0)

    @classmethod
    def _sample(cls) -> tuple[float, float, float]:
        """(all busy CPU seconds, this process's CPU seconds, wall seconds)."""
        try:
            with open("/proc/stat") as stat:
                fields = [int(v) for v in stat.readline().split()[1:]]
            with open("/proc/self/stat") as own:
                own_fields = own.read().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0, 0.0, time.monotonic()
        user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
        busy = (user + nice + system + irq + softirq + steal) / cls._TICKS
        mine = (int(own_fields[11]) + int(own_fields[12])) / cls._TICKS  # utime + stime, all threads
        return busy, mine, time.monotonic()

    def start(self) -> None:
        self._start = self._sample()

    def foreign_cores(self) -> float:
        """Average number of cores other processes kept busy since :meth:`start`."""
        busy, mine, wall = self._sample()
        elapsed = max(wall - self._start[2], 1e-9)
        return max(0.0, (busy - self._start[0]) - (mine - self._start[1])) / elapsed


def benchmark_config(
    shape: tuple[int, int, int, int],
    dtype: torch.dtype,
    device: torch.device,
    variants: list[str],
    repeats: int,
    warmup: int,
    alpha: float | None,
    drop_ratio: float | None,
    max_foreign_load: float = float("inf"),
    max_seconds: float = 600.0,
) -> tuple[dict[str, float], list[Row]]:
    """Roofline and rows for one (shape, dtype).

    Rounds (one timed call of every case) during which other processes kept more than
    ``max_foreign_load`` cores busy on average are discarded and repeated, until ``max_seconds`` have
    passed; after that every round is kept.
    """
    load = ForeignLoad()
    torch.manual_seed(0)
    source = torch.randn(shape, device=device, dtype=torch.float32).to(dtype)
    nbytes = source.numel() * source.element_size()
    grad = torch.randn_like(source)
    copy_target = torch.empty_like(source)
    timer = Timer(device)

    if drop_ratio is not None:
        ratio = drop_ratio

        def reference(t: torch.Tensor) -> torch.Tensor:
            return eager_reference_drop_ratio(t, ratio)

        layers = {
            "default": SelfThresholdDrop(drop_ratio=drop_ratio),
            "inplace": SelfThresholdDrop(drop_ratio=drop_ratio, inplace=True),
        }
    else:
        assert alpha is not None
        threshold = alpha

        def reference(t: torch.Tensor) -> torch.Tensor:
            return eager_reference(t, threshold)

        layers = {"default": SelfThresholdDrop(alpha), "inplace": SelfThresholdDrop(alpha, inplace=True)}

    functions: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"eager": reference, **layers}
    if "compiled" in variants:
        torch._dynamo.reset()
        functions["compiled"] = torch.compile(reference, dynamic=False)

    leaf = source.clone().requires_grad_(True)
    state: dict[str, torch.Tensor] = {}

    def fresh_nonleaf() -> None:
        state["x"] = leaf.clone()  # a non-leaf (CloneBackward saves nothing), as after a BatchNorm

    def forward_of(fn: Callable[[torch.Tensor], torch.Tensor], key: str | None) -> Callable[[], object]:
        """Forward on ``state[key]`` (set up untimed), or on the leaf when ``key`` is None."""
        return lambda: fn(state[key] if key else leaf)

    def forward_backward_of(
        fn: Callable[[torch.Tensor], torch.Tensor], key: str | None
    ) -> Callable[[], object]:
        return lambda: torch.autograd.grad(fn(state[key] if key else leaf), leaf, grad)

    cases: list[Case] = [Case("roofline", lambda: copy_target.copy_(source))]
    for variant in variants:
        key, setup = ("x", fresh_nonleaf) if variant == "inplace" else (None, None)
        cases.append(Case(f"{variant}/fwd", forward_of(functions[variant], key), setup))
        cases.append(Case(f"{variant}/fwd_bwd", forward_backward_of(functions[variant], key), setup))

    for _ in range(warmup):
        for case in cases:
            if case.setup is not None:
                case.setup()
            timer(case.run)
            state.pop("x", None)
    clean, discarded, noisy, deadline = 0, 0, 0, time.monotonic() + max_seconds
    kept: list[list[float]] = [[] for _ in cases]
    while clean < repeats:
        load.start()
        times = []
        for case in cases:
            if case.setup is not None:
                case.setup()
            times.append(timer(case.run))
            state.pop("x", None)
        busy = load.foreign_cores()
        if busy > max_foreign_load:
            if time.monotonic() < deadline:
                discarded += 1
                continue
            noisy += 1  # out of time: kept anyway, and counted
        clean += 1
        for bucket, elapsed in zip(kept, times, strict=True):
            bucket.append(elapsed)
    for case, bucket in zip(cases, kept, strict=True):
        case.times = bucket

    medians = {case.name: statistics.median(case.times) for case in cases}
    roofline_gbps = 2 * nbytes / medians["roofline"] / 1e9
    roofline = {
        "copy_ms": medians["roofline"] * 1e3,
        "copy_gbps": roofline_gbps,
        "bytes": nbytes,
        "rounds_kept": clean,
        "rounds_discarded_for_foreign_load": discarded,
        "rounds_kept_despite_foreign_load": noisy,
    }
    rows = []
    shape_name = "x".join(map(str, shape))
    dtype_name = next(name for name, value in DTYPES.items() if value == dtype)
    for variant in variants:
        fn = functions[variant]
        fwd, fwd_bwd = medians[f"{variant}/fwd"], medians[f"{variant}/fwd_bwd"]
        if variant == "inplace":
            fresh_nonleaf()
        saved = saved_bytes(forward_of(fn, "x" if variant == "inplace" else None))
        state.pop("x", None)
        peak = None
        if device.type == "cuda":
            if variant == "inplace":
                fresh_nonleaf()
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            x = state.pop("x", leaf)
            torch.autograd.grad(fn(x), leaf, grad)
            del x
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated() - base
        rows.append(
            Row(
                shape=shape_name,
                dtype=dtype_name,
                variant=variant,
                fwd_ms=fwd * 1e3,
                fwd_bwd_ms=fwd_bwd * 1e3,
                fwd_gbps=2 * nbytes / fwd / 1e9,
                fwd_bwd_gbps=4 * nbytes / fwd_bwd / 1e9,
                fwd_pct_roofline=100 * (2 * nbytes / fwd / 1e9) / roofline_gbps,
                fwd_bwd_pct_roofline=100 * (4 * nbytes / fwd_bwd / 1e9) / roofline_gbps,
                saved_for_backward_bytes=saved,
                peak_extra_bytes=peak,
            )
        )
    return roofline, rows


# ------------------------------------------------------------------------------------------------
# Output.


def print_table(roofline: dict[str, float], rows: list[Row], device: torch.device) -> None:
    shape, dtype = rows[0].shape, rows[0].dtype
    print(
        f"\n{shape} {dtype} on {device.type}: {roofline['bytes'] / 2**20:.0f} MiB, roofline (copy_) "
        f"{roofline['copy_ms']:.2f} ms = {roofline['copy_gbps']:.1f} GB/s; "
        f"{roofline['rounds_kept']:.0f} rounds kept, "
        f"{roofline['rounds_discarded_for_foreign_load']:.0f} discarded for foreign CPU load"
        + (
            f" ({roofline['rounds_kept_despite_foreign_load']:.0f} kept under load: out of time)"
            if roofline["rounds_kept_despite_foreign_load"]
            else ""
        )
    )
    header = (
        f"{'variant':<10}{'fwd ms':>9}{'GB/s':>8}{'% roof':>8}{'fwd+bwd ms':>12}{'GB/s':>8}{'% roof':>8}"
        f"{'saved MiB':>11}{'x eager':>9}"
    )
    if device.type == "cuda":
        header += f"{'peak MiB':>10}"
    print(header)
    eager = next((row for row in rows if row.variant == "eager"), None)
    for row in rows:
        speedup = eager.fwd_bwd_ms / row.fwd_bwd_ms if eager else float("nan")
        line = (
            f"{row.variant:<10}{row.fwd_ms:>9.2f}{row.fwd_gbps:>8.1f}{row.fwd_pct_roofline:>7.0f}%"
            f"{row.fwd_bwd_ms:>12.2f}{row.fwd_bwd_gbps:>8.1f}{row.fwd_bwd_pct_roofline:>7.0f}%"
            f"{row.saved_for_backward_bytes / 2**20:>11.2f}{speedup:>8.2f}x"
        )
        if row.peak_extra_bytes is not None:
            line += f"{row.peak_extra_bytes / 2**20:>10.1f}"
        print(line, flush=True)


def plot(results: list[dict[str, Any]], path: Path, device: torch.device) -> bool:
    """Grouped bars of % of roofline, forward and forward+backward; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no chart (pip install matplotlib)", file=sys.stderr)
        return False
    groups = [f"{r['shape']}\n{r['dtype']}" for r in results]
    variants = [row["variant"] for row in results[0]["rows"]]
    figure, axes = plt.subplots(2, 1, figsize=(max(8, 2.2 * len(groups)), 8), sharex=True)
    width = 0.8 / len(variants)
    for axis, key, title in zip(
        axes, ("fwd_pct_roofline", "fwd_bwd_pct_roofline"), ("forward", "forward + backward"), strict=True
    ):
        for index, variant in enumerate(variants):
            values = [next(row[key] for row in r["rows"] if row["variant"] == variant) for r in results]
            positions = [g + (index - (len(variants) - 1) / 2) * width for g in range(len(groups))]
            bars = axis.bar(positions, values, width, label=variant)
            axis.bar_label(bars, fmt="%.0f", fontsize=7)
        axis.axhline(100, color="black", linewidth=0.8, linestyle="--")
        top = max(row[key] for r in results for row in r["rows"])
        axis.set_ylim(0, max(125.0, 1.25 * top))
        axis.set_ylabel("% of copy_ roofline")
        axis.set_title(f"SelfThresholdDrop {title} ({device.type}, same-run roofline)")
        axis.legend(fontsize=8, ncol=len(variants), loc="upper right")
    axes[-1].set_xticks(range(len(groups)), groups, fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


def parse_shape(text: str) -> tuple[int, int, int, int]:
    parts = tuple(int(p) for p in text.lower().split("x"))
    if len(parts) != 4:
        raise argparse.ArgumentTypeError(f"shape must be NxCxHxW, got {text!r}")
    return parts[0], parts[1], parts[2], parts[3]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shapes", default=DEFAULT_SHAPES, help="comma-separated NxCxHxW list")
    parser.add_argument(
        "--dtypes",
        default=None,
        help="comma-separated from fp32,bf16,fp16 (default: fp32,bf16, plus fp16 on CUDA)",
    )
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"comma-separated from {','.join(VARIANTS)}"
    )
    parser.add_argument("--repeats", type=int, default=25, help="timed runs per figure (median reported)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs first (compilation, allocator)")
    parser.add_argument("--alpha", type=float, default=0.8)
    parser.add_argument("--drop-ratio", type=float, default=None, help="benchmark drop_ratio mode instead")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    parser.add_argument(
        "--max-foreign-load",
        type=float,
        default=None,
        help="discard and rerun rounds in which other processes kept more than this many cores busy "
        "(CPU time from /proc/stat; default 0.1 on CPU, inf, i.e. keep every round, on CUDA)",
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=900.0,
        help="per shape and dtype, stop discarding rounds after this",
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out")
    args = parser.parse_args(argv)

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.max_foreign_load is None:
        args.max_foreign_load = float("inf") if device.type == "cuda" else 0.1
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype_names = (args.dtypes or ("fp32,bf16,fp16" if device.type == "cuda" else "fp32,bf16")).split(",")
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS] + [d for d in dtype_names if d not in DTYPES]
    if unknown:
        parser.error(f"unknown variants or dtypes: {unknown}")
    shapes = [parse_shape(s) for s in args.shapes.split(",") if s]
    alpha = None if args.drop_ratio is not None else args.alpha

    machine = machine_description()
    print("machine:", json.dumps(machine, indent=None))
    print(
        f"mode: {'drop_ratio=' + str(args.drop_ratio) if args.drop_ratio else 'alpha=' + str(alpha)}, "
        f"repeats={args.repeats}, warmup={args.warmup}, device={device}"
    )
    results = []
    for shape in shapes:
        for dtype_name in dtype_names:
            roofline, rows = benchmark_config(
                shape,
                DTYPES[dtype_name],
                device,
                variants,
                args.repeats,
                args.warmup,
                alpha,
                args.drop_ratio,
                args.max_foreign_load,
                args.max_seconds,
            )
            print_table(roofline, rows, device)
            results.append(
                {
                    "shape": rows[0].shape,
                    "dtype": dtype_name,
                    "roofline": roofline,
                    "rows": [asdict(row) for row in rows],
                }
            )

    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "machine": machine,
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "device": str(device),
        "mode": {"alpha": alpha, "drop_ratio": args.drop_ratio},
        "repeats": args.repeats,
        "warmup": args.warmup,
        "max_foreign_load": None if math.isinf(args.max_foreign_load) else args.max_foreign_load,
        "results": results,
    }
    json_path = args.out / "threshold_drop.json"
    json_path.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {json_path}")
    png_path = args.out / "threshold_drop.png"
    if plot(results, png_path, device):
        print(f"wrote {png_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
