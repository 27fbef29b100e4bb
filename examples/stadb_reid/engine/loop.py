"""The training loop: epochs of steps, and hooks that do everything else.

In the manner of fast-reid's ``TrainerBase``: :class:`TrainLoop` only sets the learning rate, draws
the batches, runs the step and records each epoch; checkpointing, evaluation, logging, the progress
bar and interruption are :class:`HookBase` subclasses (:mod:`stadb_reid.engine.hooks`) called at
fixed points. Hooks see the loop through a :class:`LoopView`, which cannot change it: what a hook
measures reaches the history through the values its :meth:`~HookBase.epoch_metrics` and
:meth:`~HookBase.final_metrics` return.
"""

from collections.abc import Callable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

from ..data.loaders import TrainLoader
from ..errors import TrainingDivergedError
from .state import ResumePosition

__all__ = ["HookBase", "LoopView", "TrainLoop"]


class HookBase:
    """Something done at fixed points of a run; ``trainer`` is a read-only view of the loop, set at its start.

    The loop calls, in this order: ``before_train``; per epoch ``before_epoch``, per step
    ``before_step`` and ``after_step``, then ``epoch_metrics`` (before the epoch's history entry is
    written) and ``after_epoch`` (it is in place); ``after_train`` once the last epoch is done, then
    ``final_metrics``. An exception ends the run without further calls.
    """

    trainer: "LoopView"

    def before_train(self) -> None:
        """Called once before the first step."""

    def before_epoch(self) -> None:
        """Called at the start of each epoch (also of the epoch a resumed run continues)."""

    def before_step(self) -> None:
        """Called before each step."""

    def after_step(self) -> None:
        """Called after each step; ``trainer.loss`` holds its loss."""

    def epoch_metrics(self) -> dict[str, Any]:
        """Called after the epoch's last step: figures for its history entry (none by default)."""
        return {}

    def after_epoch(self) -> None:
        """Called after each epoch; ``trainer.history[-1]`` describes it."""

    def after_train(self) -> None:
        """Called once after the last epoch."""

    def final_metrics(self) -> dict[str, Any]:
        """Called last, once the run is done: figures for the last history entry (none by default)."""
        return {}

    def stop_requested(self) -> bool:
        """Whether this hook stops the run at the next ``before_step`` (then a failed batch is its doing)."""
        return False


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
        history: The finished epochs' entries (a resumed run's history); the loop appends to it.
        hooks: Called in this order at each point.
        last_checkpoint: Names the newest checkpoint, for the message of a diverged step.
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
        last_checkpoint: Callable[[], str] = lambda: "none yet",
    ) -> None:
        self.run_step, self.model, self.optimizer, self.loader = step, model, optimizer, loader
        self.schedule, self.epochs, self.history, self.hooks = schedule, epochs, history, list(hooks)
        self.start, self.last_checkpoint = start, last_checkpoint
        self.epoch, self.step, self.loss_sum = start.epoch, start.step, start.loss_sum
        self.steps_per_epoch = len(loader)
        self.loss, self.lr = float("nan"), 0.0

    def run(self) -> None:
        """Train from ``start`` to the end of epoch ``epochs``."""
        view = LoopView(self)
        for hook in self.hooks:
            hook.trainer = view
        self._call("before_train")
        for epoch in range(self.start.epoch, self.epochs + 1):
            self._run_epoch(epoch)
        self.epoch = self.epochs + 1
        self._call("after_train")
        final = self._collect("final_metrics")
        if self.history:
            self.history[-1].update(final)

    def _run_epoch(self, epoch: int) -> None:
        self._begin_epoch(epoch)
        self._call("before_epoch")
        batches = iter(self.loader)
        while self.step < self.steps_per_epoch:
            self._call("before_step")
            self.loss = self._step(batches)
            self.loss_sum += self.loss
            self.step += 1
            self._call("after_step")
        self._end_epoch()
        self._call("after_epoch")

    def _begin_epoch(self, epoch: int) -> None:
        self.epoch, self.lr = epoch, self.schedule(epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
        self.loader.set_epoch(epoch, start_batch=self.step)
        self.model.train()

    def _end_epoch(self) -> None:
        metrics = self._collect("epoch_metrics")
        mean_loss = self.loss_sum / self.steps_per_epoch
        self.history.append(
            {"epoch": self.epoch, "loss": mean_loss, "lr": self.lr, "steps": self.steps_per_epoch, **metrics}
        )
        self.step, self.loss_sum = 0, 0.0

    def _step(self, batches: Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> float:
        try:
            images, pids, _ = next(batches)
        except RuntimeError:
            if any(hook.stop_requested() for hook in self.hooks):
                self._call("before_step")  # a loader worker died of the stop signal: the hooks stop the run
            raise
        try:
            return self.run_step(images, pids).item()
        except TrainingDivergedError as error:
            raise TrainingDivergedError(
                f"training diverged at epoch {self.epoch}, step {self.step + 1}/{self.steps_per_epoch}: "
                f"{error}; the last checkpoint, with finite weights, is {self.last_checkpoint()}; lower "
                "optim.base_lr or check the data"
            ) from None

    def _call(self, point: str) -> None:
        for hook in self.hooks:
            getattr(hook, point)()

    def _collect(self, point: str) -> dict[str, Any]:
        collected: dict[str, Any] = {}
        for hook in self.hooks:
            collected.update(getattr(hook, point)())
        return collected


class LoopView:
    """What a hook sees of a :class:`TrainLoop`: its position, last loss and rate, and its history.

    Read-only: the attributes cannot be set, and the history entries are read-only mappings.
    """

    __slots__ = ("_loop",)

    def __init__(self, loop: TrainLoop) -> None:
        self._loop = loop

    @property
    def epoch(self) -> int:
        """The current 1-based epoch (``epochs + 1`` once the run is done)."""
        return self._loop.epoch

    @property
    def epochs(self) -> int:
        """The last epoch."""
        return self._loop.epochs

    @property
    def step(self) -> int:
        """Steps done in the current epoch."""
        return self._loop.step

    @property
    def steps_per_epoch(self) -> int:
        """Steps in every epoch."""
        return self._loop.steps_per_epoch

    @property
    def loss(self) -> float:
        """The last step's loss."""
        return self._loop.loss

    @property
    def lr(self) -> float:
        """The current epoch's learning rate."""
        return self._loop.lr

    @property
    def start(self) -> ResumePosition:
        """Where this session of the run began."""
        return ResumePosition(**vars(self._loop.start))

    @property
    def position(self) -> ResumePosition:
        """Where a run saved now would continue."""
        return ResumePosition(self._loop.epoch, self._loop.step, self._loop.loss_sum)

    @property
    def history(self) -> tuple[Mapping[str, Any], ...]:
        """One entry per finished epoch (those of earlier sessions included)."""
        return tuple(MappingProxyType(entry) for entry in self._loop.history)
