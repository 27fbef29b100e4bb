"""Training a config's model: the parts built one by one, the loop with its hooks, and the run's report.

One process or many (``torchrun``), fp32 or mixed precision, resumable: the checkpoint of every epoch
(and of Ctrl-C/SIGTERM) is a :class:`~stadb_reid.engine.state.TrainState`, from which a resumed run
continues exactly where the saved one stopped. As fast-reid's ``DefaultTrainer``, :class:`Trainer`
builds each part (:mod:`stadb_reid.engine.build`), registers the hooks in :meth:`Trainer.build_hooks`
and runs :class:`~stadb_reid.engine.loop.TrainLoop`.
"""

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch.distributed as dist

from ..config import Config, config_to_dict
from ..data import ReIDDataset
from ..errors import CheckpointError, ConfigError
from ..model.folder.card import command_line
from ..model.folder.files import save_trained_model
from ..visualization.curves import plot_training_curves
from .build import (
    build_dataset,
    build_loader,
    build_model,
    build_optimizer,
    build_step,
    deterministic_algorithms,
    resolve_device,
    seed_everything,
)
from .checkpoint import load_latest_checkpoint
from .distributed import DistributedContext
from .elastic import check_restart_store, continues_own_checkpoint, torchrun_run_id
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

__all__ = ["Trainer", "format_metrics", "train"]


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
        ConfigError: A bad config value, a dataset that cannot fill a batch or has no evaluable query,
            an unusable output folder or one holding a run, or torchrun restarts through a shared store.
        TrainingDivergedError: The loss or a gradient became NaN or infinite; the message names the
            step and the last checkpoint, which holds the last finite weights.
        TrainingInterruptedError: On SIGINT/SIGTERM, after saving a checkpoint.
        CheckpointError: ``resume`` found checkpoint files but none is readable, or the newest one was
            written for another model.
    """
    validate_config(config)
    if resume and overwrite:
        raise ConfigError("choose --resume or --overwrite, not both")
    check_restart_store()
    context = DistributedContext.from_environment(resolve_device(config.device))
    try:
        if not context.is_main:
            log, progress = (lambda _: None), False
        if not resume and continues_own_checkpoint(Path(config.output_dir) / CHECKPOINT_NAME, log):
            resume, overwrite = True, False  # an earlier attempt of this job applied --overwrite
        with deterministic_algorithms(config.deterministic):
            trainer = Trainer(config, context, dataset, resume=resume, overwrite=overwrite, log=log)
            try:
                trainer.train(progress)
                return trainer.report(extra_metrics)
            finally:
                # Its DDP model, in a cycle with the hooks, must be garbage when close() collects.
                del trainer
    finally:
        context.close()


class Trainer:
    """One session of a training run: its parts, built in order, and the state it resumes from.

    Building it checks the output folder, reads the checkpoint to resume (before the slow builds, so
    a bad one fails fast), loads the dataset, builds the loader, the network, the optimiser and the
    step, and restores the checkpoint's state. The arguments are :func:`train`'s (``config`` checked,
    ``log`` a no-op on ranks other than 0), and so are the errors.
    """

    # The hooks the trainer consults after the loop, set by build_hooks.
    progress: ProgressHook
    evaluation: EvalHook
    checkpoints: CheckpointHook

    def __init__(
        self,
        config: Config,
        context: DistributedContext,
        dataset: ReIDDataset | None = None,
        *,
        resume: bool,
        overwrite: bool,
        log: Callable[[str], None],
    ) -> None:
        self.config, self.context, self.log = config, context, log
        self.output_dir = Path(config.output_dir)
        self.precision = Precision(config.amp, context.device.type)
        if self.precision.warning:
            log(self.precision.warning)
        seed_everything(config.seed)
        if context.is_main:  # torchrun stops the other ranks if this raises
            prepare_output_dir(self.output_dir, resume=resume, overwrite=overwrite)
        saved = self._read_checkpoint() if resume else None
        self.dataset = build_dataset(config.data, context) if dataset is None else dataset
        log(self.dataset.summary())
        check_dataset_fits(config, self.dataset, context.world_size)
        self.loader = build_loader(config, self.dataset, context)
        self.network = build_model(config, self.dataset.num_train_pids).to(context.device)
        self.num_parameters = sum(p.numel() for p in self.network.parameters())
        model = config.model
        log(f"model: {model.variant} ({model.attention}), {self.num_parameters / 1e6:.2f} M parameters")
        self.optimizer = build_optimizer(config, self.network)
        self.step = build_step(self.network, self.optimizer, config, context, self.precision)
        self.start, self.past_seconds = ResumePosition(), 0.0
        self.history: list[dict[str, Any]] = []
        self.resumed_from: str | None = None
        if saved is not None:
            self._restore(*saved)
        del saved
        self.session_start = time.perf_counter()
        self.train_seconds = self.past_seconds

    def _read_checkpoint(self) -> tuple[dict[str, Any], Path] | None:
        checkpoint = self.output_dir / CHECKPOINT_NAME
        saved = load_latest_checkpoint(checkpoint, log=self.log, require=TRAIN_STATE_KEYS)
        if saved is None:
            self.log(f"no checkpoint in {self.output_dir}: starting from scratch")
        return saved

    def _restore(self, payload: dict[str, Any], path: Path) -> None:
        state = TrainState.from_dict(payload)
        try:
            self.network.load_state_dict(state.model)
            self.optimizer.load_state_dict(state.optimizer)
        except (RuntimeError, ValueError) as error:
            first_line = str(error).splitlines()[0]
            raise CheckpointError(f"{path} does not fit this config's model: {first_line}") from error
        if state.grad_scaler:
            self.step.grad_scaler.load_state_dict(state.grad_scaler)
        self.start, self.history, self.past_seconds = state.resume_at, state.history, state.train_seconds
        restore_rng_state(state.rng)
        where = f"epoch {self.start.epoch}, step {self.start.step}"
        self.log(f"resuming from {path}: {where}")
        self.resumed_from = f"{path} (to resume at {where})"

    def snapshot(self, position: ResumePosition) -> TrainState:
        """The run's state to continue at ``position``: what a checkpoint holds."""
        return TrainState(
            model=self.network.state_dict(),
            optimizer=self.optimizer.state_dict(),
            grad_scaler=self.step.grad_scaler.state_dict(),
            completed_epochs=position.epoch - 1,
            resume_at=position,
            rng=capture_rng_state(),
            train_seconds=self.past_seconds + time.perf_counter() - self.session_start,
            num_classes=self.dataset.num_train_pids,
            config=config_to_dict(self.config),
            history=self.history,
            torchrun_run_id=torchrun_run_id(),
        )

    def evaluate(self) -> dict[str, float]:
        """The network's test metrics, leaving the training random streams as they were."""
        rng = capture_rng_state()  # a resumed run would diverge if evaluation consumed them
        try:
            return evaluate_model(
                self.network, self.dataset, self.config, self.context.device, progress=False
            )
        finally:
            restore_rng_state(rng)

    def build_hooks(self, progress: bool, stop: GracefulStop) -> list[HookBase]:
        """The run's hooks, registered here alone, in the order the loop calls them.

        The progress bar, evaluation, TensorBoard (rank 0), checkpoints, and the interruption that
        saves one on SIGINT/SIGTERM.
        """
        context = self.context
        self.progress = ProgressHook(progress)
        self.evaluation = EvalHook(self.evaluate, self.config.eval.every, context.is_main)
        checkpoint, events = self.output_dir / CHECKPOINT_NAME, self.output_dir / TENSORBOARD_DIR
        self.checkpoints = CheckpointHook(checkpoint, self.snapshot, context, self.resumed_from)
        tensorboard = TensorBoardHook.in_folder(events, self.log) if context.is_main else None
        return [
            self.progress,
            self.evaluation,
            *([tensorboard] if tensorboard else []),
            self.checkpoints,
            InterruptHook(stop, self.checkpoints, context),
        ]

    def train(self, progress: bool) -> None:
        """Run the loop from the resumed position to the last epoch (and the final evaluation).

        Raises:
            TrainingDivergedError: The loss or a gradient became NaN or infinite.
            TrainingInterruptedError: On SIGINT/SIGTERM, after saving a checkpoint.
        """
        stop = GracefulStop()
        hooks = self.build_hooks(progress, stop)
        loop = TrainLoop(
            self.step,
            model=self.step.model,
            optimizer=self.optimizer,
            loader=self.loader,
            schedule=optim_schedule(self.config.optim),
            epochs=self.config.optim.epochs,
            start=self.start,
            history=self.history,
            hooks=hooks,
            last_checkpoint=self.checkpoints.last_checkpoint,
        )
        try:
            with stop:
                loop.run()
        finally:
            self.progress.close()
        self.train_seconds = self.past_seconds + time.perf_counter() - self.session_start

    def report(self, extra_metrics: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write the trained run's files (rank 0) and return its metrics, on every rank.

        Rank 0 draws ``curves.png``, writes ``metrics.json`` and the model folder, and logs the result.
        """
        result = self._write_result(extra_metrics or {}) if self.context.is_main else {}
        if self.context.is_distributed:
            shared = [result]
            dist.broadcast_object_list(shared, src=0)
            result = shared[0]
        return result

    def _write_result(self, extra_metrics: dict[str, Any]) -> dict[str, Any]:
        if self.history:
            plot_training_curves(self.history, self.output_dir / CURVES_NAME)
        # The final epoch's figures are the result; the best-on-test epoch (eval.every > 0) is only
        # reported next to them, labelled as the test-set model selection it is.
        evaluation = self.evaluation
        best_on_test = evaluation.best_on_test()
        result: dict[str, Any] = {
            **evaluation.final,
            **({"best_on_test": best_on_test} if best_on_test else {}),
            "epochs": self.config.optim.epochs,
            "num_parameters": self.num_parameters,
            "train_seconds": round(self.train_seconds, 1),
            "history": self.history,
            "command": command_line(),
            **extra_metrics,
            "config": config_to_dict(self.config),
        }
        (self.output_dir / METRICS_NAME).write_text(json.dumps(result, indent=2) + "\n")
        # The folder to share: the weights alone, the config that rebuilds the network, a model card.
        save_trained_model(
            self.output_dir / MODEL_DIR,
            self.network,
            result["config"],
            self.dataset.num_train_pids,
            metrics=result,
            overwrite=True,  # the run's own folder: prepare_output_dir vetted it
        )
        for line in evaluation.report_lines(format_metrics(evaluation.final)):
            self.log(line)
        return result
