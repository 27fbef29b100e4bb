"""``stadb-reid sweep``: a grid of configs x seeds, each an ordinary training run, and one report.

:mod:`.grid` reads the grid file, :mod:`.runner` runs what is not finished (N at a time, resumable),
:mod:`.stats` summarises over seeds (mean, std, paired differences with t-intervals) and :mod:`.report`
writes the JSON, Markdown and PNG report.
"""

import shlex
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ...config import available_recipes, check_parallelism
from ...errors import ConfigError
from .grid import BUNDLED_GRID_DIR, RunSpec, SweepGrid, load_grid
from .report import REPORT_NAMES, build_report, markdown_report, write_report
from .runner import RECORD_NAME, SweepFailedError, read_record, run_sweep
from .stats import METRICS, PairedDifference, comparisons, paired_difference, summarise

__all__ = [
    "BUNDLED_GRID_DIR",
    "METRICS",
    "RECORD_NAME",
    "REPORT_NAMES",
    "PairedDifference",
    "RunSpec",
    "SweepFailedError",
    "SweepGrid",
    "build_report",
    "comparisons",
    "load_grid",
    "markdown_report",
    "paired_difference",
    "read_record",
    "run_sweep",
    "summarise",
    "sweep",
    "write_report",
]


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
) -> dict[str, Any]:
    """Run the grid's unfinished runs (unless ``report_only``) and write the report of the finished ones.

    Returns:
        The report (also written as ``report.json``, ``report.md`` and ``report.png`` in ``output_dir``).

    Raises:
        ConfigError: ``jobs``, ``threads`` or ``recipe`` is wrong, the grid file is wrong, or a
            ``record.json`` is damaged or of another run (each message names the file).
    """
    check_parallelism(jobs, threads)
    if recipe is not None and recipe not in available_recipes():
        raise ConfigError(f"--recipe must be one of {', '.join(available_recipes())}, got {recipe!r}")
    grid = load_grid(grid_path)
    specs = grid.specs(recipe)
    output_dir.mkdir(parents=True, exist_ok=True)
    failure: SweepFailedError | None = None
    if not report_only:
        extra = {} if program is None else {"program": program}
        try:
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
    )
    report = build_report(grid, records, command)
    for path in write_report(report, output_dir):
        log(f"wrote {path}")
    if failure is not None:
        raise failure
    return report
