"""The training loop: epochs of steps, and hooks that do everything else.

In the manner of fast-reid's ``TrainerBase``: :class:`TrainLoop` only sets the learning rate, draws
the batches and runs the step; checkpointing, evaluation, logging, the progress bar and interruption
are :class:`HookBase` subclasses (:mod:`stadb_reid.engine.hooks`) called at fixed points.
"""

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

from ..data import TrainLoader
from ..errors import TrainingDivergedError
from .state import ResumePosition

__all__ = ["HookBase", "TrainLoop"]


class HookBase:
    """Something done at fixed points of a run; ``trainer`` is the loop, set before the run starts.

    The loop calls, in this order: ``before_train``; per epoch ``before_epoch``, per step
    ``before_step`` and ``after_step``, then ``after_epoch`` (its history entry is in place);
    ``after_train`` once the last epoch is done. An exception ends the run without further calls.
    """

    trainer: "TrainLoop"

    def before_train(self) -> None:
        """Called once before the first step."""

    def before_epoch(self) -> None:
        """Called at the start of each epoch (also of the epoch a resumed run continues)."""

    def before_step(self) -> None:
        """Called before each step."""

    def after_step(self) -> None:
        """Called after each step; ``trainer.loss`` holds its loss."""

    def after_epoch(self) -> None:
        """Called after each epoch; ``trainer.history[-1]`` describes it."""

    def after_train(self) -> None:
        """Called once after the last epoch."""


class TrainLoop:
    """Run ``step`` over the batches of every remaining epoch, calling the hooks around it.

    Args:
        step: Runs one optimisation step on ``(images, pids)`` and returns the loss.
        model: The training model (set to training mode each epoch).
        optimizer: Whose learning rate follows ``schedule``.
        loader: The training batches; ``set_epoch`` fixes each epoch's order.
        schedule: The learning rate of a 1-based epoch.
        epochs: The last epoch.
        start: Where to begin (a resumed run's position).
        history: The finished epochs' entries (a resumed run's history).
        hooks: Called in this order at each point.
    """

    def __init__(
        self,
        step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        *,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        loader: TrainLoader,
        schedule: Callable[[int], float],
        epochs: int,
        start: ResumePosition,
        history: list[dict[str, Any]],
        hooks: Sequence[HookBase],
    ) -> None:
        self.run_step, self.model, self.optimizer, self.loader = step, model, optimizer, loader
        self.schedule, self.epochs, self.history, self.hooks = schedule, epochs, history, list(hooks)
        self.start = start
        self.epoch, self.step, self.loss_sum = start.epoch, start.step, start.loss_sum
        self.steps_per_epoch = len(loader)
        self.loss, self.lr = float("nan"), 0.0
        #: Where the last checkpoint went, for messages; set by the checkpoint hook.
        self.last_checkpoint = "none yet"
        #: Whether a stop was requested; set by the interruption hook.
        self.stop_requested: Callable[[], bool] = lambda: False

    @property
    def position(self) -> ResumePosition:
        """Where a run saved now would continue."""
        return ResumePosition(self.epoch, self.step, self.loss_sum)

    def run(self) -> None:
        """Train from :attr:`start` to the end of epoch :attr:`epochs`."""
        for hook in self.hooks:
            hook.trainer = self
        self._call("before_train")
        for epoch in range(self.start.epoch, self.epochs + 1):
            self.epoch, self.lr = epoch, self.schedule(epoch)
            for group in self.optimizer.param_groups:
                group["lr"] = self.lr
            self.loader.set_epoch(epoch, start_batch=self.step)
            self.model.train()
            self._call("before_epoch")
            batches = iter(self.loader)
            while self.step < self.steps_per_epoch:
                self._call("before_step")
                self.loss = self._step(batches)
                self.loss_sum += self.loss
                self.step += 1
                self._call("after_step")
            self.history.append(
                {
                    "epoch": epoch,
                    "loss": self.loss_sum / self.steps_per_epoch,
                    "lr": self.lr,
                    "steps": self.steps_per_epoch,
                }
            )
            self.step, self.loss_sum = 0, 0.0
            self._call("after_epoch")
        self.epoch = self.epochs + 1
        self._call("after_train")

    def _step(self, batches: Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> float:
        try:
            images, pids, _ = next(batches)
        except RuntimeError:
            if self.stop_requested():  # a loader worker died of the stop signal: the hooks stop the run
                self._call("before_step")
            raise
        try:
            return self.run_step(images, pids).item()
        except TrainingDivergedError as error:
            raise TrainingDivergedError(
                f"training diverged at epoch {self.epoch}, step {self.step + 1}/{self.steps_per_epoch}: "
                f"{error}; the last checkpoint, with finite weights, is {self.last_checkpoint}; lower "
                "optim.base_lr or check the data"
            ) from None

    def _call(self, point: str) -> None:
        for hook in self.hooks:
            getattr(hook, point)()
