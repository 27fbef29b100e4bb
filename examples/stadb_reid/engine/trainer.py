"""The training loop: PK batches, cross-entropy plus batch-hard triplet loss per head, Adam.

One process or many (``torchrun``), fp32 or mixed precision, resumable: the checkpoint written after
every epoch (and on Ctrl-C/SIGTERM) holds the model, optimiser, loss scaler, every random generator
and the position in the data, so a resumed run continues exactly where the saved one stopped.
"""

import json
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from stadb_layers import RandomBranchSelector, SoftMarginBatchHardTriplet

from ..config import Config, ConfigError, config_to_dict
from ..data import ReIDDataset, build_dataset, build_train_loader
from ..model import STADBNet, TrainOutput
from ..visualization.curves import plot_training_curves
from .checkpoint import CHECKPOINT_NAME, CheckpointError, load_latest_checkpoint, save_checkpoint
from .distributed import DistributedContext, gather_batch
from .divergence import TrainingDivergedError, first_non_finite
from .evaluate import evaluate_model
from .interrupt import GracefulStop, TrainingInterruptedError
from .precision import Precision
from .preflight import check_dataset_fits, prepare_output_dir, validate_config
from .rng import capture_rng_state, restore_rng_state
from .schedule import learning_rate

__all__ = [
    "METRICS_NAME",
    "TrainStep",
    "build_model",
    "reid_loss",
    "resolve_device",
    "seed_everything",
    "train",
]

METRICS_NAME = "metrics.json"
CURVES_NAME = "curves.png"
TENSORBOARD_DIR = "tensorboard"


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """``"cpu"`` or ``"cuda"`` (optionally ``"cuda:N"``), with a clear error when CUDA is missing."""
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ConfigError(f"device must be cpu or cuda, got {name!r}") from error
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device must be cpu or cuda, got {name!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda was requested but torch sees no CUDA GPU; use --device cpu")
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


class TrainStep:
    """One optimisation step: forward (under autocast), the global-batch loss, backward, update.

    In a multi-process job the features, logits and labels of all ranks are gathered before the
    loss, so the batch-hard triplet mining sees the whole P x K batch of every rank, as in a
    single-process run on the same global batch (see :func:`~stadb_reid.engine.distributed.gather_batch`).

    Args:
        model: The training model (possibly wrapped in DDP or ``torch.compile``).
        optimizer: Its optimiser.
        precision: Autocast mode; fp16 adds a gradient scaler.
        context: The process group (a world of one by default).
        channels_last: Feed the images in NHWC memory format.
        label_smoothing: Of the cross-entropy.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        precision: Precision,
        context: DistributedContext,
        channels_last: bool = False,
        label_smoothing: float = 0.0,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.precision = precision
        self.context = context
        self.channels_last = channels_last
        self.cross_entropy = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.triplet = SoftMarginBatchHardTriplet()
        self.grad_scaler = torch.amp.GradScaler(precision.device_type, enabled=precision.needs_grad_scaler)

    def loss(self, output: TrainOutput, pids: torch.Tensor) -> torch.Tensor:
        """The loss over the global batch, in fp32."""
        gathered = TrainOutput(
            [gather_batch(f.float(), self.context) for f in output.features],
            [gather_batch(logits.float(), self.context) for logits in output.logits],
        )
        return reid_loss(gathered, gather_batch(pids, self.context), self.cross_entropy, self.triplet)

    def __call__(self, images: torch.Tensor, pids: torch.Tensor) -> torch.Tensor:
        """Run the step on this rank's batch and return the (detached) global-batch loss.

        Raises:
            TrainingDivergedError: The loss, or a gradient outside fp16's loss scaling, is NaN or
                infinite; the optimiser was not stepped.
        """
        device = self.context.device
        images = images.to(device, non_blocking=True)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with self.precision.autocast():
            output = self.model(images)
        assert isinstance(output, TrainOutput), "the model must be in training mode"
        loss = self.loss(output, pids.to(device))
        if not torch.isfinite(loss):
            raise TrainingDivergedError(f"the loss is {loss.item()}")
        self.optimizer.zero_grad(set_to_none=True)
        self.grad_scaler.scale(loss).backward()
        if not self.grad_scaler.is_enabled():
            parameter = first_non_finite((n, p.grad) for n, p in self.model.named_parameters())
            if parameter is not None:
                raise TrainingDivergedError(f"the gradient of {parameter} is not finite")
        self.grad_scaler.step(self.optimizer)
        self.grad_scaler.update()
        return loss.detach()


def write_metrics(path: Path, metrics: dict[str, Any]) -> None:
    """Write ``metrics`` as indented JSON."""
    path.write_text(json.dumps(metrics, indent=2) + "\n")


def format_metrics(metrics: dict[str, float]) -> str:
    """One line: rank-1/5/10, mAP and mINP in percent."""
    return (
        f"rank-1 {metrics['rank1']:.1f}%  rank-5 {metrics['rank5']:.1f}%  rank-10 {metrics['rank10']:.1f}%  "
        f"mAP {metrics['mAP']:.1f}%  mINP {metrics['mINP']:.1f}%"
    )


@contextmanager
def _deterministic_algorithms(enabled: bool) -> Iterator[None]:
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(enabled or previous)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


def _tensorboard_writer(output_dir: Path, log: Callable[[str], None]) -> Any:
    """A SummaryWriter on ``OUTPUT/tensorboard`` when the tensorboard package is installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log("no TensorBoard event files (optional: pip install tensorboard)")
        return None
    return SummaryWriter(str(output_dir / TENSORBOARD_DIR))


def train(
    config: Config,
    *,
    dataset: ReIDDataset | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    extra_metrics: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train ``config``'s model, checkpoint every epoch, evaluate, write ``metrics.json`` and ``curves.png``.

    Under ``torchrun`` this runs data-parallel (NCCL on CUDA, gloo on CPU): every rank trains on its
    own identities, and rank 0 alone logs, evaluates and writes files.

    Args:
        config: The run's configuration; ``config.output_dir`` receives the checkpoints and metrics.
        dataset: An already loaded dataset; by default it is built from ``config.data``.
        resume: Continue from the newest good checkpoint in ``config.output_dir`` (starting afresh
            when there is none).
        overwrite: Replace an earlier run in ``config.output_dir`` (its checkpoints, metrics, curves
            and TensorBoard events); without it or ``resume``, such a folder is refused.
        progress: Show progress bars.
        log: Where status lines go.
        extra_metrics: More entries for ``metrics.json``, e.g. the untrained figures.

    Returns:
        The metrics written to ``metrics.json``: ``mAP``, ``rank1``, ``rank5``, ``rank10`` (percent),
        ``mINP``, the parameter count, the training time, the per-epoch history and the config.

    Raises:
        ConfigError: A config value is out of range, the dataset cannot fill a batch or has no
            evaluable query, or the output folder is unusable or holds a run (checked before training).
        TrainingDivergedError: The loss or a gradient became NaN or infinite; the message names the
            step and the last checkpoint, which holds the last finite weights.
        TrainingInterruptedError: On SIGINT/SIGTERM, after saving a checkpoint.
        CheckpointError: ``resume`` found checkpoint files but none is readable, or the newest one was
            written for another model.
    """
    validate_config(config)
    if resume and overwrite:
        raise ConfigError("choose --resume or --overwrite, not both")
    context = DistributedContext.from_environment(resolve_device(config.device))
    try:
        with _deterministic_algorithms(config.deterministic):
            return _train(config, context, dataset, resume, overwrite, progress, log, extra_metrics)
    finally:
        context.close()


def _train(
    config: Config,
    context: DistributedContext,
    dataset: ReIDDataset | None,
    resume: bool,
    overwrite: bool,
    progress: bool,
    log: Callable[[str], None],
    extra_metrics: dict[str, Any] | None,
) -> dict[str, Any]:
    if not context.is_main:
        log, progress = (lambda _: None), False
    device = context.device
    precision = Precision(config.amp, device.type)
    seed_everything(config.seed)
    output_dir = Path(config.output_dir)
    checkpoint_path = output_dir / CHECKPOINT_NAME
    if context.is_main:  # torchrun stops the other ranks if this raises
        prepare_output_dir(output_dir, resume=resume, overwrite=overwrite)
    # A checkpoint is read before the slow dataset and model builds, so a bad one fails fast.
    saved = load_latest_checkpoint(checkpoint_path, log=log) if resume else None
    if resume and saved is None:
        log(f"no checkpoint in {output_dir}: starting from scratch")
    if dataset is None:
        # Rank 0 first: it generates the synthetic dataset when missing, the others then read it.
        if not context.is_main:
            context.barrier()
        dataset = build_dataset(config.data.dataset, config.data.root, **config.data.options)
        if context.is_main:
            context.barrier()
    log(dataset.summary())
    check_dataset_fits(config, dataset, context.world_size)
    loader = build_train_loader(
        dataset,
        height=config.data.height,
        width=config.data.width,
        num_identities=config.data.num_identities,
        num_instances=config.data.num_instances,
        num_workers=config.data.num_workers,
        seed=config.seed,
        rank=context.rank,
        world_size=context.world_size,
    )
    network = build_model(config, dataset.num_train_pids).to(device)
    num_parameters = sum(p.numel() for p in network.parameters())
    log(f"model: {config.model.variant} ({config.model.attention}), {num_parameters / 1e6:.2f} M parameters")
    optim = config.optim
    optimizer = torch.optim.Adam(network.parameters(), lr=optim.base_lr, weight_decay=optim.weight_decay)

    history: list[dict[str, Any]] = []
    last_saved = "none yet"
    first_epoch, step, partial_loss, train_seconds = 1, 0, 0.0, 0.0
    if saved is not None:
        state, path = saved
        try:
            network.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError) as error:
            first_line = str(error).splitlines()[0]
            raise CheckpointError(f"{path} does not fit this config's model: {first_line}") from error
        history = state["history"]
        first_epoch, step = state["position"]["epoch"], state["position"]["step"]
        partial_loss, train_seconds = state["position"]["loss_sum"], state["train_seconds"]
        restore_rng_state(state["rng"])
        log(f"resuming from {path}: epoch {first_epoch}, step {step}")
        last_saved = f"{path} (to resume at epoch {first_epoch}, step {step})"

    train_model: nn.Module = network
    if config.channels_last:
        train_model = train_model.to(memory_format=torch.channels_last)
    if context.is_distributed:
        # The branch not drawn in a step leaves its parameters without gradients.
        has_random_branches = any(isinstance(m, RandomBranchSelector) for m in network.modules())
        train_model = DistributedDataParallel(
            train_model,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=has_random_branches,
        )
    if config.compile:
        train_model = cast(nn.Module, torch.compile(train_model))
    train_step = TrainStep(
        train_model,
        optimizer,
        precision=precision,
        context=context,
        channels_last=config.channels_last,
        label_smoothing=optim.label_smoothing,
    )
    if saved is not None and "grad_scaler" in saved[0]:
        train_step.grad_scaler.load_state_dict(saved[0]["grad_scaler"])
    del saved

    session_start = time.perf_counter()

    def save(next_epoch: int, next_step: int, loss_sum: float) -> None:
        nonlocal last_saved
        if context.is_main:
            tensor = first_non_finite(network.state_dict().items())
            if tensor is not None:
                raise TrainingDivergedError(
                    f"not saving a checkpoint: {tensor} is not finite; the last checkpoint is {last_saved}"
                )
            state = {
                "model": network.state_dict(),
                "optimizer": optimizer.state_dict(),
                "grad_scaler": train_step.grad_scaler.state_dict(),
                "epoch": next_epoch - 1,
                "position": {"epoch": next_epoch, "step": next_step, "loss_sum": loss_sum},
                "rng": capture_rng_state(),
                "train_seconds": train_seconds + time.perf_counter() - session_start,
                "num_classes": dataset.num_train_pids,
                "config": config_to_dict(config),
                "history": history,
            }
            save_checkpoint(state, checkpoint_path)
        last_saved = f"{checkpoint_path} (to resume at epoch {next_epoch}, step {next_step})"
        context.barrier()

    def evaluate() -> dict[str, float]:
        # Evaluation must not consume the training random streams, or a resumed run would diverge.
        rng = capture_rng_state()
        try:
            return evaluate_model(network, dataset, config, device, progress=False)
        finally:
            restore_rng_state(rng)

    writer = _tensorboard_writer(output_dir, log) if context.is_main else None
    steps_per_epoch = len(loader)
    bar = tqdm(
        total=optim.epochs * steps_per_epoch,
        initial=min((first_epoch - 1) * steps_per_epoch + step, optim.epochs * steps_per_epoch),
        disable=not progress,
        unit="step",
        dynamic_ncols=True,
    )
    with GracefulStop() as stop:
        for epoch in range(first_epoch, optim.epochs + 1):
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
            loader.set_epoch(epoch, start_batch=step)
            train_model.train()
            bar.set_description(f"epoch {epoch}/{optim.epochs}")
            batches = iter(loader)
            while step < steps_per_epoch:
                if context.any(stop.requested):
                    save(epoch, step, partial_loss)
                    bar.close()
                    raise TrainingInterruptedError(
                        f"stopped at epoch {epoch}, step {step}/{steps_per_epoch}; checkpoint saved to "
                        f"{checkpoint_path}; continue with --resume"
                    )
                try:
                    images, pids, _ = next(batches)
                except RuntimeError:
                    if stop.requested:  # a loader worker died of the same signal; stop at the check above
                        continue
                    raise
                try:
                    loss = train_step(images, pids).item()
                except TrainingDivergedError as error:
                    bar.close()
                    raise TrainingDivergedError(
                        f"training diverged at epoch {epoch}, step {step + 1}/{steps_per_epoch}: {error}; "
                        f"the last checkpoint, with finite weights, is {last_saved}; lower optim.base_lr "
                        "or check the data"
                    ) from None
                partial_loss += loss
                step += 1
                bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.1e}")
                bar.update()
                if writer is not None:
                    writer.add_scalar("train/loss", loss, (epoch - 1) * steps_per_epoch + step)
            history.append({"epoch": epoch, "loss": partial_loss / steps_per_epoch, "lr": lr})
            step, partial_loss = 0, 0.0
            if writer is not None:
                writer.add_scalar("train/epoch_loss", history[-1]["loss"], epoch)
                writer.add_scalar("train/lr", lr, epoch)
            if (
                context.is_main
                and config.eval.every
                and epoch % config.eval.every == 0
                and epoch < optim.epochs
            ):
                interim = evaluate()
                history[-1].update(interim)
                bar.write(f"epoch {epoch}: rank-1 {interim['rank1']:.1f}%  mAP {interim['mAP']:.1f}%")
                if writer is not None:
                    for name in ("rank1", "mAP"):
                        writer.add_scalar(f"eval/{name}", interim[name], epoch)
            save(epoch + 1, 0, 0.0)
    bar.close()
    train_seconds += time.perf_counter() - session_start
    result: dict[str, Any] = {}
    if context.is_main:
        metrics = evaluate()
        if history:
            history[-1].update(metrics)
            plot_training_curves(history, output_dir / CURVES_NAME)
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
        if writer is not None:
            writer.close()
        log(format_metrics(metrics))
    if context.is_distributed:
        shared = [result]
        dist.broadcast_object_list(shared, src=0)
        result = shared[0]
    return result
