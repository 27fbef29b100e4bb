"""Share of SelfThresholdDrop in a ResNet-50 re-ID training step.

The model is a timm ``resnet50`` backbone (random weights; by default layer4 with stride 1, as in
re-ID, so that a 384x128 image gives a (2048, 24, 8) map), the drop layer on its output, global
average pooling, a BatchNorm neck and a linear classifier; the step is forward, cross-entropy,
backward and an SGD update. For each drop variant it reports the median step time and the median time
spent in the drop layer's forward and backward inside those steps (timed with hooks: perf_counter on
CPU, CUDA events on GPU), plus the drop's forward+backward on the same tensor timed in isolation.

Run from the repository root: ``python benchmarks/train_step_share.py`` (``--batch 8`` on CPU by
default, 64 on CUDA). Writes ``train_step_share.json`` to ``--out`` (default ``benchmarks/out/``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from threshold_drop import Timer, eager_reference, machine_description

from stadb_layers import SelfThresholdDrop


class EagerReferenceDrop(nn.Module):
    """The ADL/STADB eager formulation as a module (training only, as in the benchmark)."""

    def __init__(self, alpha: float) -> None:
        super().__init__()
        self.alpha = alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return eager_reference(x, self.alpha)


class Clock:
    """Wall-clock marks: perf_counter on CPU, CUDA events on GPU (read after a synchronize)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.marks: dict[str, Any] = {}

    def mark(self, name: str) -> None:
        if self.device.type == "cuda":
            event_type: Any = torch.cuda.Event  # untyped in some torch versions
            event = event_type(enable_timing=True)
            event.record()
            self.marks[name] = event
        else:
            self.marks[name] = time.perf_counter()

    def seconds(self, start: str, end: str) -> float:
        if self.device.type == "cuda":
            return float(self.marks[start].elapsed_time(self.marks[end])) / 1e3
        return float(self.marks[end] - self.marks[start])


class TimedDrop(nn.Module):
    """Wraps a drop layer and marks the start and end of its forward and of its backward."""

    def __init__(self, drop: nn.Module, clock: Clock) -> None:
        super().__init__()
        self.drop = drop
        self.clock = clock

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.clock.mark("fwd_start")
        out: torch.Tensor = self.drop(x)
        self.clock.mark("fwd_end")
        if out.requires_grad:
            # The output's gradient arrives just before the drop's backward node runs; the input's
            # gradient is complete right after it (the drop is the input's only consumer).
            output: Any = out  # Tensor.register_hook is untyped in some torch versions
            features: Any = x
            output.register_hook(lambda grad: self.clock.mark("bwd_start"))
            features.register_hook(lambda grad: self.clock.mark("bwd_end"))
        return out


class ReIDNet(nn.Module):
    """ResNet-50 features -> drop -> GAP -> BN neck -> classifier."""

    def __init__(self, drop: nn.Module, num_classes: int, layer4_stride: int) -> None:
        super().__init__()
        import timm

        backbone: Any = timm.create_model("resnet50", pretrained=False, num_classes=0, global_pool="")
        if layer4_stride == 1:
            first = backbone.layer4[0]
            first.conv2.stride = (1, 1)
            first.downsample[0].stride = (1, 1)
        self.backbone = backbone
        self.drop = drop
        self.neck = nn.BatchNorm1d(2048)
        self.classifier = nn.Linear(2048, num_classes, bias=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features: torch.Tensor = self.drop(self.backbone(images))
        logits: torch.Tensor = self.classifier(self.neck(features.mean(dim=(2, 3))))
        return logits


def measure_variant(
    name: str, make_drop: Callable[[], nn.Module], args: argparse.Namespace, device: torch.device
) -> dict[str, Any]:
    torch.manual_seed(0)
    clock = Clock(device)
    model = ReIDNet(TimedDrop(make_drop(), clock), args.classes, args.layer4_stride).to(device)
    model.train()
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    images = torch.randn(args.batch, 3, args.height, args.width, device=device)
    if args.channels_last:
        images = images.to(memory_format=torch.channels_last)
    labels = torch.randint(0, args.classes, (args.batch,), device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.amp)
    step_times, drop_fwd, drop_bwd = [], [], []
    feature_shape: tuple[int, ...] = ()
    feature_dtype = torch.float32
    for step in range(args.warmup + args.steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        begin = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            logits: torch.Tensor = model(images)
            loss = nn.functional.cross_entropy(logits.float(), labels)
        torch.autograd.backward(loss)
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - begin
        if step >= args.warmup:
            step_times.append(elapsed)
            drop_fwd.append(clock.seconds("fwd_start", "fwd_end"))
            drop_bwd.append(clock.seconds("bwd_start", "bwd_end"))
        if not feature_shape:
            with torch.no_grad(), autocast:
                features = model.backbone(images)
            feature_shape, feature_dtype = tuple(features.shape), features.dtype
            del features

    # The same drop on a tensor of the feature map's shape, in isolation.
    drop = make_drop().train()
    leaf = torch.randn(feature_shape, device=device).to(feature_dtype).requires_grad_(True)
    grad = torch.randn_like(leaf)
    timer = Timer(device)
    isolated: list[float] = []
    for repeat in range(3 + args.isolated_repeats):
        seconds = timer(lambda: torch.autograd.grad(drop(leaf), leaf, grad))
        if repeat >= 3:
            isolated.append(seconds)

    step_seconds = statistics.median(step_times)
    in_step = statistics.median(f + b for f, b in zip(drop_fwd, drop_bwd, strict=True))
    result = {
        "variant": name,
        "feature_map": list(feature_shape),
        "feature_dtype": str(feature_dtype).replace("torch.", ""),
        "step_ms": step_seconds * 1e3,
        "drop_fwd_ms_in_step": statistics.median(drop_fwd) * 1e3,
        "drop_bwd_ms_in_step": statistics.median(drop_bwd) * 1e3,
        "drop_fwd_bwd_ms_in_step": in_step * 1e3,
        "drop_fwd_bwd_ms_isolated": statistics.median(isolated) * 1e3,
        "share_in_step_pct": 100 * in_step / step_seconds,
        "share_isolated_pct": 100 * statistics.median(isolated) / step_seconds,
    }
    print(
        f"{name:<8} step {result['step_ms']:9.1f} ms | drop in the step: "
        f"fwd {result['drop_fwd_ms_in_step']:.2f} ms + bwd {result['drop_bwd_ms_in_step']:.2f} ms "
        f"= {result['share_in_step_pct']:.3f}% of the step | isolated fwd+bwd "
        f"{result['drop_fwd_bwd_ms_isolated']:.2f} ms = {result['share_isolated_pct']:.3f}%",
        flush=True,
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=None, help="default: 8 on CPU, 64 on CUDA")
    parser.add_argument("--height", type=int, default=384)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--classes", type=int, default=751, help="identities (Market-1501: 751)")
    parser.add_argument("--layer4-stride", type=int, choices=(1, 2), default=1)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per variant (median reported)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--isolated-repeats", type=int, default=20)
    parser.add_argument("--variants", default="default,eager", help="comma-separated from default,eager")
    parser.add_argument("--alpha", type=float, default=0.8)
    parser.add_argument("--amp", action="store_true", help="bfloat16 autocast")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out")
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.batch is None:
        args.batch = 64 if device.type == "cuda" else 8

    makers: dict[str, Callable[[], nn.Module]] = {
        "default": lambda: SelfThresholdDrop(args.alpha),
        "eager": lambda: EagerReferenceDrop(args.alpha),
    }
    machine = machine_description()
    print("machine:", json.dumps(machine))
    print(
        f"ResNet-50 (layer4 stride {args.layer4_stride}), batch {args.batch}x3x{args.height}x{args.width}, "
        f"{'bf16 autocast' if args.amp else 'fp32'}, {args.steps} timed steps after {args.warmup}, {device}"
    )
    results = [measure_variant(name, makers[name], args, device) for name in args.variants.split(",") if name]
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "train_step_share.json"
    path.write_text(
        json.dumps(
            {"machine": machine, "config": {k: str(v) for k, v in vars(args).items()}, "results": results},
            indent=2,
        )
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
