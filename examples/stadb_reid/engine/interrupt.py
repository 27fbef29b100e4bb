"""Stop training cleanly on Ctrl-C or SIGTERM: finish the current step, save, then exit."""

import signal
import threading
from types import FrameType, TracebackType

from ..errors import TrainingInterruptedError

__all__ = ["GracefulStop", "TrainingInterruptedError"]

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class GracefulStop:
    """Turn the first SIGINT/SIGTERM into a flag the training loop polls between steps.

    A step interrupted half way (say, between two parameter updates of ``optimizer.step()``) would
    leave weights no checkpoint should hold, so the signal only sets :attr:`requested`; the loop saves
    after the step in flight. A second signal restores the default handlers and raises
    ``KeyboardInterrupt`` at once. Outside the main thread (where Python delivers signals) this is a
    no-op.

    Examples:
        >>> import os
        >>> with GracefulStop() as stop:
        ...     os.kill(os.getpid(), signal.SIGINT)
        ...     stop.requested
        True
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            self._restore()
            raise KeyboardInterrupt
        self.requested = True

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def __enter__(self) -> "GracefulStop":
        if threading.current_thread() is threading.main_thread():
            for signum in _STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._restore()
