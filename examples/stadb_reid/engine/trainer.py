"""Training a config's model: setup, the loop with its hooks, and the run's report.

One process or many (``torchrun``), fp32 or mixed precision, resumable: the checkpoint written after
every epoch (and on Ctrl-C/SIGTERM) is a :class:`~stadb_reid.engine.state.TrainState` holding the
model, optimiser, loss scaler, every random generator and the position in the data, so a resumed run
continues exactly where the saved one stopped. The loop itself is :class:`~stadb_reid.engine.loop.TrainLoop`;
what happens around the steps is in :mod:`stadb_reid.engine.hooks`.
"""

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from stadb_layers import RandomBranchSelector

from ..config import Config, config_to_dict
from ..data import ReIDDataset, build_train_loader, dataset_from_config
from ..errors import CheckpointError, ConfigError
from ..inference import save_trained_model
from ..model import STADBNet
from ..model.card import command_line
from ..visualization.curves import plot_training_curves
from .build import build_model, deterministic_algorithms, resolve_device, seed_everything
from .checkpoint import load_latest_checkpoint
from .distributed import DistributedContext
from .elastic import continues_own_checkpoint, torchrun_run_id
from .evaluate import evaluate_model
from .hooks import CheckpointHook, EvalHook, InterruptHook, ProgressHook, TensorBoardHook
from .interrupt import GracefulStop
from .loop import HookBase, TrainLoop
from .precision import Precision
from .preflight import check_dataset_fits, prepare_output_dir, validate_config
from .rng import capture_rng_state, restore_rng_state
from .run_folder import CHECKPOINT_NAME, CURVES_NAME, METRICS_NAME, MODEL_DIR, TENSORBOARD_DIR
from .schedule import optim_schedule
from .state import TRAIN_STATE_KEYS, ResumePosition, TrainState
from .step import TrainStep, reid_loss

__all__ = [
    "TrainStep",
    "build_model",
    "format_metrics",
    "reid_loss",
    "resolve_device",
    "seed_everything",
    "train",
]


def write_metrics(path: Path, metrics: dict[str, Any]) -> None:
    """Write ``metrics`` as indented JSON."""
    path.write_text(json.dumps(metrics, indent=2) + "\n")


def format_metrics(metrics: dict[str, float]) -> str:
    """One line: rank-1/5/10, mAP and mINP in percent."""
    return (
        f"rank-1 {metrics['rank1']:.1f}%  rank-5 {metrics['rank5']:.1f}%  rank-10 {metrics['rank10']:.1f}%  "
        f"mAP {metrics['mAP']:.1f}%  mINP {metrics['mINP']:.1f}%"
    )


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
            when there is none). An elastic restart under torchrun continues its own job's
            checkpoint without it (:mod:`stadb_reid.engine.elastic`).
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
        checkpoint = Path(config.output_dir) / CHECKPOINT_NAME
        say = log if context.is_main else (lambda _: None)
        if not resume and continues_own_checkpoint(checkpoint, say):
            resume, overwrite = True, False  # an earlier attempt of this job applied --overwrite
            say(f"this torchrun job wrote {checkpoint}: continuing it")
        with deterministic_algorithms(config.deterministic):
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
    if precision.warning:
        log(precision.warning)
    seed_everything(config.seed)
    output_dir = Path(config.output_dir)
    checkpoint_path = output_dir / CHECKPOINT_NAME
    if context.is_main:  # torchrun stops the other ranks if this raises
        prepare_output_dir(output_dir, resume=resume, overwrite=overwrite)
    # A checkpoint is read before the slow dataset and model builds, so a bad one fails fast.
    saved = load_latest_checkpoint(checkpoint_path, log=log, require=TRAIN_STATE_KEYS) if resume else None
    if resume and saved is None:
        log(f"no checkpoint in {output_dir}: starting from scratch")
    if dataset is None:
        # Rank 0 first: it generates the synthetic dataset when missing, the others then read it.
        if not context.is_main:
            context.barrier()
        dataset = dataset_from_config(config.data)
        if context.is_main:
            context.barrier()
    log(dataset.summary())
    check_dataset_fits(config, dataset, context.world_size)
    data = config.data
    loader = build_train_loader(
        dataset,
        height=data.height,
        width=data.width,
        num_identities=data.num_identities,
        num_instances=data.num_instances,
        num_workers=data.num_workers,
        seed=config.seed,
        rank=context.rank,
        world_size=context.world_size,
        padding=data.padding,
        erasing_prob=data.erasing_prob,
        cutout_prob=data.cutout_prob,
        cutout_size=data.cutout_size,
        epoch_mode=data.epoch,
    )
    network = build_model(config, dataset.num_train_pids).to(device)
    num_parameters = sum(p.numel() for p in network.parameters())
    log(f"model: {config.model.variant} ({config.model.attention}), {num_parameters / 1e6:.2f} M parameters")
    optim = config.optim
    # model.freeze_bnneck leaves the BatchNorm before each classifier out, at its initial weights.
    optimizer = torch.optim.Adam(
        network.trainable_parameters(), lr=optim.base_lr, weight_decay=optim.weight_decay
    )
    train_step = TrainStep(
        _training_model(network, config, context),
        optimizer,
        precision=precision,
        context=context,
        channels_last=config.channels_last,
        label_smoothing=optim.label_smoothing,
    )
    start, history, past_seconds, resumed_from = ResumePosition(), [], 0.0, None
    if saved is not None:
        state, path = TrainState.from_dict(saved[0]), saved[1]
        try:
            network.load_state_dict(state.model)
            optimizer.load_state_dict(state.optimizer)
        except (RuntimeError, ValueError) as error:
            first_line = str(error).splitlines()[0]
            raise CheckpointError(f"{path} does not fit this config's model: {first_line}") from error
        if state.grad_scaler:
            train_step.grad_scaler.load_state_dict(state.grad_scaler)
        start, history, past_seconds = state.resume_at, state.history, state.train_seconds
        restore_rng_state(state.rng)
        log(f"resuming from {path}: epoch {start.epoch}, step {start.step}")
        resumed_from = f"{path} (to resume at epoch {start.epoch}, step {start.step})"
    del saved

    session_start = time.perf_counter()

    def snapshot(position: ResumePosition) -> TrainState:
        return TrainState(
            model=network.state_dict(),
            optimizer=optimizer.state_dict(),
            grad_scaler=train_step.grad_scaler.state_dict(),
            completed_epochs=position.epoch - 1,
            resume_at=position,
            rng=capture_rng_state(),
            train_seconds=past_seconds + time.perf_counter() - session_start,
            num_classes=dataset.num_train_pids,
            config=config_to_dict(config),
            history=history,
            torchrun_run_id=torchrun_run_id(),
        )

    def evaluate() -> dict[str, float]:
        # Evaluation must not consume the training random streams, or a resumed run would diverge.
        rng = capture_rng_state()
        try:
            return evaluate_model(network, dataset, config, device, progress=False)
        finally:
            restore_rng_state(rng)

    checkpoints = CheckpointHook(checkpoint_path, snapshot, context, resumed_from)
    evaluation = EvalHook(evaluate, config.eval.every, context.is_main)
    bar = ProgressHook(progress)
    tensorboard = TensorBoardHook.in_folder(output_dir / TENSORBOARD_DIR, log) if context.is_main else None
    hooks: list[HookBase] = [bar, evaluation, *([tensorboard] if tensorboard else []), checkpoints]
    schedule = optim_schedule(optim)
    try:
        with GracefulStop() as stop:
            loop = TrainLoop(
                train_step,
                model=train_step.model,
                optimizer=optimizer,
                loader=loader,
                schedule=schedule,
                epochs=optim.epochs,
                start=start,
                history=history,
                hooks=[*hooks, InterruptHook(stop, checkpoints, context)],
            )
            loop.run()
    finally:
        bar.close()
    train_seconds = past_seconds + time.perf_counter() - session_start
    result: dict[str, Any] = {}
    if context.is_main:
        if history:
            plot_training_curves(history, output_dir / CURVES_NAME)
        # The final epoch's figures are the result; the best-on-test epoch (eval.every > 0) is only
        # reported next to them, labelled as the test-set model selection it is.
        best_on_test = evaluation.best_on_test()
        result = {
            **evaluation.final,
            **({"best_on_test": best_on_test} if best_on_test else {}),
            "epochs": optim.epochs,
            "num_parameters": num_parameters,
            "train_seconds": round(train_seconds, 1),
            "history": history,
            "command": command_line(),
            **(extra_metrics or {}),
            "config": config_to_dict(config),
        }
        write_metrics(output_dir / METRICS_NAME, result)
        # The folder to share: the weights alone, the config that rebuilds the network, a model card.
        save_trained_model(
            output_dir / MODEL_DIR,
            network,
            result["config"],
            dataset.num_train_pids,
            metrics=result,
            overwrite=True,  # the run's own folder: prepare_output_dir vetted it
        )
        for line in evaluation.report_lines(format_metrics(evaluation.final)):
            log(line)
    if context.is_distributed:
        shared = [result]
        dist.broadcast_object_list(shared, src=0)
        result = shared[0]
    return result


def _training_model(network: STADBNet, config: Config, context: DistributedContext) -> nn.Module:
    """The network as the step runs it: channels-last, wrapped in DDP, compiled, as configured."""
    model: nn.Module = network
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if context.is_distributed:
        # The branch not drawn in a step leaves its parameters without gradients.
        has_random_branches = any(isinstance(m, RandomBranchSelector) for m in network.modules())
        model = DistributedDataParallel(
            model,
            device_ids=[context.device.index] if context.device.type == "cuda" else None,
            find_unused_parameters=has_random_branches,
        )
    if config.compile:
        model = cast(nn.Module, torch.compile(model))
    return model
