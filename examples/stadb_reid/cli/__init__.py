"""The ``stadb-reid`` command: train, evaluate, the offline demo, export, feature extraction and figures.

:mod:`~stadb_reid.cli.app` holds the typer app and the shared options; the commands are registered on it
by :mod:`~stadb_reid.cli.training`, :mod:`~stadb_reid.cli.checkpoints` and the other modules of this
package (``info`` prints the config a command line resolves to), and do their work through
:mod:`stadb_reid.commands` and :mod:`stadb_reid.engine`.
"""

import warnings
from collections.abc import Callable
from typing import Any

import typer

from ..errors import ReIDError, ReIDWarning
from ..printable import printable
from . import checkpoints, info, search, sweep, training  # noqa: F401  (importing registers the commands)
from .app import app

try:  # recent typer releases vendor click; main() needs its exception classes to print them in one line
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - typer with click as a dependency
    from click import exceptions as click_exceptions  # type: ignore[no-redef]

__all__ = ["app", "main"]


def _one_line_warnings(other: Callable[..., None]) -> Callable[..., None]:
    """A ``warnings.showwarning`` printing a :class:`ReIDWarning` as one line, others with ``other``."""

    def show(message: Warning | str, category: type[Warning], *details: Any) -> None:
        if issubclass(category, ReIDWarning):
            typer.echo(f"warning: {printable(str(message))}", err=True)
        else:
            other(message, category, *details)

    return show


def main() -> None:
    """Entry point of the ``stadb-reid`` console script: every failure is one line on stderr.

    Exit codes: 2 for usage, config, data and checkpoint errors; 1 when training diverged; 130 when
    interrupted (after saving a checkpoint). See :mod:`stadb_reid.errors`. A
    :class:`~stadb_reid.errors.ReIDWarning` is one ``warning:`` line too.
    """
    with warnings.catch_warnings():  # restores showwarning for callers running main() in-process
        warnings.showwarning = _one_line_warnings(warnings.showwarning)
        _run()


def _run() -> None:
    try:
        code = app(standalone_mode=False)
    except click_exceptions.UsageError as usage:
        if isinstance(usage, getattr(click_exceptions, "NoArgsIsHelpError", ())) and usage.ctx is not None:
            typer.echo(usage.ctx.get_help())
            raise SystemExit(0) from None
        where = f" (see {usage.ctx.command_path} --help)" if usage.ctx is not None else ""
        typer.echo(f"error: {printable(usage.format_message())}{where}", err=True)
        raise SystemExit(2) from None
    except ReIDError as error:
        typer.echo(f"{error.label}: {printable(str(error))}", err=True)  # a file name can hold ESC, \n
        raise SystemExit(error.exit_code) from None
    except typer.Abort:
        typer.echo("interrupted", err=True)
        raise SystemExit(130) from None
    raise SystemExit(code if isinstance(code, int) else 0)
