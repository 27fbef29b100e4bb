"""``stadb-reid sweep``: a grid of configs x seeds, each an ordinary training run, and one report.

:mod:`.grid` reads the grid file, :mod:`.runner` runs what is not finished (N at a time, resumable),
:mod:`.stats` summarises over seeds (mean, std, paired differences with t-intervals) and :mod:`.report`
writes the JSON, Markdown and PNG report. :mod:`.submitit_launcher` runs the same runs as scheduler
jobs (SLURM, or submitit's local executor) and :mod:`.status` tells where every run stands.
"""

import dataclasses
import shlex
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ...config import available_recipes
from ...config.limits import check_parallelism
from ...errors import ConfigError
from .grid import RunSpec, SweepGrid, load_grid
from .report import build_report, write_report
from .runner import SweepFailedError, read_record, run_sweep
from .status import RunStatus, run_status

#: How a sweep's runs are started: child processes of this one, or scheduler jobs through submitit.
LAUNCHERS = ("local", "submitit")

__all__ = ["load_grid", "sweep", "sweep_status"]


def sweep(
    grid_path: str | Path,
    output_dir: Path,
    *,
    jobs: int = 1,
    threads: int | None = None,
    recipe: str | None = None,
    report_only: bool = False,
    log: Callable[[str], None] = print,
    program: Sequence[str] | None = None,
    settings: Sequence[str] = (),
    launcher: str = "local",
    scheduler: Any = None,
) -> dict[str, Any]:
    """Run the grid's unfinished runs (unless ``report_only``) and write the report of the finished ones.

    Args:
        grid_path: The grid file, or a bundled grid's name.
        output_dir: The sweep's folder: one folder per run, and the report.
        jobs: Runs at a time (local launcher).
        threads: Torch threads per run (local launcher; default: cores / jobs).
        recipe: Recipe of every run, overriding the grid's.
        report_only: Run nothing; report the finished runs.
        log: Where status lines go.
        program: The command that starts ``stadb-reid`` (a stand-in in tests).
        settings: More ``--set`` overrides for every run, after the grid's (e.g. the cluster's paths).
        launcher: ``"local"`` (``jobs`` child processes) or ``"submitit"`` (one scheduler job per run).
        scheduler: The jobs' :class:`~.submitit_launcher.SchedulerOptions` (``"submitit"`` only).

    Returns:
        The report (also written as ``report.json``, ``report.md`` and ``report.png`` in ``output_dir``).

    Raises:
        ConfigError: ``jobs``, ``threads`` or ``recipe`` is wrong, the grid file is wrong, or a
            ``record.json`` is damaged or of another run (each message names the file).
    """
    if launcher not in LAUNCHERS:
        raise ConfigError(f"--launcher must be one of {', '.join(LAUNCHERS)}, got {launcher!r}")
    check_parallelism(jobs, threads)
    if recipe is not None and recipe not in available_recipes():
        raise ConfigError(f"--recipe must be one of {', '.join(available_recipes())}, got {recipe!r}")
    grid = load_grid(grid_path)
    specs = _specs(grid, recipe, settings)
    output_dir.mkdir(parents=True, exist_ok=True)
    failure: SweepFailedError | None = None
    if not report_only:
        extra = {} if program is None else {"program": program}
        try:
            if launcher == "submitit":
                _run_submitit(specs, output_dir, scheduler, grid.name, log, extra)
            else:
                run_sweep(specs, output_dir, jobs=jobs, threads=threads, log=log, **extra)
        except SweepFailedError as error:
            failure = error  # the finished runs are still reported
    records = [record for spec in specs if (record := read_record(output_dir, spec)) is not None]
    if not records:
        if failure is not None:
            raise failure
        raise ConfigError(f"{output_dir} holds no finished run of grid {grid.name}: nothing to report yet")
    command = shlex.join(
        ["stadb-reid", "sweep", str(grid_path), "--output-dir", str(output_dir), "--jobs", str(jobs)]
        + (["--recipe", recipe] if recipe else [])
        + [argument for setting in settings for argument in ("--set", setting)]
    )
    report = build_report(grid, records, command)
    for path in write_report(report, output_dir):
        log(f"wrote {path}")
    if failure is not None:
        raise failure
    return report


def sweep_status(
    grid_path: str | Path, output_dir: Path, *, recipe: str | None = None, settings: Sequence[str] = ()
) -> list[RunStatus]:
    """Where every run of the grid stands in ``output_dir`` (for either launcher); starts nothing."""
    return [run_status(output_dir, spec) for spec in _specs(load_grid(grid_path), recipe, settings)]


def _specs(grid: SweepGrid, recipe: str | None, settings: Sequence[str]) -> list[RunSpec]:
    extra = tuple(settings)
    return [dataclasses.replace(spec, settings=spec.settings + extra) for spec in grid.specs(recipe)]


def _run_submitit(
    specs: list[RunSpec],
    output_dir: Path,
    scheduler: Any,
    name: str,
    log: Callable[[str], None],
    extra: dict[str, Any],
) -> None:
    try:
        from .submitit_launcher import SchedulerOptions, run_sweep_submitit
    except ImportError:
        raise ConfigError(
            "--launcher submitit needs the submitit package: pip install 'stadb-layers[cluster]'"
        ) from None
    run_sweep_submitit(specs, output_dir, scheduler or SchedulerOptions(), name=name, log=log, **extra)
