"""The ``sweep`` command: a grid of configs x seeds, N runs at a time, and one aggregated report."""

from pathlib import Path
from typing import Annotated

import typer

from ..config import MAX_JOBS, MAX_THREADS
from .app import app

__all__ = ["sweep"]


@app.command()
def sweep(
    grid: Annotated[
        str, typer.Argument(help="Grid YAML file, or a bundled grid name (table6_cuhk03_pair1).")
    ],
    output_dir: Annotated[Path, typer.Option(help="One folder per run below it, and the report.")],
    jobs: Annotated[
        int, typer.Option(min=1, max=MAX_JOBS, help="Runs at a time; the cores are split between them.")
    ] = 1,
    threads: Annotated[
        int | None,
        typer.Option(min=1, max=MAX_THREADS, help="Torch threads per run (default: cores / jobs)."),
    ] = None,
    recipe: Annotated[str | None, typer.Option(help="Recipe of every run, overriding the grid's.")] = None,
    report_only: Annotated[
        bool, typer.Option("--report-only", help="Write the report of the finished runs, run nothing.")
    ] = False,
) -> None:
    """Run every config x seed of GRID as an ordinary `train` and write OUTPUT/report.{json,md,png}.

    Resumable: a finished run (its record.json exists) is skipped, an interrupted one resumes from its
    checkpoint, so running the same command again continues the sweep. Per setting, the report gives
    the mean and standard deviation of rank-1/5/10, mAP and mINP over seeds, and for the grid's
    `compare` pairs the paired difference over seeds with a 95 % Student-t interval.
    """
    from ..commands.sweep import sweep as run

    run(grid, output_dir, jobs=jobs, threads=threads, recipe=recipe, report_only=report_only, log=typer.echo)
