"""The hooks of the training loop: checkpoints, evaluation, TensorBoard, the progress bar, interruption.

Each runs on every rank; those that write files or log do so on rank 0 only (the loop's callers
pass them a disabled writer or a no-op log on the other ranks). A hook reads the loop through its
read-only ``trainer`` view and keeps its own state; what it measures goes into the history as the
return value of ``epoch_metrics`` or ``final_metrics``.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..errors import TrainingDivergedError, TrainingInterruptedError
from ..evaluation.metrics import format_truncated_ap
from .checkpoint import save_checkpoint
from .distributed import DistributedContext
from .divergence import first_non_finite
from .interrupt import GracefulStop
from .loop import HookBase
from .state import ResumePosition, TrainState

__all__ = [
    "BEST_ON_TEST_NOTE",
    "CheckpointHook",
    "EvalHook",
    "InterruptHook",
    "ProgressHook",
    "TensorBoardHook",
    "format_best_on_test",
]

#: Stored with the best-on-test figures: the epoch was chosen by its test rank-1.
BEST_ON_TEST_NOTE = "model selection on the test set: not a held-out estimate"


class CheckpointHook(HookBase):
    """Save the run after every epoch (and when :class:`InterruptHook` stops it); name the newest checkpoint.

    Args:
        path: The checkpoint file.
        snapshot: The run's :class:`TrainState` at a position.
        context: Rank 0 writes; every rank waits for it.
        resumed_from: The checkpoint a resumed run started from, for messages until the first save.
    """

    def __init__(
        self,
        path: Path,
        snapshot: Callable[[ResumePosition], TrainState],
        context: DistributedContext,
        resumed_from: str | None = None,
    ) -> None:
        self.path, self.snapshot, self.context = path, snapshot, context
        self._last = "none yet" if resumed_from is None else resumed_from

    def last_checkpoint(self) -> str:
        """The newest checkpoint of the run and where it resumes, for messages."""
        return self._last

    def after_epoch(self) -> None:
        """Save the run to continue with the next epoch."""
        self.save(ResumePosition(self.trainer.epoch + 1))

    def save(self, position: ResumePosition) -> None:
        """Write the checkpoint (rank 0), refusing non-finite weights.

        Raises:
            TrainingDivergedError: A weight or buffer is NaN or infinite; nothing is written.
        """
        if self.context.is_main:
            state = self.snapshot(position)
            tensor = first_non_finite(state.model.items())
            if tensor is not None:
                raise TrainingDivergedError(
                    f"not saving a checkpoint: {tensor} is not finite; the last checkpoint is {self._last}"
                )
            save_checkpoint(state.to_dict(), self.path)
        self._last = f"{self.path} (to resume at epoch {position.epoch}, step {position.step})"
        self.context.barrier()


class InterruptHook(HookBase):
    """On SIGINT/SIGTERM (on any rank), save the run at the current step and stop it.

    Args:
        stop: The installed signal handler's flag.
        checkpoint: Saves the run.
        context: Every rank stops at the same step.
    """

    def __init__(self, stop: GracefulStop, checkpoint: CheckpointHook, context: DistributedContext) -> None:
        self.stop, self.checkpoint, self.context = stop, checkpoint, context

    def stop_requested(self) -> bool:
        """Whether SIGINT/SIGTERM arrived in this process."""
        return self.stop.requested

    def before_step(self) -> None:
        """Save and raise if a stop was requested.

        Raises:
            TrainingInterruptedError: After saving the checkpoint.
        """
        if self.context.any(self.stop.requested):
            loop = self.trainer
            self.checkpoint.save(loop.position)
            raise TrainingInterruptedError(
                f"stopped at epoch {loop.epoch}, step {loop.step}/{loop.steps_per_epoch}; checkpoint saved "
                f"to {self.checkpoint.path}; continue with --resume"
            )


class EvalHook(HookBase):
    """Evaluate every ``every`` epochs (rank 0) and once after the last, closing the history.

    With ``every > 0`` the run also has a best-on-test epoch (:meth:`best_on_test`): among the
    evaluated epochs of the history (those of an earlier session of a resumed run included), the one
    with the highest rank-1, the earliest on ties, as the STADB authors' ``main_reid.py`` keeps it
    (``is_best = rank1 > best_rank1``). That is model selection on the test set, so its figures are
    optimistic; the final epoch's stay the run's result.

    Args:
        evaluate: Returns rank-1/5/10, mAP and mINP (and ``mAP_at_N``) in percent.
        every: Epochs between interim evaluations (0: only the final one).
        is_main: Whether this rank evaluates.
        write: Receives the interim result lines.
    """

    def __init__(
        self,
        evaluate: Callable[[], dict[str, float]],
        every: int,
        is_main: bool,
        write: Callable[[str], None] = tqdm.write,
    ) -> None:
        self.evaluate, self.every, self.is_main, self.write = evaluate, every, is_main, write
        #: The final evaluation's metrics (rank 0, once the run is done).
        self.final: dict[str, float] = {}

    def epoch_metrics(self) -> dict[str, Any]:
        """An interim evaluation when due (never of the last epoch: :meth:`final_metrics` is)."""
        epoch = self.trainer.epoch
        if not (self.is_main and self.every and epoch % self.every == 0 and epoch < self.trainer.epochs):
            return {}
        metrics = self.evaluate()
        self.write(
            f"epoch {epoch}: rank-1 {metrics['rank1']:.1f}%  mAP {metrics['mAP']:.1f}%"
            + format_truncated_ap(metrics)
        )
        return metrics

    def final_metrics(self) -> dict[str, Any]:
        """The final evaluation (rank 0), kept in :attr:`final` and recorded in the last epoch's entry."""
        if self.is_main:
            self.final = self.evaluate()
        return self.final

    def best_on_test(self) -> dict[str, Any] | None:
        """The evaluated epoch with the best test rank-1 and its metrics, once the run is done.

        Returns:
            ``{"epoch": E, "rank1": ..., "mAP": ..., ..., "note": BEST_ON_TEST_NOTE}`` with the keys
            of the final metrics; ``None`` without interim evaluation (``every`` 0), on ranks other
            than 0, or before the final evaluation.
        """
        if not (self.every and self.final):
            return None
        evaluated = [entry for entry in self.trainer.history if "rank1" in entry]
        if not evaluated:
            return None
        best = max(evaluated, key=lambda entry: entry["rank1"])  # max keeps the first, earliest, maximum
        metrics = {key: best[key] for key in self.final if key in best}
        return {"epoch": best["epoch"], **metrics, "note": BEST_ON_TEST_NOTE}

    def report_lines(self, headline: str) -> list[str]:
        """The run's closing log lines: ``headline`` with the final truncated mAP, then the best on test.

        Args:
            headline: The final metrics as one line.

        Returns:
            One line, or two when :meth:`best_on_test` has a result.
        """
        best = self.best_on_test()
        lines = [headline + format_truncated_ap(self.final)]
        return lines if best is None else [*lines, format_best_on_test(best)]


def format_best_on_test(best: dict[str, Any]) -> str:
    """One line for :meth:`EvalHook.best_on_test`'s result, saying that it is test-set model selection.

    Examples:
        >>> format_best_on_test({"epoch": 3, "rank1": 91.04, "mAP": 80.0, "mAP_at_50": 79.0, "note": "n"})
        'best on test: epoch 3, rank-1 91.0%  mAP 80.0%  mAP@50 79.0% (n)'
    """
    return (
        f"best on test: epoch {best['epoch']}, rank-1 {best['rank1']:.1f}%  mAP {best['mAP']:.1f}%"
        f"{format_truncated_ap(best)} ({best['note']})"
    )


class TensorBoardHook(HookBase):
    """Write the step loss, the epoch loss and learning rate, and interim metrics as TensorBoard scalars.

    Args:
        writer: A ``torch.utils.tensorboard.SummaryWriter`` (closed after the run).
    """

    def __init__(self, writer: Any) -> None:
        self.writer = writer

    @classmethod
    def in_folder(cls, folder: Path, log: Callable[[str], None]) -> "TensorBoardHook | None":
        """A hook writing event files into ``folder``, or ``None`` without the tensorboard package."""
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            log("no TensorBoard event files (optional: pip install tensorboard)")
            return None
        return cls(SummaryWriter(str(folder)))

    def after_step(self) -> None:
        """The step's loss, at the global step count."""
        loop = self.trainer
        self.writer.add_scalar("train/loss", loop.loss, (loop.epoch - 1) * loop.steps_per_epoch + loop.step)

    def after_epoch(self) -> None:
        """The epoch's mean loss, learning rate and, if evaluated, rank-1 and mAP."""
        entry = self.trainer.history[-1]
        self.writer.add_scalar("train/epoch_loss", entry["loss"], entry["epoch"])
        self.writer.add_scalar("train/lr", entry["lr"], entry["epoch"])
        for name in ("rank1", "mAP"):
            if name in entry:
                self.writer.add_scalar(f"eval/{name}", entry[name], entry["epoch"])

    def after_train(self) -> None:
        """Flush and close the event file."""
        self.writer.close()


class ProgressHook(HookBase):
    """A tqdm bar over all steps of the run, with the epoch, loss and learning rate.

    Args:
        enabled: Show the bar (rank 0, unless ``--no-progress``).
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: tqdm[Any] | None = None

    def before_train(self) -> None:
        """Open the bar at the resumed position."""
        loop = self.trainer
        total = loop.epochs * loop.steps_per_epoch
        done = min((loop.start.epoch - 1) * loop.steps_per_epoch + loop.start.step, total)
        self.bar = tqdm(total=total, initial=done, disable=not self.enabled, unit="step", dynamic_ncols=True)

    def before_epoch(self) -> None:
        """Show the epoch."""
        if self.bar is not None:
            self.bar.set_description(f"epoch {self.trainer.epoch}/{self.trainer.epochs}")

    def after_step(self) -> None:
        """Advance, showing the step's loss and the learning rate."""
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{self.trainer.loss:.3f}", lr=f"{self.trainer.lr:.1e}")
            self.bar.update()

    def after_train(self) -> None:
        """Close the bar."""
        self.close()

    def close(self) -> None:
        """Close the bar (also after a run stopped by an exception)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
