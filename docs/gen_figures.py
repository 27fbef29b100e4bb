"""Figures of the documentation site, computed by the library from real tensors.

Every layer panel is the output of a ``stadb_layers`` call (or of the formula the layer implements, checked
against the layer) on a seeded input, so the figures change when the layers do. ``docs/hooks.py`` runs
:func:`generate` during ``mkdocs build`` / ``mkdocs serve`` and serves the PNGs as
``assets/generated/<name>.png``; nothing is written into the repository. To look at them directly::

    .venv/bin/python docs/gen_figures.py --out /tmp/stadb-figures

The training curves of the re-ID runs are drawn from the run records committed in
``examples/stadb_reid/results/`` (the trainer's ``metrics.json`` files), and the benchmark charts by
the benchmark scripts' own ``plot`` functions from their reports committed in ``benchmarks/results/``.

The feature map used in the layer figures is synthetic: 64 channels on the 24 x 8 grid that a
ResNet-50 with last stride 1 gives for a 384 x 128 image (the paper's setting), built from three
Gaussian "body part" responses (head, torso, legs) with channel-dependent strengths, smooth noise and
a ReLU.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from stadb_layers import (
    CBAM,
    SE,
    SRM,
    RandomBranchSelector,
    SelfThresholdDrop,
    TripletAttention,
    self_threshold_drop,
    soft_margin_batch_hard_triplet,
)
from stadb_layers.spatial_gate import z_pool
from stadb_reid.visualization.curves import training_curves_figure
from stadb_reid.visualization.sweep import sweep_summary_figure

__all__ = ["FIGURES", "feature_map", "generate"]

HEIGHT, WIDTH, CHANNELS = 24, 8, 64
DPI = 110
CMAP = "magma"


def feature_map(seed: int = 0, channels: int = CHANNELS) -> torch.Tensor:
    """A (1, C, 24, 8) post-ReLU feature map with head, torso and leg responses (see the module doc)."""
    generator = torch.Generator().manual_seed(seed)
    rows = torch.arange(HEIGHT, dtype=torch.float32)[:, None]
    cols = torch.arange(WIDTH, dtype=torch.float32)[None, :]

    def blob(row: float, col: float, sigma_r: float, sigma_c: float) -> torch.Tensor:
        return torch.exp(-((rows - row) ** 2) / (2 * sigma_r**2) - (cols - col) ** 2 / (2 * sigma_c**2))

    parts = torch.stack(
        [
            blob(3.0, 3.5, 1.6, 1.3),  # head
            blob(9.5, 3.5, 3.0, 2.0),  # torso
            blob(17.5, 2.2, 3.5, 0.9) + blob(17.5, 5.0, 3.5, 0.9),  # legs
        ]
    )
    strengths = torch.rand(channels, 3, generator=generator) ** 2 * torch.tensor([1.0, 1.6, 1.1])
    maps = torch.einsum("cp,phw->chw", strengths, parts)
    noise = torch.randn(channels, HEIGHT, WIDTH, generator=generator)
    smooth = torch.nn.functional.avg_pool2d(noise[None], 3, stride=1, padding=1, count_include_pad=False)[0]
    return torch.relu(maps + 0.25 * smooth - 0.05)[None]


def _imshow(
    ax: Axes,
    image: torch.Tensor,
    title: str,
    cmap: str = CMAP,
    vmin: float | None = None,
    vmax: float | None = None,
) -> None:
    ax.imshow(image.detach().numpy(), cmap=cmap, interpolation="nearest", vmin=vmin, vmax=vmax)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def fig_stadb_pipeline() -> Figure:
    """Input channels -> channel-mean attention -> threshold -> keep mask -> output (alpha = 0.8)."""
    x = feature_map()
    alpha = 0.8
    drop = SelfThresholdDrop(alpha=alpha).train()
    y = drop(x)
    attention = drop.last_attention
    keep = drop.last_keep_mask
    assert attention is not None and keep is not None
    reference, reference_keep = self_threshold_drop(x, alpha=alpha)
    assert torch.equal(reference, y) and torch.equal(reference_keep, keep)
    threshold = alpha * float(attention.max())

    fig = plt.figure(figsize=(10.0, 3.8), dpi=DPI)
    grid = fig.add_gridspec(1, 5, width_ratios=[1.25, 1, 1, 1, 1], wspace=0.45)
    channel_grid = grid[0].subgridspec(2, 2, wspace=0.08, hspace=0.12)
    for k, c in enumerate((0, 9, 21, 40)):
        ax = fig.add_subplot(channel_grid[k // 2, k % 2])
        _imshow(ax, x[0, c], f"x[:, {c}]", cmap="viridis")
        ax.title.set_fontsize(7)
    fig.text(
        0.165, 0.97, f"1. input $x$\n{CHANNELS} x {HEIGHT} x {WIDTH} (4 channels)", ha="center", fontsize=9
    )

    ax = fig.add_subplot(grid[1])
    _imshow(ax, attention[0, 0], "2. attention\n$A = \\mathrm{mean}_c\\, x$")
    ax = fig.add_subplot(grid[2])
    _imshow(ax, attention[0, 0], f"3. threshold (cyan)\n$\\tau = {alpha}\\,\\max A$")
    ax.contour(attention[0, 0].numpy(), levels=[threshold], colors="cyan", linewidths=1.2)
    ax = fig.add_subplot(grid[3])
    dropped = int((~keep).sum())
    title = f"4. keep mask $M = [A < \\tau]$\n{dropped} of {HEIGHT * WIDTH} dropped"
    _imshow(ax, keep[0, 0].float(), title, cmap="gray", vmin=0, vmax=1)
    ax = fig.add_subplot(grid[4])
    _imshow(
        ax,
        y.mean(dim=1)[0],
        "5. output $y = x \\odot M$\n(channel mean)",
        vmin=0,
        vmax=float(attention.max()),
    )
    return fig


def fig_alpha_sweep() -> Figure:
    """Keep masks for several alpha and drop_ratio values on the same feature map."""
    x = feature_map()
    alphas = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    ratios = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5)
    fig, axes = plt.subplots(2, len(alphas), figsize=(8.0, 5.6), dpi=DPI)
    for ax, alpha in zip(axes[0], alphas, strict=True):
        _, keep = self_threshold_drop(x, alpha=alpha)
        _imshow(
            ax,
            keep[0, 0].float(),
            f"alpha={alpha}\n{int((~keep).sum())} dropped",
            cmap="gray",
            vmin=0,
            vmax=1,
        )
    for ax, ratio in zip(axes[1], ratios, strict=True):
        _, keep = self_threshold_drop(x, drop_ratio=ratio)
        title = f"drop_ratio={ratio}\n{int((~keep).sum())} dropped"
        _imshow(ax, keep[0, 0].float(), title, cmap="gray", vmin=0, vmax=1)
    fig.suptitle("keep masks on a 24 x 8 map (black = dropped)", fontsize=10)
    fig.tight_layout()
    return fig


def fig_alpha_fraction() -> Figure:
    """Fraction of positions dropped as a function of alpha, for two kinds of feature maps."""
    alphas = np.linspace(0.3, 1.0, 57)
    generator = torch.Generator().manual_seed(1)
    structured = torch.cat([feature_map(seed) for seed in range(16)])
    random_64 = torch.relu(torch.randn(16, CHANNELS, HEIGHT, WIDTH, generator=generator))
    random_2048 = torch.relu(torch.randn(16, 2048, HEIGHT, WIDTH, generator=generator))
    fig, ax = plt.subplots(figsize=(6.0, 3.4), dpi=DPI)
    curves = (
        ("part-structured maps, 64 channels", structured),
        ("i.i.d. ReLU(N(0, 1)), 64 channels", random_64),
        ("i.i.d. ReLU(N(0, 1)), 2048 channels", random_2048),
    )
    for name, x in curves:
        fractions = [float((~self_threshold_drop(x, alpha=float(a))[1]).float().mean()) for a in alphas]
        ax.plot(alphas, fractions, label=name)
    ax.axvline(0.8, color="gray", linestyle="--", linewidth=1)
    ax.text(0.805, 0.9, "paper: alpha = 0.8", fontsize=8, transform=ax.get_xaxis_transform())
    ax.set_xlabel("alpha")
    ax.set_ylabel("fraction of positions dropped")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def fig_cbam() -> Figure:
    """CBAM at initialisation (seeded; train mode, so the batch norm standardises the spatial logits)."""
    torch.manual_seed(0)
    x = feature_map()
    cbam = CBAM(CHANNELS, reduction=16, kernel_size=7).train()
    assert cbam.channel_gate is not None and cbam.spatial_gate is not None
    with torch.no_grad():
        pooled = torch.stack((x.mean(dim=(2, 3)), x.amax(dim=(2, 3))))
        gate_c = torch.sigmoid(
            cbam.channel_gate.fc2(cbam.channel_gate.act(cbam.channel_gate.fc1(pooled))).sum(0)
        )
        x_c = cbam.channel_gate(x)
        assert torch.allclose(x_c, x * gate_c[:, :, None, None])
        spatial_in = torch.cat((x_c.amax(dim=1, keepdim=True), x_c.mean(dim=1, keepdim=True)), dim=1)
        gate_s = torch.sigmoid(cbam.spatial_gate.bn(cbam.spatial_gate.conv(spatial_in)))
        y = cbam(x)
        assert torch.allclose(y, x_c * gate_s)
    fig = plt.figure(figsize=(9.0, 3.4), dpi=DPI)
    grid = fig.add_gridspec(1, 4, width_ratios=[2.4, 1, 1, 1], wspace=0.35)
    ax = fig.add_subplot(grid[0])
    ax.bar(np.arange(CHANNELS), gate_c[0].numpy(), color="tab:blue")
    ax.set_title("channel gate M_c (one value per channel)", fontsize=9)
    ax.set_xlabel("channel")
    ax.set_ylim(0, 1)
    _imshow(fig.add_subplot(grid[1]), x.mean(dim=1)[0], "input: mean_c x")
    _imshow(fig.add_subplot(grid[2]), gate_s[0, 0], "spatial gate M_s", vmin=0, vmax=1)
    _imshow(fig.add_subplot(grid[3]), y.mean(dim=1)[0], "output: mean_c y")
    return fig


def fig_se() -> Figure:
    """SE at initialisation (seeded): squeeze z_c against the excitation gate s_c."""
    torch.manual_seed(0)
    x = feature_map()
    se = SE(CHANNELS, reduction=16).eval()
    with torch.no_grad():
        z = x.mean(dim=(2, 3))[0]
        s = torch.sigmoid(se.fc2(se.act(se.fc1(z[None]))))[0]
        assert torch.allclose(se(x), x * s[None, :, None, None])
    fig, axes = plt.subplots(1, 2, figsize=(8.0, 3.0), dpi=DPI)
    axes[0].bar(np.arange(CHANNELS), z.numpy(), color="tab:gray")
    axes[0].set_title("squeeze z_c = mean over H x W", fontsize=9)
    axes[0].set_xlabel("channel")
    axes[1].bar(np.arange(CHANNELS), s.numpy(), color="tab:blue")
    axes[1].set_title("excitation gate s_c (random init)", fontsize=9)
    axes[1].set_xlabel("channel")
    axes[1].set_ylim(0, 1)
    fig.tight_layout()
    return fig


def fig_srm() -> Figure:
    """SRM style pooling: per-channel mean and standard deviation, coloured by the gate."""
    torch.manual_seed(0)
    x = feature_map()
    srm = SRM(CHANNELS).eval()
    with torch.no_grad():
        srm.cfc.normal_(0.0, 1.0)  # the official init is zero (every gate 0.5); random to show the mapping
        var, mean = torch.var_mean(x, dim=(2, 3), correction=0)
        std = torch.sqrt(var + srm.eps)
        z = (torch.stack((mean, std), dim=2) * srm.cfc).sum(dim=2)
        gate = torch.sigmoid(srm.bn(z))[0]
        assert torch.allclose(srm(x), x * gate[None, :, None, None])
    fig, ax = plt.subplots(figsize=(5.2, 3.6), dpi=DPI)
    points = ax.scatter(
        mean[0].numpy(), std[0].numpy(), c=gate.numpy(), cmap="coolwarm", vmin=0, vmax=1, s=22
    )
    fig.colorbar(points, ax=ax, label="gate g_c")
    ax.set_xlabel("style mean mu_c")
    ax.set_ylabel("style std sigma_c")
    ax.set_title("SRM: one point per channel (CFC weights drawn at random)", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def fig_triplet_attention() -> Figure:
    """The three gates of triplet attention at initialisation (seeded; train mode, batch statistics)."""
    torch.manual_seed(0)
    x = feature_map()
    attention = TripletAttention(kernel_size=7).train()
    with torch.no_grad():
        gate_cw = attention.cw.attention_from_pooled(z_pool(x, dim=2))[0, 0]  # (C, W)
        gate_hc = attention.hc.attention_from_pooled(z_pool(x, dim=3).transpose(2, 3))[0, 0]  # (H, C)
        gate_hw = attention.hw.attention_from_pooled(z_pool(x, dim=1))[0, 0]  # (H, W)
        combined = (gate_cw[None, :, None, :] + gate_hc.T[None, :, :, None] + gate_hw[None, None]) / 3
        assert torch.allclose(attention(x), x * combined)
    fig, axes = plt.subplots(1, 3, figsize=(8.0, 3.6), dpi=DPI, gridspec_kw={"width_ratios": [3, 3, 1]})
    _imshow(axes[0], gate_cw.T, "C-W gate (pool over H)\nrows: channels, cols: W", vmin=0, vmax=1)
    axes[0].set_aspect("auto")
    _imshow(axes[1], gate_hc.T, "H-C gate (pool over W)\nrows: channels, cols: H", vmin=0, vmax=1)
    axes[1].set_aspect("auto")
    _imshow(axes[2], gate_hw, "H-W gate\n(pool over C)", vmin=0, vmax=1)
    fig.tight_layout()
    return fig


def fig_branch_selector() -> Figure:
    """Which branch a RandomBranchSelector(rho = 0.25) runs over 400 training steps."""
    selector = RandomBranchSelector(
        [torch.nn.Identity(), torch.nn.Identity()], probs=[0.25, 0.75], eval_branch=1, seed=0
    )
    x = torch.zeros(1)
    draws = []
    for _ in range(400):
        selector(x)
        draws.append(selector.last_branch)
    drop = np.array(draws) == 0
    fig, axes = plt.subplots(2, 1, figsize=(7.5, 3.4), dpi=DPI, gridspec_kw={"height_ratios": [1, 2.2]})
    axes[0].imshow(drop[None, :], aspect="auto", cmap="Greys", interpolation="nearest")
    axes[0].set_yticks([])
    axes[0].set_title("branch per step (black: drop branch, white: attention branch), seed 0", fontsize=9)
    steps = np.arange(1, drop.size + 1)
    axes[1].plot(steps, np.cumsum(drop) / steps, label="fraction of steps on the drop branch")
    axes[1].axhline(0.25, color="gray", linestyle="--", linewidth=1, label="rho = 0.25")
    axes[1].set_xlabel("training step")
    axes[1].set_ylim(0, 0.6)
    axes[1].legend(fontsize=8)
    axes[1].grid(alpha=0.3)
    fig.tight_layout()
    return fig


def fig_triplet_loss() -> Figure:
    """Batch-hard mining on a toy P x K = 4 x 4 batch, and the soft versus hard margin."""
    generator = torch.Generator().manual_seed(3)
    centres = torch.tensor([[0.0, 0.0], [2.2, 0.4], [0.6, 2.1], [2.4, 2.5]])
    labels = torch.arange(4).repeat_interleave(4)
    features = centres[labels] + 0.55 * torch.randn(16, 2, generator=generator)
    per_anchor = soft_margin_batch_hard_triplet(features, labels, reduction="none")
    distances = torch.cdist(features, features)
    anchor = int(per_anchor.argmax())
    same = labels == labels[anchor]
    positive = int(torch.where(same, distances[anchor], torch.tensor(-1.0)).argmax())
    negative = int(torch.where(~same, distances[anchor], torch.tensor(math.inf)).argmin())
    gap = float(distances[anchor, positive] - distances[anchor, negative])
    assert math.isclose(float(per_anchor[anchor]), math.log1p(math.exp(gap)), rel_tol=1e-4)

    fig, axes = plt.subplots(1, 2, figsize=(10.0, 3.8), dpi=DPI, gridspec_kw={"wspace": 0.9})
    ax = axes[0]
    colours = plt.get_cmap("tab10")
    for label in range(4):
        points = features[labels == label].numpy()
        ax.scatter(points[:, 0], points[:, 1], color=colours(label), s=28, label=f"identity {label}")
    a, p, n = (features[i].numpy() for i in (anchor, positive, negative))
    ax.scatter(*a, s=160, facecolors="none", edgecolors="black", linewidths=1.5)
    ax.plot(
        *zip(a, p, strict=True),
        color="tab:green",
        linewidth=2,
        label=f"hardest positive d={distances[anchor, positive]:.2f}",
    )
    ax.plot(
        *zip(a, n, strict=True),
        color="tab:red",
        linewidth=2,
        label=f"hardest negative d={distances[anchor, negative]:.2f}",
    )
    ax.set_title(
        f"hardest anchor (circled): loss softplus({gap:.2f}) = {float(per_anchor[anchor]):.2f}", fontsize=9
    )
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_aspect("equal")
    ax = axes[1]
    gaps = torch.linspace(-4, 3, 200)
    ax.plot(
        gaps.numpy(), torch.nn.functional.softplus(gaps).numpy(), label="soft margin: softplus(d_ap - d_an)"
    )
    ax.plot(gaps.numpy(), torch.relu(gaps + 0.3).numpy(), label="hard margin m = 0.3: relu(d_ap - d_an + m)")
    ax.set_xlabel("d_ap - d_an")
    ax.set_ylabel("loss of one anchor")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    return fig


#: Figure name (``<name>.png``) -> function that draws it.
FIGURES: dict[str, Callable[[], Figure]] = {
    "stadb_pipeline": fig_stadb_pipeline,
    "alpha_sweep": fig_alpha_sweep,
    "alpha_fraction": fig_alpha_fraction,
    "cbam": fig_cbam,
    "se": fig_se,
    "srm": fig_srm,
    "triplet_attention": fig_triplet_attention,
    "branch_selector": fig_branch_selector,
    "triplet_loss": fig_triplet_loss,
}


#: Committed ``metrics.json`` records of the trainer's runs (see examples/stadb_reid/RESULTS.md).
REID_RESULTS_DIR = Path(__file__).resolve().parents[1] / "examples" / "stadb_reid" / "results"


def reid_result_figures() -> dict[str, Callable[[], Figure]]:
    """Training curves of every committed re-ID run record, named ``reid_<record name>``."""

    def curves(history: list[dict[str, float]]) -> Callable[[], Figure]:
        return lambda: training_curves_figure(history)

    def sweep(report: dict[str, Any]) -> Callable[[], Figure]:
        per_setting = {s["name"]: {int(k): v for k, v in s["per_seed"].items()} for s in report["settings"]}
        return lambda: sweep_summary_figure(per_setting, report["name"])

    figures = {}
    for path in sorted(REID_RESULTS_DIR.glob("*.json")):
        content = json.loads(path.read_text())
        # A run's metrics.json draws its curves; a sweep's report its per-seed summary.
        figures[f"reid_{path.stem}"] = curves(content["history"]) if "history" in content else sweep(content)
    return figures


#: Committed JSON reports of the benchmarks (see benchmarks/RESULTS.md).
BENCHMARKS_DIR = Path(__file__).resolve().parents[1] / "benchmarks"


def _benchmark_script(name: str) -> ModuleType:
    path = BENCHMARKS_DIR / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"stadb_docs_benchmark_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the script loads
    spec.loader.exec_module(module)
    return module


def benchmark_plots(out_dir: Path) -> list[Path]:
    """The benchmark scripts' own charts, drawn from their committed reports in ``benchmarks/results/``."""
    paths = []
    kernel = BENCHMARKS_DIR / "results" / "threshold_drop.json"
    if kernel.is_file():
        report = json.loads(kernel.read_text())
        path = out_dir / "bench_threshold_drop.png"
        _benchmark_script("threshold_drop").plot(report["results"], path, torch.device(report["device"]))
        paths.append(path)
    step = BENCHMARKS_DIR / "results" / "train_step.json"
    if step.is_file():
        script = _benchmark_script("train_step")
        path = out_dir / "bench_train_step.png"
        script.plot([script.Row(**row) for row in json.loads(step.read_text())["results"]], path)
        paths.append(path)
    return paths


def generate(out_dir: Path) -> list[Path]:
    """Draw every figure of :data:`FIGURES` and of the re-ID run records into ``out_dir``; return the PNGs."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    with (
        torch.no_grad(),
        plt.rc_context({"font.size": 8, "savefig.bbox": "tight", "savefig.pad_inches": 0.05}),
    ):
        for name, draw in {**FIGURES, **reid_result_figures()}.items():
            torch.manual_seed(0)
            fig = draw()
            path = out_dir / f"{name}.png"
            fig.savefig(path, metadata={"Software": None})
            plt.close(fig)
            paths.append(path)
    return paths + benchmark_plots(out_dir)


def main() -> None:
    """Command line: ``python docs/gen_figures.py --out DIR``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    for path in generate(parser.parse_args().out):
        print(path)


if __name__ == "__main__":
    main()
