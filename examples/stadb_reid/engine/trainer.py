"""The training loop: PK batches, cross-entropy plus batch-hard triplet loss per head, Adam."""

import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from stadb_layers import SoftMarginBatchHardTriplet

from ..config import Config, config_to_dict
from ..data import ReIDDataset, build_dataset, build_train_loader
from ..model import STADBNet, TrainOutput
from .checkpoint import CHECKPOINT_NAME, save_checkpoint
from .evaluate import evaluate_model
from .schedule import learning_rate

__all__ = ["METRICS_NAME", "build_model", "resolve_device", "seed_everything", "train"]

METRICS_NAME = "metrics.json"


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """``"cpu"`` or ``"cuda"`` (optionally ``"cuda:N"``), with a clear error when CUDA is missing."""
    device = torch.device(name)
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be cpu or cuda, got {name}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda was requested but torch sees no CUDA GPU; use --device cpu")
    return device


def build_model(config: Config, num_classes: int, *, pretrained: bool | None = None) -> STADBNet:
    """The network described by ``config.model``; ``pretrained`` overrides the config's setting."""
    model_config = config.model
    return STADBNet(
        num_classes,
        variant=model_config.variant,
        attention=model_config.attention,
        alpha=model_config.alpha,
        rho=model_config.rho,
        backbone=model_config.backbone,
        pretrained=model_config.pretrained if pretrained is None else pretrained,
        weights=Path(model_config.weights) if model_config.weights else None,
        seed=config.seed,
    )


def reid_loss(
    output: TrainOutput, labels: torch.Tensor, cross_entropy: nn.Module, triplet: nn.Module
) -> torch.Tensor:
    """Sum over heads of cross-entropy on the logits plus the triplet loss on the features."""
    losses = [
        cross_entropy(logits, labels) + triplet(features, labels)
        for features, logits in zip(output.features, output.logits, strict=True)
    ]
    return torch.stack(losses).sum()


def write_metrics(path: Path, metrics: dict[str, Any]) -> None:
    """Write ``metrics`` as indented JSON."""
    path.write_text(json.dumps(metrics, indent=2) + "\n")


def train(
    config: Config,
    *,
    dataset: ReIDDataset | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    extra_metrics: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train ``config``'s model, checkpoint every epoch, evaluate, and write ``metrics.json``.

    Args:
        config: The run's configuration; ``config.output_dir`` receives the checkpoint and metrics.
        dataset: An already loaded dataset; by default it is built from ``config.data``.
        progress: Show progress bars.
        log: Where status lines go.
        extra_metrics: More entries for ``metrics.json``, e.g. the untrained figures.

    Returns:
        The metrics written to ``metrics.json``: ``mAP``, ``rank1``, ``rank5``, ``rank10`` (percent),
        ``mINP``, the parameter count, the training time and the config.
    """
    seed_everything(config.seed)
    device = resolve_device(config.device)
    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if dataset is None:
        dataset = build_dataset(config.data.dataset, config.data.root, **config.data.options)
    log(dataset.summary())
    loader = build_train_loader(
        dataset,
        height=config.data.height,
        width=config.data.width,
        num_identities=config.data.num_identities,
        num_instances=config.data.num_instances,
        num_workers=config.data.num_workers,
        seed=config.seed,
    )
    model = build_model(config, dataset.num_train_pids).to(device)
    num_parameters = sum(p.numel() for p in model.parameters())
    log(f"model: {config.model.variant} ({config.model.attention}), {num_parameters / 1e6:.2f} M parameters")

    optim = config.optim
    optimizer = torch.optim.Adam(model.parameters(), lr=optim.base_lr, weight_decay=optim.weight_decay)
    cross_entropy = nn.CrossEntropyLoss(label_smoothing=optim.label_smoothing)
    triplet = SoftMarginBatchHardTriplet()
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    bar = tqdm(total=optim.epochs * len(loader), disable=not progress, unit="step", dynamic_ncols=True)
    for epoch in range(1, optim.epochs + 1):
        lr = learning_rate(
            epoch,
            base_lr=optim.base_lr,
            warmup_epochs=optim.warmup_epochs,
            warmup_step=optim.warmup_step,
            milestones=optim.milestones,
            gamma=optim.gamma,
        )
        for group in optimizer.param_groups:
            group["lr"] = lr
        loader.set_epoch(epoch)
        model.train()
        bar.set_description(f"epoch {epoch}/{optim.epochs}")
        epoch_loss = 0.0
        for images, pids, _ in loader:
            output = model(images.to(device, non_blocking=True))
            assert isinstance(output, TrainOutput)
            loss = reid_loss(output, pids.to(device), cross_entropy, triplet)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            epoch_loss += loss.item()
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.1e}")
            bar.update()
        history.append({"epoch": epoch, "loss": epoch_loss / len(loader), "lr": lr})
        save_checkpoint(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "epoch": epoch,
                "num_classes": dataset.num_train_pids,
                "config": config_to_dict(config),
                "history": history,
            },
            output_dir / CHECKPOINT_NAME,
        )
        if config.eval.every and epoch % config.eval.every == 0 and epoch < optim.epochs:
            interim = evaluate_model(model, dataset, config, device, progress=False)
            history[-1].update(interim)
            bar.write(f"epoch {epoch}: rank-1 {interim['rank1']:.1f}%  mAP {interim['mAP']:.1f}%")
    bar.close()
    train_seconds = time.perf_counter() - start
    metrics = evaluate_model(model, dataset, config, device, progress=progress)
    result = {
        **metrics,
        "epochs": optim.epochs,
        "num_parameters": num_parameters,
        "train_seconds": round(train_seconds, 1),
        "history": history,
        **(extra_metrics or {}),
        "config": config_to_dict(config),
    }
    write_metrics(output_dir / METRICS_NAME, result)
    log(format_metrics(metrics))
    return result


def format_metrics(metrics: dict[str, float]) -> str:
    """One line: rank-1/5/10, mAP and mINP in percent."""
    return (
        f"rank-1 {metrics['rank1']:.1f}%  rank-5 {metrics['rank5']:.1f}%  rank-10 {metrics['rank10']:.1f}%  "
        f"mAP {metrics['mAP']:.1f}%  mINP {metrics['mINP']:.1f}%"
    )
